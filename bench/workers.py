"""`python -m bench.workers`: one gateway worker against N on the same host, both on Redis.

Starts the identity service (SQLite), the trading stub and, in turn, a gateway with one
uvicorn worker on in-memory state (the reference; `--no-memory` skips it), one worker and
`--workers N` (default 2) sharing state through the Redis at 127.0.0.1:6379 under a key
prefix of their own (on in-memory state the gateway refuses a second worker). wrk drives the
JWT path through each; the report gives requests/s, p50 and p99, the gateway's CPU per
request, the ratio of N workers to one, and where the machine's CPU went during each run (the
gateway's workers, the stub, wrk, everything else, idle), since N workers can only go faster
when there are idle cores for them.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import wrk
from bench.__main__ import PATH, cpu_seconds
from bench.stack import FAST_SERVER, PASSWORD, USERNAME, upstreams
from devstack.databases import SHARED_REDIS_URL, delete_prefix, unique_prefix
from devstack.launch import GATEWAY_APP
from devstack.servers import ServerProcess

# The target of issue 15, on a machine with cores to spare for wrk, the stub and Redis.
SCALING_TARGET = 1.7


@dataclass(frozen=True)
class Run:
    """One wrk run against a gateway with some workers, and the CPU it took."""

    workers: int
    state: str
    result: wrk.Result
    seconds: float
    gateway_cpu: float
    stub_cpu: float
    wrk_cpu: float
    machine_cpu: float

    def cores(self, cpu: float) -> float:
        """Return CPU seconds as cores busy over the run."""
        return cpu / self.seconds


def children(pid: int) -> list[int]:
    """Return the processes whose parent is `pid` (Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def machine_cpu_seconds() -> float:
    """Return the CPU time every core has spent busy since boot (Linux)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(value) for value in fields]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """Return the CPU time of this process's finished children (wrk)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def backends(root: Path) -> Iterator[tuple[dict[str, str], ServerProcess]]:
    """Start the identity service and the trading stub; yield the gateway's environment (its
    state on the shared Redis under a prefix of its own, deleted afterwards) and the stub."""
    # Every login of the runs comes from 127.0.0.1.
    with upstreams(root, GATEWAY_LOGIN_MAX_ATTEMPTS_PER_ADDRESS="1000000") as up:
        prefix = unique_prefix()
        try:
            yield (
                {
                    **up.env,
                    "GATEWAY_STATE_URL": SHARED_REDIS_URL,
                    "GATEWAY_STATE_PREFIX": prefix,
                    "GATEWAY_ACCESS_LOG": str(root / "gateway-access.log"),
                },
                up.stub,
            )
        finally:
            delete_prefix(SHARED_REDIS_URL, prefix)


def measure(
    env: dict[str, str], stub: ServerProcess, root: Path, *, workers: int, args: argparse.Namespace
) -> Run:
    """Start a gateway with `workers` workers, drive the JWT path with wrk, and stop it."""
    extra = FAST_SERVER if workers == 1 else (*FAST_SERVER, "--workers", str(workers))
    with ServerProcess(
        GATEWAY_APP, env=env, log_path=root / f"gateway-{workers}-{len(env)}.log", extra_args=extra
    ) as gateway:
        if gateway.process is None or stub.process is None:
            raise RuntimeError("a process did not start")
        pids = [gateway.process.pid]
        deadline = time.monotonic() + 30
        while workers > 1 and len(pids) < workers + 1:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} gateway workers did not start")
            time.sleep(0.2)
            pids = [gateway.process.pid, *children(gateway.process.pid)]
        login = httpx.post(
            gateway.url + "/auth/token",
            json={"username": USERNAME, "password": PASSWORD},
            timeout=30,
        )
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        url = gateway.url + PATH
        if httpx.get(url, headers=headers, timeout=10).status_code != 200:
            raise SystemExit(f"{url} does not answer 200")
        print(f"  running {workers} worker(s) ...", file=sys.stderr, flush=True)
        if args.warmup > 0:
            wrk.run(
                url,
                headers=headers,
                connections=args.connections,
                duration=args.warmup,
                threads=args.threads,
            )
        gateway_before = sum(cpu_seconds(pid) for pid in pids)
        stub_before = cpu_seconds(stub.process.pid)
        wrk_before = children_cpu_seconds()
        machine_before = machine_cpu_seconds()
        started = time.monotonic()
        result = wrk.run(
            url,
            headers=headers,
            connections=args.connections,
            duration=args.duration,
            threads=args.threads,
        )
        return Run(
            workers=workers,
            state="memory" if "GATEWAY_STATE_URL" not in env else "Redis",
            result=result,
            seconds=time.monotonic() - started,
            gateway_cpu=sum(cpu_seconds(pid) for pid in pids) - gateway_before,
            stub_cpu=cpu_seconds(stub.process.pid) - stub_before,
            wrk_cpu=children_cpu_seconds() - wrk_before,
            machine_cpu=machine_cpu_seconds() - machine_before,
        )


def render(runs: list[Run], *, connections: int, duration: float) -> str:
    """Return the report: one line per run, the ratio, and what the cores did."""
    cores = os.cpu_count() or 1
    lines = [
        f"JWT path, {connections} connections, {duration:.0f} s per run; {cores} CPUs; "
        f"load average {os.getloadavg()[0]:.2f}",
        f"{'workers':<9}{'state':<8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}"
        f"{'gw ms/req':>11}{'cores: gateway':>16}{'stub':>7}{'wrk':>7}{'other':>7}{'idle':>7}",
    ]
    for run in runs:
        other = run.machine_cpu - run.gateway_cpu - run.stub_cpu - run.wrk_cpu
        idle = cores - run.cores(run.machine_cpu)
        lines.append(
            f"{run.workers:<9}{run.state:<8}{run.result.requests_per_second:>9.0f}{run.result.p50_ms:>9.2f}"
            f"{run.result.p99_ms:>9.2f}{run.result.failures:>8}"
            f"{run.gateway_cpu * 1000 / max(1, run.result.requests):>11.3f}"
            f"{run.cores(run.gateway_cpu):>16.2f}{run.cores(run.stub_cpu):>7.2f}"
            f"{run.cores(run.wrk_cpu):>7.2f}{run.cores(max(0.0, other)):>7.2f}"
            f"{max(0.0, idle):>7.2f}"
        )
    one, many = runs[-2], runs[-1]
    ratio = many.result.requests_per_second / one.result.requests_per_second
    lines.append("")
    lines.append(
        f"{many.workers} workers / 1 worker, both on Redis: {ratio:.2f}x (target {SCALING_TARGET}x needs idle "
        f"cores; the 1-worker run left {max(0.0, cores - one.cores(one.machine_cpu)):.2f} "
        "idle)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure one worker, then N; print the report."""
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__)
    parser.add_argument("--workers", type=int, default=2, help="workers of the second run (2)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up (2)")
    parser.add_argument("--connections", type=int, default=64, help="open connections (64)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument(
        "--no-memory",
        dest="memory",
        action="store_false",
        help="skip the reference run of one worker on in-memory state",
    )
    args = parser.parse_args(argv)
    if args.workers < 2:
        parser.error("--workers must be at least 2")
    with tempfile.TemporaryDirectory(prefix="lct-bench-workers-") as tmp:
        root = Path(tmp)
        with backends(root) as (env, stub):
            memory = {k: v for k, v in env.items() if not k.startswith("GATEWAY_STATE_")}
            runs = [
                # In-memory state as the reference: what sharing the state through Redis costs.
                *([measure(memory, stub, root, workers=1, args=args)] if args.memory else []),
                measure(env, stub, root, workers=1, args=args),
                measure(env, stub, root, workers=args.workers, args=args),
            ]
    print()
    print(render(runs, connections=args.connections, duration=args.duration))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
