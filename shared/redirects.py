"""Trailing-slash redirects that never name a host.

Starlette answers `/x/` for a route `/x` with `Location: http://<Host header>/x`: whoever
sets the Host header (a cache, a misrouted proxy, an attacker's link) chooses where the
redirect sends the browser. The public apps redirect to a path of their own instead.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import RedirectResponse
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send


class SlashRedirect:
    """A router's fallback: redirect to the path with the trailing slash toggled, when a
    route matches that, with a relative `Location`; otherwise answer as `fallback`."""

    def __init__(self, router: Router, fallback: ASGIApp) -> None:
        self.router = router
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            location = self._location(scope)
            if location is not None:
                await RedirectResponse(location)(scope, receive, send)
                return
        await self.fallback(scope, receive, send)

    def _location(self, scope: Scope) -> str | None:
        path: str = scope["path"]
        if path == "/":
            return None
        toggled = path.rstrip("/") if path.endswith("/") else path + "/"
        other = {**scope, "path": toggled}
        if not any(route.matches(other)[0] is not Match.NONE for route in self.router.routes):
            return None
        raw: bytes | None = scope.get("raw_path")
        if raw is not None:
            raw = raw.split(b"?", 1)[0]
            encoded = (raw.rstrip(b"/") if raw.endswith(b"/") else raw + b"/").decode("latin-1")
        else:
            encoded = quote(toggled, safe="/:@!$&'()*+,;=-._~")
        root: str = scope.get("root_path", "")
        location = root + encoded
        # `//host` and `/\host` are read by browsers as another host, not as a path.
        if not location.startswith("/") or location[1:2] in ("/", "\\"):
            return None
        query: bytes = scope.get("query_string", b"")
        return location + ("?" + query.decode("latin-1") if query else "")


def use_relative_slash_redirects(router: Router) -> None:
    """Replace `router`'s Host-derived trailing-slash redirects with relative ones."""
    router.redirect_slashes = False
    router.default = SlashRedirect(router, router.default)
