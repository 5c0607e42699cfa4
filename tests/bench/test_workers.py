"""`python -m bench.workers`, run briefly: one gateway worker and two on the real Redis, both
answering every request, and the report saying what the cores did."""

import re

import pytest

from bench.workers import main

pytestmark = pytest.mark.e2e


def test_one_and_two_workers_are_measured_without_failures(capsys):
    assert main(["--duration", "1", "--warmup", "0", "--connections", "8"]) == 0
    report = capsys.readouterr().out
    rows = re.findall(r"^(\d+)\s+(memory|Redis)\s+(\d+)\s+[\d.]+\s+[\d.]+\s+(\d+)\s", report, re.M)
    assert [(workers, state) for workers, state, _, _ in rows] == [
        ("1", "memory"),
        ("1", "Redis"),
        ("2", "Redis"),
    ]
    assert all(int(rate) > 0 for _, _, rate, _ in rows)
    assert all(failed == "0" for _, _, _, failed in rows)
    assert re.search(r"^2 workers / 1 worker, both on Redis: [\d.]+x", report, re.M)
