"""bench/metrics.py: the CPU the metrics add to one proxied request, measured in isolation."""

from bench.metrics import measure


async def test_the_middleware_costs_something_and_stays_small():
    bare, middleware, calls = await measure(requests=2000, rounds=2)
    assert 0 < bare < middleware
    assert calls > 0
    # A few microseconds against ~200 µs of gateway CPU per request; 50 µs would be a regression
    # (e.g. `.labels()` back on the hot path), with room for a slow, shared machine.
    assert (middleware - bare) + calls < 50e-6
