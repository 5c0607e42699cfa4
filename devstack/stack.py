"""The whole stack under honcho: start every process, watch it come up, stop it all together."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path

from honcho.printer import Printer

from devstack import REPO_ROOT
from devstack.environment import load_environment, stack_environment
from devstack.errors import StackError
from devstack.manager import StackManager
from devstack.ports import busy_port_messages, resolve_ports
from devstack.processes import PROCESSES
from devstack.watcher import StartupWatcher

PROGRAM = "devstack"


def run(env_file: Path, timeout: float, *, vault: bool = False) -> int:
    """Start the stack and block until it stops; return the exit status.

    With `vault` the secrets live in a local OpenBao (devstack/vault.py), not in `.env`.
    """
    with ExitStack() as resources:
        return _run(env_file, timeout, vault=vault, resources=resources)


def _run(env_file: Path, timeout: float, *, vault: bool, resources: ExitStack) -> int:
    environ = load_environment(env_file)
    ports = resolve_ports(environ)
    busy = busy_port_messages(ports)
    if busy:
        raise StackError(*busy)
    present = [process for process in PROCESSES if process.present]
    if not present:
        raise StackError("no service module is in this checkout; nothing to start")
    env = stack_environment(environ, ports)
    envs = {process.name: env for process in present}
    if vault:
        from devstack.vault import local_vault  # imported here: only this mode needs OpenBao

        local = resources.enter_context(local_vault(REPO_ROOT / "var" / "openbao"))
        envs = {process.name: local.environment(env, process) for process in present}

    printer = Printer(sys.stdout)
    watcher: StartupWatcher | None = None

    def start_watcher() -> None:
        if watcher is not None:
            watcher.start()

    manager = StackManager(printer, start_watcher)
    if vault:
        manager.say(
            f"secrets: OpenBao at {local.url} (root token in {local.root_token_file}); "
            "each process signs in with its own AppRole"
        )
    for process in PROCESSES:
        if not process.present:
            manager.say(f"skipping {process.name}: {process.module} is not in this checkout")
    for process in present:
        port = ports[process.name]
        manager.say(
            f"{process.name}: {process.command(port, python='python').removeprefix('exec ')}"
        )
        manager.add_process(
            process.name,
            process.command(port, sys.executable),
            env=envs[process.name],
            cwd=REPO_ROOT,
        )
    # The admin step runs the identity store's command as the portfolio: same database.
    watcher = StartupWatcher(manager, present, ports, envs.get("portfolio", env), timeout)
    manager.loop()
    manager.stopping.set()
    if watcher.failed:
        return 1
    returncode = int(manager.returncode or 0)
    if returncode not in (0, 130, 143):  # not Ctrl-C or SIGTERM: a process ended by itself
        print(
            f"{PROGRAM}: a process exited with status {returncode}, so everything was stopped; "
            "its lines above say why",
            file=sys.stderr,
        )
    return returncode
