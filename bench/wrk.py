"""Drive one URL with wrk and read its report."""

from __future__ import annotations

import re
import shutil
import subprocess  # nosec B404 - runs wrk with a fixed argv
from collections.abc import Mapping
from dataclasses import dataclass

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_LATENCY = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.MULTILINE)
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass(frozen=True)
class Result:
    """What one wrk run measured."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    failures: int


def find_wrk() -> str:
    """Return the wrk executable (Debian package `wrk`)."""
    path = shutil.which("wrk") or shutil.which("wrk", path="/usr/bin")
    if path is None:
        raise SystemExit("wrk is not installed; `make services` installs it (Debian package wrk)")
    return path


def run(
    url: str,
    *,
    headers: Mapping[str, str],
    connections: int,
    duration: float,
    threads: int,
) -> Result:
    """Run wrk against `url` and parse requests/s, p50, p99 and failures."""
    command = [
        find_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "--latency",
        *(part for name, value in headers.items() for part in ("-H", f"{name}: {value}")),
        url,
    ]
    output = subprocess.run(  # noqa: S603  # nosec B603 - fixed argv
        command, capture_output=True, text=True, check=True
    ).stdout
    return parse_report(output)


def parse_report(output: str) -> Result:
    """Read requests/s, p50, p99 and failures from wrk's `--latency` report."""
    latencies = {
        percentile: float(value) * _UNITS[unit]
        for percentile, value, unit in _LATENCY.findall(output)
    }
    rate, total = _RATE.search(output), _TOTAL.search(output)
    if rate is None or total is None or not {"50", "99"} <= set(latencies):
        raise RuntimeError(f"cannot read wrk's report:\n{output}")
    failures = sum(int(n) for n in _NON_2XX.findall(output))
    errors = _ERRORS.search(output)
    if errors is not None:
        failures += sum(int(n) for n in errors.groups())
    return Result(
        requests_per_second=float(rate.group(1)),
        p50_ms=latencies["50"],
        p99_ms=latencies["99"],
        requests=int(total.group(1)),
        failures=failures,
    )
