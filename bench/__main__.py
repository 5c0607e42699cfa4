"""Run the benchmark and print requests/s, p50 and p99 per path, ratios to nginx, RSS, and
the gateway's CPU per request with its metrics on and off."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import metrics as metrics_bench
from bench import wrk
from bench.stack import Stack, running_stack
from shared.assertion import ASSERTION_HEADER, AssertionSigner

PATH = "/api/trading/orders/42"
STUB_PATH = "/orders/42"

# Targets of issue 4, as ratios within one run.
JWT_RATIO_TARGET = 0.25
P99_TARGET_MS = 30.0
API_KEY_TARGET = 0.9
IDLE_RSS_TARGET_MIB = 120.0
# Issue 14: metrics may add at most this much to the gateway's CPU per proxied request.
METRICS_CPU_BUDGET = 0.10
# Targets of issue 15: the gateway's CPU per JWT-proxied request, the API-key path's beside it.
JWT_CPU_TARGET_US = 110.0
API_KEY_CPU_MARGIN = 0.05


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU time a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """Return the CPU time of a process and its children (nginx's master and worker)."""
    total = cpu_seconds(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def proxy_cpu_seconds(stack: Stack, path: str) -> float:
    """Return the CPU time so far of the proxy a path goes through (0 for the direct path)."""
    if path.startswith("gateway"):
        return cpu_seconds(stack.gateway_pid)
    return tree_cpu_seconds(stack.nginx_pid) if path.startswith("nginx") else 0.0


def rss_mib(pid: int) -> float:
    """Return the resident set size of a process in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class PeakRss:
    """Sample a process's RSS in the background and keep the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            self._stop.wait(0.2)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def scenarios(stack: Stack, duration: float) -> list[tuple[str, str, dict[str, str]]]:
    """Return (name, url, headers) of the four paths measured."""
    # Direct and nginx runs carry a valid assertion so the stub does the same work as when
    # the gateway calls it; it is signed to outlive the run.
    signer = AssertionSigner(stack.assertion_private_key, ttl_seconds=int(duration) * 10 + 600)
    assertion, _ = signer.sign(
        username="bench-user", roles=["trading"], auth_method="password", service="trading"
    )
    return [
        ("direct stub", stack.stub_url + STUB_PATH, {ASSERTION_HEADER: assertion}),
        ("nginx -> stub", stack.nginx_url + STUB_PATH, {ASSERTION_HEADER: assertion}),
        (
            "gateway+JWT -> stub",
            stack.gateway_url + PATH,
            {"Authorization": f"Bearer {stack.access_token}"},
        ),
        ("gateway+API key -> stub", stack.gateway_url + PATH, {"X-API-Key": stack.api_key}),
    ]


def check(url: str, headers: dict[str, str]) -> None:
    """Fail early if a path does not answer 200."""
    response = httpx.get(url, headers=headers, timeout=10)
    if response.status_code != 200:
        raise SystemExit(f"{url} answered {response.status_code}: {response.text[:200]}")


@dataclass
class CpuTally:
    """CPU seconds a gateway used and the requests it answered, over several runs."""

    seconds: float = 0.0
    requests: int = 0
    failures: int = 0
    # CPU µs per request of each run, in order.
    runs: list[float] = field(default_factory=list)

    @property
    def per_request_us(self) -> float:
        return self.seconds * 1e6 / max(1, self.requests)

    def add(self, seconds: float, result: wrk.Result) -> None:
        """Count one run."""
        self.seconds += seconds
        self.requests += result.requests
        self.failures += result.failures
        self.runs.append(seconds * 1e6 / max(1, result.requests))


def metrics_on_and_off(
    stack: Stack, *, rounds: int, duration: float, connections: int, threads: int
) -> tuple[CpuTally, CpuTally]:
    """Drive the JWT path of the gateway and of the unmetered gateway in turn, `rounds`
    times each (the order alternating, so a change of load falls on both, and each round's
    two runs back to back, so they can be compared as a pair), and return their CPU tallies
    (metrics on, metrics off)."""
    headers = {"Authorization": f"Bearer {stack.access_token}"}
    on, off = CpuTally(), CpuTally()
    gateways = [(on, stack.gateway_url, stack.gateway_pid)]
    gateways.append((off, stack.unmetered_gateway_url, stack.unmetered_gateway_pid))
    for _, url, _ in gateways:
        check(url + PATH, headers)
    for round_ in range(rounds):
        for tally, url, pid in gateways if round_ % 2 == 0 else gateways[::-1]:
            wrk.run(
                url + PATH, headers=headers, connections=connections, duration=0.5, threads=threads
            )
            before = cpu_seconds(pid)
            result = wrk.run(
                url + PATH,
                headers=headers,
                connections=connections,
                duration=duration,
                threads=threads,
            )
            tally.add(cpu_seconds(pid) - before, result)
    return on, off


def print_metrics_cost(on: CpuTally, off: CpuTally, isolated: tuple[float, float, float]) -> float:
    """Print the metrics' cost both ways and return the isolated figure's share of the
    metrics-off CPU per request (the figure the budget is judged on)."""
    bare, middleware, calls = isolated
    added_us = ((middleware - bare) + calls) * 1e6
    measured = on.per_request_us - off.per_request_us
    share = added_us / off.per_request_us
    print()
    print("metrics cost, gateway+JWT -> stub (CPU per proxied request):")
    print(f"  metrics on  (the gateway as shipped):  {on.per_request_us:8.1f} µs")
    print(f"  metrics off (bench.unmetered):         {off.per_request_us:8.1f} µs")
    pairs = sorted(a - b for a, b in zip(on.runs, off.runs, strict=True))
    print(
        f"  difference, whole gateway under wrk:   {measured:+8.1f} µs "
        f"({measured / off.per_request_us:+.1%}); per round: median "
        f"{statistics.median(pairs):+.1f} µs, {pairs[0]:+.1f} to {pairs[-1]:+.1f} "
        "(noisy when other processes share the cores)"
    )
    print(
        f"  metrics' own work, in isolation:       {added_us:+8.1f} µs "
        f"({share:+.1%} of metrics off; middleware {(middleware - bare) * 1e6:.1f} µs, "
        f"gateway calls {calls * 1e6:.1f} µs)"
    )
    return share


def main(argv: list[str] | None = None) -> int:
    """Run every scenario and print the report; exit 1 with --strict when a target is missed."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per path (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up (2)")
    parser.add_argument("--connections", type=int, default=64, help="open connections (64)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument(
        "--metrics-rounds", type=int, default=4, help="metrics on/off runs of each gateway (4)"
    )
    parser.add_argument(
        "--metrics-duration", type=float, default=4.0, help="seconds per metrics on/off run (4)"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    results: dict[str, wrk.Result] = {}
    # CPU microseconds per request of the proxy in the path: the gateway, or nginx.
    proxy_cpu: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="lct-bench-") as tmp, running_stack(Path(tmp)) as stack:
        time.sleep(1.0)
        idle_rss = rss_mib(stack.gateway_pid)
        with PeakRss(stack.gateway_pid) as peak:
            for name, url, headers in scenarios(stack, args.duration):
                check(url, headers)
                print(f"  running {name} ...", file=sys.stderr, flush=True)
                if args.warmup > 0:
                    wrk.run(
                        url,
                        headers=headers,
                        connections=args.connections,
                        duration=args.warmup,
                        threads=args.threads,
                    )
                cpu_before = proxy_cpu_seconds(stack, name)
                results[name] = wrk.run(
                    url,
                    headers=headers,
                    connections=args.connections,
                    duration=args.duration,
                    threads=args.threads,
                )
                used = proxy_cpu_seconds(stack, name) - cpu_before
                proxy_cpu[name] = used * 1e6 / max(1, results[name].requests)
        loaded_rss = max(peak.peak, rss_mib(stack.gateway_pid))
        print("  running gateway+JWT with metrics on and off ...", file=sys.stderr, flush=True)
        metrics_on, metrics_off = metrics_on_and_off(
            stack,
            rounds=args.metrics_rounds,
            duration=args.metrics_duration,
            connections=args.connections,
            threads=args.threads,
        )
    load_after = os.getloadavg()
    isolated = asyncio.run(metrics_bench.measure(requests=100_000, rounds=5))

    nginx = results["nginx -> stub"].requests_per_second
    jwt = results["gateway+JWT -> stub"]
    api_key = results["gateway+API key -> stub"]
    print()
    print(
        f"{args.connections} connections, {args.duration:.0f} s per path, wrk -t{args.threads}; "
        f"{os.cpu_count()} CPUs; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after"
    )
    print(
        f"{'path':<26}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'x nginx':>10}{'failed':>8}"
        f"{'proxy CPU µs/req':>18}"
    )
    for name, result in results.items():
        cpu = f"{proxy_cpu[name]:.0f}" if proxy_cpu.get(name) else "-"
        print(
            f"{name:<26}{result.requests_per_second:>10.0f}{result.p50_ms:>10.2f}"
            f"{result.p99_ms:>10.2f}{result.requests_per_second / nginx:>10.2f}"
            f"{result.failures:>8}{cpu:>18}"
        )
    jwt_cpu, key_cpu = proxy_cpu["gateway+JWT -> stub"], proxy_cpu["gateway+API key -> stub"]
    nginx_cpu = proxy_cpu["nginx -> stub"]
    print(
        f"CPU per request: gateway+JWT {jwt_cpu:.0f} µs, gateway+API key {key_cpu:.0f} µs, "
        f"nginx {nginx_cpu:.0f} µs; gateway+JWT / nginx = {jwt_cpu / max(nginx_cpu, 1e-9):.1f}"
    )
    print(f"gateway RSS: idle {idle_rss:.1f} MiB, loaded (peak) {loaded_rss:.1f} MiB")
    metrics_share = print_metrics_cost(metrics_on, metrics_off, isolated)
    failures = (
        sum(r.failures for r in results.values()) + metrics_on.failures + metrics_off.failures
    )

    targets = [
        (
            f"gateway+JWT >= {JWT_RATIO_TARGET}x nginx",
            jwt.requests_per_second / nginx,
            jwt.requests_per_second / nginx >= JWT_RATIO_TARGET,
        ),
        (f"gateway+JWT p99 <= {P99_TARGET_MS:.0f} ms", jwt.p99_ms, jwt.p99_ms <= P99_TARGET_MS),
        (
            f"API key >= {API_KEY_TARGET}x JWT",
            api_key.requests_per_second / jwt.requests_per_second,
            api_key.requests_per_second >= API_KEY_TARGET * jwt.requests_per_second,
        ),
        (
            f"gateway+JWT CPU <= {JWT_CPU_TARGET_US:.0f} µs/request",
            jwt_cpu,
            jwt_cpu <= JWT_CPU_TARGET_US,
        ),
        (
            f"API-key CPU within {API_KEY_CPU_MARGIN:.0%} of JWT's (ratio)",
            key_cpu / jwt_cpu,
            key_cpu <= (1 + API_KEY_CPU_MARGIN) * jwt_cpu,
        ),
        (
            f"idle RSS <= {IDLE_RSS_TARGET_MIB:.0f} MiB",
            idle_rss,
            idle_rss <= IDLE_RSS_TARGET_MIB,
        ),
        (
            f"metrics add <= {METRICS_CPU_BUDGET:.0%} gateway CPU per request (in isolation), %",
            metrics_share * 100,
            metrics_share <= METRICS_CPU_BUDGET,
        ),
        ("no failed requests", failures, not failures),
    ]
    print()
    for label, value, met in targets:
        print(f"{'met   ' if met else 'MISSED'} {label}: {value:.2f}")
    missed = [label for label, _, met in targets if not met]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
