import asyncio
import json
import random

import pytest

from services.api_gateway.access_log import FIELDS, AccessLog, _line, _Timestamps
from shared.logs import utc_time
from tests.api_gateway.conftest import PASSWORD, running_gateway


def test_access_log_writes_one_json_line_per_entry_to_a_file(tmp_path):
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    log.start()
    log.write({"request_id": "r1", "method": "GET", "path": "/x", "status": 200})
    log.write({"request_id": "r2", "method": "POST", "path": "/y", "status": 500})
    log.stop()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["request_id"] for line in lines] == ["r1", "r2"]
    assert all(list(line) == list(FIELDS) for line in lines)
    assert lines[0]["time"].endswith("Z")


async def test_every_request_gets_a_line_and_no_line_holds_a_secret(
    make_settings, keys, portfolio, access_log
):
    name, api_key = portfolio.user("trading", api_key=True)
    settings = make_settings(portfolio_service_url=portfolio.url)
    async with running_gateway(settings, keys.secrets()) as gateway:
        login = await gateway.client.post(
            "/auth/token", json={"username": name, "password": PASSWORD}
        )
        token = login.json()["access_token"]
        await gateway.client.post(
            "/auth/token", data={"username": name, "password": "wrong " + PASSWORD}
        )
        await gateway.client.get("/api/trading/x?note=" + api_key, headers={"X-API-Key": api_key})
        await gateway.client.get(
            "/api/trading/y",
            headers={
                "Authorization": f"Bearer {token}",
                "X-Request-ID": "req-7",
                "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            },
        )
        await gateway.client.get("/api/market/z", headers={"Authorization": f"Bearer {token}"})
    # Leaving the lifespan flushed the writer thread.
    text = access_log.read_text()
    for secret in (PASSWORD, token, api_key, token.split(".")[2], keys.identity_token):
        assert secret not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("POST", "/auth/token", 200),
        ("POST", "/auth/token", 401),
        ("GET", "/api/trading/x", 200),
        ("GET", "/api/trading/y", 200),
        ("GET", "/api/market/z", 403),
    ]
    by_key, by_token = lines[2], lines[3]
    assert (by_key["user"], by_key["auth_method"], by_key["upstream"]) == (
        name,
        "api_key",
        "trading",
    )
    assert (by_key["service"], by_key["level"], by_key["route"]) == (
        "gateway",
        "info",
        "/api/{service}/{path}",
    )
    assert [line["route"] for line in lines[:2]] == ["/auth/token", "/auth/token"]
    assert by_key["key_id"] == portfolio.service.get_user(name).api_key_id
    assert (by_token["request_id"], by_token["auth_method"], by_token["key_id"]) == (
        "req-7",
        "password",
        None,
    )
    assert by_token["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert all(line["client"] == "127.0.0.1" and line["duration_ms"] >= 0 for line in lines)


async def test_lines_reach_the_file_without_waiting_for_shutdown(tmp_path):
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    log.start()
    try:
        log.write({"request_id": "r1", "status": 200})
        for _ in range(100):
            if path.exists() and path.read_text():
                break
            await asyncio.sleep(0.05)
        assert json.loads(path.read_text())["request_id"] == "r1"
    finally:
        log.stop()


async def test_trusted_proxy_address_is_logged_as_the_forwarded_client(
    make_settings, keys, access_log
):
    settings = make_settings(gateway_trusted_proxies="10.0.0.0/8")
    async with running_gateway(settings, keys.secrets(), client=("10.1.2.3", 1)) as gateway:
        await gateway.client.get(
            "/api/trading/x",
            headers={**gateway.bearer("a", "trading"), "X-Forwarded-For": "203.0.113.4, 10.9.9.9"},
        )
        response = await gateway.client.get(
            "/api/trading/x", headers=gateway.bearer("a", "trading")
        )
    assert response.json()["headers"]["x-forwarded-for"] == ["10.1.2.3"]
    clients = [json.loads(line)["client"] for line in access_log.read_text().splitlines()]
    assert clients == ["203.0.113.4", "10.1.2.3"]


def _dumped(entry):
    """The line as json.dumps writes it: what the hand-written formatter must match."""
    entry = dict(entry)
    entry["time"] = utc_time(entry["time"])
    entry["level"] = "error" if (entry.get("status") or 0) >= 500 else "info"
    entry["service"] = "gateway"
    return json.dumps({name: entry.get(name) for name in FIELDS}, separators=(",", ":"))


@pytest.mark.parametrize(
    "fields",
    [
        {"path": '/api/trading/"quoted"\\back\nline\ttab\x00\x1f\x7f', "status": 200},
        {"path": "/api/trading/é/€/😀/\u2028", "user": "zoë", "status": 404},
        {"status": 503, "duration_ms": 12.5, "key_id": "k-1", "auth_method": "api_key"},
        {"status": True, "duration_ms": float("nan"), "client": None, "trace_id": "ab" * 16},
        {"status": None, "duration_ms": 1e-05, "route": "/api/{service}/{path}"},
        {},
    ],
)
def test_a_line_is_byte_for_byte_what_json_dumps_writes(fields):
    entry = {"request_id": "r1", "method": "GET", "time": 1764739008.7845, **fields}
    line = _line(dict(entry), _Timestamps())
    assert line == _dumped(entry)
    assert list(json.loads(line)) == list(FIELDS)


def test_timestamps_match_utc_time_across_seconds_and_rounding():
    timestamp = _Timestamps()
    rng = random.Random(15)
    samples = [0.0, 0.0005, 0.9994999, 0.9995, 0.9999995, 59.9999999, 1764739199.9999996]
    samples += [rng.uniform(0, 4e9) for _ in range(20_000)]
    second = 1764739000.0
    samples += [second + n / 1000 for n in range(2000)]  # every millisecond of two seconds
    for seconds in samples:
        assert timestamp(seconds) == utc_time(seconds), seconds
