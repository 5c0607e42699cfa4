"""Every command line that launches a service, by where it is written, as an argv list."""

from __future__ import annotations

import json
import shlex

import yaml

from devstack import REPO_ROOT
from devstack.processes import PROCESSES
from devstack.servers import ServerProcess


def launch_commands() -> dict[str, list[str]]:
    """Compose, the image, the Procfile, `make run` and the tests' and bench's processes."""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    commands = {
        f"compose {name}": list(service["command"])
        for name, service in compose.items()
        if "uvicorn" in service.get("command", [])
    }
    commands["Dockerfile CMD"] = json.loads(
        next(line for line in dockerfile.splitlines() if line.startswith("CMD ")).removeprefix(
            "CMD "
        )
    )
    for line in (REPO_ROOT / "Procfile").read_text().splitlines():
        if "uvicorn" in line:
            name, _, command = line.partition(":")
            commands[f"Procfile {name}"] = shlex.split(command)
    for process in PROCESSES:
        commands[f"devstack {process.name}"] = shlex.split(process.command(process.default_port))
    for app in sorted({process.app for process in PROCESSES}):
        commands[f"ServerProcess {app}"] = ServerProcess(app, env={}, port=1).argv
    return commands
