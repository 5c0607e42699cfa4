"""Location headers of downstream answers: never an internal address in front of a caller.

A downstream builds its redirects from the Host the gateway connected to
(`Location: http://127.0.0.1:8003/trades`); relayed as is, that tells the caller where the
service lives and sends its browser there.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from urllib.parse import SplitResult, urlsplit, urlunsplit

from shared.roles import Service

# Response headers naming a URL of the downstream.
LOCATION_HEADERS = frozenset({b"location", b"content-location"})
_INTERNAL_SUFFIXES = (".internal", ".local", ".localdomain", ".localhost")
_NUMERIC = re.compile(r"[0-9]+|0x[0-9a-f]*")


def public_locations(
    headers: list[tuple[bytes, bytes]],
    upstream_urls: Mapping[Service, str],
    service: Service,
    public_prefix: str,
) -> list[tuple[bytes, bytes]]:
    """Rewrite Location headers that point into the downstream to the gateway's public
    path; drop those naming any other internal address."""
    upstream = urlsplit(upstream_urls[service])
    internal = frozenset(_host(urlsplit(url).hostname) for url in upstream_urls.values())
    public: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name in LOCATION_HEADERS:
            location = public_location(
                value.decode("latin-1"),
                upstream=upstream,
                prefix=public_prefix,
                internal_hosts=internal,
            )
            if location is None:
                continue
            value = location.encode("latin-1")
        public.append((name, value))
    return public


def public_location(
    location: str, *, upstream: SplitResult, prefix: str, internal_hosts: frozenset[str]
) -> str | None:
    """Return what a downstream's Location means to the caller, or None to drop it.

    The downstream's own URLs (absolute, or a path from its root) become a relative path
    under `prefix`; an absolute URL of any other internal address is dropped; a relative
    reference (`next`, `../x`) and a public URL pass unchanged.
    """
    try:
        target = urlsplit(location.strip())
        target.port  # noqa: B018 - parses the port: a malformed one raises ValueError
    except ValueError:
        return None
    if target.scheme or target.netloc:
        if target.scheme and target.scheme.lower() not in ("http", "https"):
            return location
        if _same_origin(target, upstream):
            return _under_prefix(target, upstream.path, prefix)
        return None if _internal(_host(target.hostname), internal_hosts) else location
    if target.path.startswith("/"):
        return _under_prefix(target, upstream.path, prefix)
    return location


def _host(hostname: str | None) -> str:
    return (hostname or "").rstrip(".").lower()


def _same_origin(target: SplitResult, upstream: SplitResult) -> bool:
    scheme = (target.scheme or upstream.scheme).lower()
    defaults = {"http": 80, "https": 443}
    return (
        scheme == upstream.scheme.lower()
        and _host(target.hostname) == _host(upstream.hostname)
        and (target.port or defaults.get(scheme)) == (upstream.port or defaults.get(scheme))
    )


def _under_prefix(target: SplitResult, base_path: str, prefix: str) -> str | None:
    base = base_path.rstrip("/")
    path = target.path
    if base and path != base and not path.startswith(base + "/"):
        return None  # somewhere on the downstream's host the gateway does not map
    return urlunsplit(("", "", prefix + path[len(base) :], target.query, target.fragment))


def _internal(host: str, known: frozenset[str]) -> bool:
    if not host or host in known:
        return True
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        pass
    # Single-label names (`localhost`, `portfolio`) resolve only inside a network; a name
    # ending in a number (`127.1`, `0x7f.1`) is an IPv4 address in another notation.
    last = host.rpartition(".")[2]
    return "." not in host or host.endswith(_INTERNAL_SUFFIXES) or bool(_NUMERIC.fullmatch(last))
