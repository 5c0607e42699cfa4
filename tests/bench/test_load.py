"""The load driver of `python -m bench.load`, run briefly: no errors, every trade once."""

import asyncio

import pytest

from bench.load import MIX, booking_problems, drive, percentile, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def test_percentile_is_the_nearest_rank():
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.99) == 0.0


@pytest.mark.parametrize("gateways", [1, 2])
def test_a_short_mixed_load_has_no_errors_and_books_every_trade_once(tmp_path, gateways):
    with running_stack(tmp_path, users=3, gateways=gateways, fast_hashing=True) as stack:
        # Five seconds, then on until every kind of the mix (logins are 1 in 100) was answered.
        report = asyncio.run(drive(stack, duration=5, concurrency=8, every_kind_within=120))
        problems = asyncio.run(booking_problems(stack, report))
    assert not report.errors, report.error_samples
    assert problems == []
    assert set(report.latencies) == set(MIX)
    assert len(report.trades) > 0
