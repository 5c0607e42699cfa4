import pytest

from tests.frontend.conftest import running_frontend

PATHS = ["/login", "/dashboard", "/session/status", "/no-such-page", "/static/app.css", "/healthz"]


@pytest.mark.parametrize("path", PATHS)
async def test_every_response_carries_the_security_headers(frontend, path):
    response = await frontend.client.get(path)
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp


@pytest.mark.parametrize("path", ["/login", "/dashboard", "/session/status", "/password/rotate"])
async def test_pages_are_never_cached(frontend, path):
    response = await frontend.client.get(path)
    assert response.headers["cache-control"] == "no-store"


async def test_signed_in_pages_are_never_cached(frontend):
    await frontend.signed_in()
    # The gateway is down, so the page is an error page; it still must not be cached.
    response = await frontend.client.get("/dashboard")
    assert response.status_code == 502
    assert response.headers["cache-control"] == "no-store"


async def test_static_files_may_be_cached_but_revalidated(frontend):
    response = await frontend.client.get("/static/session.js")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"


async def test_hsts_is_sent_only_when_cookies_are_secure():
    async with running_frontend(cookie_secure=True) as secure:
        assert (
            "max-age=" in (await secure.client.get("/login")).headers["strict-transport-security"]
        )
    async with running_frontend(cookie_secure=False) as plain:
        assert "strict-transport-security" not in (await plain.client.get("/login")).headers
