"""Run the whole stack locally: one uvicorn process per service under honcho, on 127.0.0.1.

`make run` calls this. It refuses to start when a port is taken, starts the nine processes
with the `.env` secrets, waits until each answers `/healthz`, creates the first `admin` user
on a new database (its one-time password is printed once), prints the URLs, and stops
everything on Ctrl-C or SIGTERM.

Ports: `LCT_<NAME>_PORT` (e.g. `LCT_GATEWAY_PORT=9000`) moves one process; the gateway and
the frontend are told where the others are. `--create-admin` only does the admin step.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import socket
import string
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from honcho.environ import parse as parse_env_file
from honcho.manager import Manager
from honcho.printer import Message, Printer

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from shared.protocol import UVICORN_HTTP  # noqa: E402 - needs the repository on sys.path
from shared.roles import Service  # noqa: E402 - needs the repository on sys.path

HOST = "127.0.0.1"
STACK = "stack"
ADMIN_USERNAME = "admin"
ADMIN_ROLES = ["admin"]
PASSWORD_LABEL = "one-time password:"  # noqa: S105  # nosec B105
READY_LINE = "stack ready"
# Every process runs with the HTTP protocol that caps the request head.
SERVER_ARGS = ("--http", UVICORN_HTTP)

Say = Callable[[str], None]
# Every process, every launch (compose, the image and the tests use the same): no uvicorn
# access log, whose request line holds the query string (the gateway writes its own JSON
# access log without it), and no WebSocket support, since nothing serves one and uvicorn
# logs every handshake with its query string.
UVICORN_ARGS = ("--no-access-log", "--ws", "none")


@dataclass(frozen=True)
class StackProcess:
    """One process of the local stack."""

    name: str
    module: str
    default_port: int
    stub: bool = False
    uvicorn_args: tuple[str, ...] = ()

    @property
    def port_variable(self) -> str:
        """Name the environment variable that moves this process to another port."""
        return f"LCT_{self.name.upper()}_PORT"

    @property
    def app(self) -> str:
        """Return the `module:app` uvicorn runs."""
        return f"{self.module}:app"

    @property
    def present(self) -> bool:
        """Tell whether the module exists in this checkout."""
        return (REPO_ROOT / Path(*self.module.split("."))).with_suffix(".py").is_file()

    def command(self, port: int, python: str = "python") -> str:
        """Return the shell command honcho runs; `exec` so signals reach uvicorn itself."""
        stub_env = f"env STUB_SERVICE_NAME={self.name} " if self.stub else ""
        extra = "".join(f" {arg}" for arg in (*UVICORN_ARGS, *SERVER_ARGS, *self.uvicorn_args))
        return f"exec {stub_env}{python} -m uvicorn {self.app} --host {HOST} --port {port}{extra}"


STUB_NAMES = [service.value for service in Service if service is not Service.PORTFOLIO]
PROCESSES: tuple[StackProcess, ...] = (
    StackProcess("portfolio", "services.portfolio.app", 8003),
    # uvicorn would otherwise take the client address from X-Forwarded-For of any loopback
    # peer, bypassing GATEWAY_TRUSTED_PROXIES.
    StackProcess("gateway", "services.api_gateway.app", 8000, uvicorn_args=("--no-proxy-headers",)),
    StackProcess("frontend", "services.frontend.app", 8080),
    *(
        StackProcess(name, "services.stub.app", 8101 + index, stub=True)
        for index, name in enumerate(STUB_NAMES)
    ),
)


class StackError(Exception):
    """The stack cannot start; the message is the one line the operator sees."""


def resolve_ports(environ: Mapping[str, str]) -> dict[str, int]:
    """Return each process's port: `LCT_<NAME>_PORT` when set, else the default."""
    ports: dict[str, int] = {}
    for process in PROCESSES:
        raw = environ.get(process.port_variable, "").strip()
        if not raw:
            ports[process.name] = process.default_port
            continue
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise StackError(f"{process.port_variable}={raw} is not a TCP port (1-65535)")
        ports[process.name] = int(raw)
    taken: dict[int, str] = {}
    for name, port in ports.items():
        if port in taken:
            raise StackError(f"{name} and {taken[port]} are both set to port {port}")
        taken[port] = name
    return ports


def port_owner(port: int) -> str | None:
    """Describe the process listening on `port` (Linux /proc), None when it cannot be told."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            listening = fields[3] == "0A"
            if listening and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
                    text = cmdline.decode(errors="replace").strip()
                    text = text if len(text) <= 80 else text[:77] + "..."
                    return f"pid {proc.name} ({text})"
        except OSError:
            continue
    return None


def port_in_use(port: int) -> bool:
    """Tell whether binding 127.0.0.1:`port` fails the way uvicorn's bind would."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def busy_port_messages(ports: Mapping[str, int]) -> list[str]:
    """Return one line per port that is already taken, naming the process when possible."""
    by_name = {process.name: process for process in PROCESSES}
    messages = []
    for name, port in ports.items():
        if not port_in_use(port):
            continue
        owner = port_owner(port)
        holder = f"by {owner}" if owner else "by another process"
        messages.append(
            f"port {port} ({name}) is already in use {holder}; stop it, "
            f"or move {name} with {by_name[name].port_variable}=<port>"
        )
    return messages


def base_url(port: int) -> str:
    """Return the loopback URL of a port."""
    return f"http://{HOST}:{port}"


def load_environment(env_file: Path) -> dict[str, str]:
    """Merge `.env` under the process environment (a variable set in the shell wins)."""
    if not env_file.is_file():
        raise StackError(
            f"{env_file} does not exist: run `make run`, or write it with "
            f"`python scripts/write_dev_env.py {env_file}`"
        )
    values: dict[str, str] = parse_env_file(env_file.read_text())
    return {**values, **os.environ}


def stack_environment(environ: Mapping[str, str], ports: Mapping[str, int]) -> dict[str, str]:
    """Return the environment every process gets: secrets plus where the others listen."""
    env = dict(environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["GATEWAY_URL"] = base_url(ports["gateway"])
    # The frontend forwards each browser's address for the per-address login throttle; on
    # one host it calls from loopback, so loopback is trusted for X-Forwarded-For. Any local
    # process could then claim another address: per-account throttling still holds.
    env.setdefault("GATEWAY_TRUSTED_PROXIES", f"{HOST}/32")
    for service in Service:
        env[f"{service.value.upper()}_SERVICE_URL"] = base_url(ports[service.value])
    return env


def one_time_password() -> str:
    """Return a random password with lower, upper, digit and punctuation, 24 characters."""
    alphabet = string.ascii_letters + string.digits + "-_.!"
    while True:
        password = "".join(secrets.choice(alphabet) for _ in range(24))
        if (
            any(c.islower() for c in password)
            and any(c.isupper() for c in password)
            and any(c.isdigit() for c in password)
            and any(c in "-_.!" for c in password)
        ):
            return password


def create_first_admin(say: Say, login_url: str | None = None) -> bool:
    """Create `admin` with a one-time password when the database has no user; say it once."""
    # Imported here: the identity store reads its database settings from the environment
    # this script has just loaded.
    from services.portfolio.identity import PortfolioIdentityService

    with PortfolioIdentityService() as identity:
        existing = identity.list_users()
        if existing:
            say(f"the database already has {len(existing)} user(s); no admin user created")
            return False
        password = one_time_password()
        identity.create_user(
            ADMIN_USERNAME, password, roles=list(ADMIN_ROLES), must_change_password=True
        )
    where = f"at {login_url} " if login_url else ""
    say(f"new database: created user '{ADMIN_USERNAME}' with roles {ADMIN_ROLES}")
    say(f"  {PASSWORD_LABEL} {password}   (shown this once, never again)")
    say(
        f"  log in {where}and choose a new password: it must be changed at first login "
        "(or POST /auth/password/rotate on the gateway)"
    )
    return True


class StackManager(Manager):  # type: ignore[misc]  # honcho ships no type hints
    """honcho's manager, plus a hook that starts the health watcher after the fork."""

    def __init__(self, printer: Printer, on_started: Callable[[], None]) -> None:
        super().__init__(printer)
        self.stopping = threading.Event()
        self._on_started = on_started

    def _start(self) -> None:
        # Start the watcher thread only after honcho has forked its readers, so no
        # thread is alive during fork().
        super()._start()
        self._on_started()

    def terminate(self) -> None:
        self.stopping.set()
        super().terminate()

    def say(self, text: str) -> None:
        """Print a line under the `stack` prefix, through honcho's queue (thread-safe)."""
        self.events.put(Message("line", text + "\n", datetime.now(), STACK, None))


class StartupWatcher(threading.Thread):
    """Wait for every `/healthz`, create the first admin, print the URLs; stop all on failure."""

    def __init__(
        self,
        manager: StackManager,
        processes: list[StackProcess],
        ports: Mapping[str, int],
        timeout: float,
    ) -> None:
        super().__init__(name="startup-watcher", daemon=True)
        self.manager = manager
        self.processes = processes
        self.ports = ports
        self.timeout = timeout
        self.failed = False

    def run(self) -> None:
        try:
            self._run()
        except StackError as exc:
            if not self.manager.stopping.is_set():
                self.failed = True
                self.manager.say(f"error: {exc}; stopping everything")
                self.manager.terminate()

    def _run(self) -> None:
        deadline = time.monotonic() + self.timeout
        names = [process.name for process in self.processes]
        with httpx.Client(timeout=2.0) as client:
            admin_lines: list[str] = []
            if "portfolio" in names:
                self._wait_healthy(client, ["portfolio"], deadline)
                admin_lines = self._bootstrap_admin()
            self._wait_healthy(client, names, deadline)
        # The admin's password comes last, below the URLs, where it does not scroll away.
        self._print_urls()
        for line in admin_lines:
            self.manager.say(line)
        self.manager.say("Ctrl-C stops everything.")

    def _wait_healthy(self, client: httpx.Client, names: list[str], deadline: float) -> None:
        pending = list(names)
        while pending:
            if self.manager.stopping.is_set():
                raise StackError("stopped before every process was healthy")
            for name in list(pending):
                try:
                    response = client.get(base_url(self.ports[name]) + "/healthz")
                except httpx.HTTPError:
                    continue
                if response.status_code == 200:
                    pending.remove(name)
            if pending and time.monotonic() > deadline:
                raise StackError(
                    f"no healthy /healthz after {self.timeout:.0f} s from: " + ", ".join(pending)
                )
            if pending:
                time.sleep(0.2)

    def _bootstrap_admin(self) -> list[str]:
        lines: list[str] = []
        frontend = base_url(self.ports["frontend"]) + "/"
        try:
            create_first_admin(lines.append, login_url=frontend)
        except Exception as exc:
            # The stack stays useful without it; say why (the password is never in it).
            lines = [f"could not create the first admin user: {type(exc).__name__}: {exc}"]
        return lines

    def _print_urls(self) -> None:
        say = self.manager.say
        ports = self.ports
        running = {process.name for process in self.processes}
        say(f"{READY_LINE}: {len(self.processes)} processes answer /healthz")
        if "frontend" in running:
            say(f"  frontend   {base_url(ports['frontend'])}/   (sign in here)")
        if "gateway" in running:
            gateway = base_url(ports["gateway"])
            say(f"  gateway    {gateway}/   (API docs {gateway}/docs)")
        if "portfolio" in running:
            say(
                f"  portfolio  {base_url(ports['portfolio'])}/   (identity store; call it via the gateway)"
            )
        stubs = [f"{name} :{ports[name]}" for name in STUB_NAMES if name in running]
        if stubs:
            say(
                "  stubs      "
                + ", ".join(stubs)
                + "   (reach them at /api/<service>/ on the gateway)"
            )


def run(env_file: Path, timeout: float) -> int:
    """Start the stack and block until it stops; return the exit status."""
    environ = load_environment(env_file)
    ports = resolve_ports(environ)
    busy = busy_port_messages(ports)
    if busy:
        raise StackError(*busy)
    present = [process for process in PROCESSES if process.present]
    if not present:
        raise StackError("no service module is in this checkout; nothing to start")
    env = stack_environment(environ, ports)
    # The admin step runs the identity store in this process: same database as portfolio.
    os.environ.update(env)

    printer = Printer(sys.stdout)
    watcher: StartupWatcher | None = None

    def start_watcher() -> None:
        if watcher is not None:
            watcher.start()

    manager = StackManager(printer, start_watcher)
    for process in PROCESSES:
        if not process.present:
            manager.say(f"skipping {process.name}: {process.module} is not in this checkout")
    for process in present:
        port = ports[process.name]
        manager.say(
            f"{process.name}: {process.command(port, python='python').removeprefix('exec ')}"
        )
        manager.add_process(
            process.name, process.command(port, shlex.quote(sys.executable)), env=env, cwd=REPO_ROOT
        )
    watcher = StartupWatcher(manager, present, ports, timeout)
    manager.loop()
    manager.stopping.set()
    if watcher.failed:
        return 1
    returncode = int(manager.returncode or 0)
    if returncode not in (0, 130, 143):  # not Ctrl-C or SIGTERM: a process ended by itself
        print(
            f"run_stack: a process exited with status {returncode}, so everything was stopped; "
            "its lines above say why",
            file=sys.stderr,
        )
    return returncode


def render_procfile() -> str:
    """Return the Procfile for `honcho start -f Procfile -e .env` (default ports, venv active)."""
    lines = [
        "# The local stack; `make run` (scripts/run_stack.py) runs the same commands, waits for",
        "# /healthz and creates the first admin. Generated by `scripts/run_stack.py --procfile`.",
    ]
    lines += [f"{process.name}: {process.command(process.default_port)}" for process in PROCESSES]
    return "\n".join(lines) + "\n"


def create_admin_only() -> int:
    """Run only the first-admin step (e.g. `docker compose exec portfolio ...`)."""
    try:
        create_first_admin(print)
    except Exception as exc:
        print(
            f"run_stack: could not create the first admin user: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--env-file",
        type=Path,
        default=REPO_ROOT / ".env",
        help="the secrets file every process reads (default: .env in the repository)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for every /healthz (default: 60)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--create-admin",
        action="store_true",
        help="only create the first admin user when the database has none, then exit",
    )
    mode.add_argument(
        "--procfile", action="store_true", help="print the Procfile for `honcho start` and exit"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; errors are one clear line each on stderr."""
    args = parse_args(argv)
    os.chdir(REPO_ROOT)
    if args.procfile:
        sys.stdout.write(render_procfile())
        return 0
    try:
        if args.create_admin:
            if args.env_file.is_file():
                os.environ.update(load_environment(args.env_file))
            return create_admin_only()
        return run(args.env_file, args.timeout)
    except StackError as exc:
        for line in exc.args:
            print(f"run_stack: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
