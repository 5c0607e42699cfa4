"""`make bench`'s metrics on/off comparison: the unmetered gateway counts nothing, the
metered one counts every request, and both CPU figures come out of real runs."""

import re

import httpx

from bench.__main__ import PATH, metrics_on_and_off, print_metrics_cost
from bench.metrics import measure
from bench.stack import running_stack
from tests.support.metrics import parse, value

REQUESTS = "http_requests_total"
LABELS = {"route": "/api/{service}/{path}", "method": "GET", "status": "2xx"}


def proxied(samples):
    return value(samples, REQUESTS, **LABELS)


async def test_metrics_on_and_off_are_both_measured(tmp_path, capsys):
    with running_stack(tmp_path) as stack:
        scrape = {"Authorization": f"Bearer {stack.metrics_scrape_token}"}
        jwt = {"Authorization": f"Bearer {stack.access_token}"}
        before = parse(httpx.get(stack.gateway_url + "/metrics", headers=scrape).text)
        on, off = metrics_on_and_off(stack, rounds=2, duration=0.5, connections=4, threads=1)
        after = parse(httpx.get(stack.gateway_url + "/metrics", headers=scrape).text)
        # The metered gateway counted its share of the runs (its check, warm-up and run).
        assert proxied(after) - proxied(before) >= on.requests > 0
        unmetered = httpx.get(stack.unmetered_gateway_url + "/metrics", headers=scrape)
        assert unmetered.status_code == 404
        assert httpx.get(stack.unmetered_gateway_url + PATH, headers=jwt).status_code == 200
    assert off.requests > 0
    assert on.failures == off.failures == 0
    assert on.seconds > 0
    assert off.seconds > 0
    share = print_metrics_cost(on, off, await measure(requests=2000, rounds=2))
    out = capsys.readouterr().out
    shown_on = float(re.search(r"metrics on .*?([\d.]+) µs", out).group(1))
    shown_off = float(re.search(r"metrics off .*?([\d.]+) µs", out).group(1))
    assert abs(shown_on - on.per_request_us) <= 0.06
    assert abs(shown_off - off.per_request_us) <= 0.06
    assert 0 < share < 1
    assert len(on.runs) == len(off.runs) == 2
    assert "per round: median" in out
