"""Run the benchmark and print requests/s, p50 and p99 per path, ratios to nginx, and RSS."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

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


def main(argv: list[str] | None = None) -> int:
    """Run every scenario and print the report; exit 1 with --strict when a target is missed."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per path (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up (2)")
    parser.add_argument("--connections", type=int, default=64, help="open connections (64)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
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
    load_after = os.getloadavg()

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
            "no failed requests",
            sum(r.failures for r in results.values()),
            not any(r.failures for r in results.values()),
        ),
    ]
    print()
    for label, value, met in targets:
        print(f"{'met   ' if met else 'MISSED'} {label}: {value:.2f}")
    missed = [label for label, _, met in targets if not met]
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
