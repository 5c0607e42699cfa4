"""What every rotation ceremony shares: writing its secrets, and its command line.

A service's `python -m services.<svc> rotate-...` names its commands, what each rotates and
what it prints; `rotation_cli` does the rest the same way for all of them: the secrets
settings of the environment, `--env-file` on the env provider, and the exit status (0 done,
1 the store failed or a secret is missing, 2 the configuration is wrong), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import anyio.to_thread

from shared.secrets.config import SecretsSettings
from shared.secrets.envfile import write_env_values
from shared.secrets.errors import SecretsConfigError, SecretsError
from shared.secrets.manager import SecretsManager
from shared.secrets.stores import create_store

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
ENV_FILE_HELP = (
    "with SECRETS_PROVIDER=env: the file to write (default: SECRETS_ENV_FILE, else .env)"
)

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Rotate(Protocol[R_co]):
    """A service's rotation: writes the new secret and returns what it wrote."""

    def __call__(self, manager: SecretsManager, *, env_file: Path) -> Awaitable[R_co]: ...


@dataclass(frozen=True, slots=True)
class Command(Generic[R]):
    """One `rotate-...` command: what it rotates, its help, and the lines it prints."""

    rotate: Rotate[R]
    help: str
    report: Callable[[str, R, SecretsSettings], Sequence[str]]


async def write_rotation(
    manager: SecretsManager, updates: Mapping[str, str], *, env_file: Path
) -> str:
    """Write `updates` in their order to the configured store, or to `env_file` on the env
    provider; return where they went."""
    store = create_store(manager.settings)
    if store is None:
        await anyio.to_thread.run_sync(write_env_values, env_file, updates)
        return str(env_file)
    try:
        for name, value in updates.items():
            await store.write(name, value)
    finally:
        await store.aclose()
    return store.location


def utc_text(at: int) -> str:
    """Return unix seconds as `YYYY-MM-DD HH:MM:SS` in UTC, as the commands print them."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def rotation_cli(
    argv: list[str] | None,
    *,
    prog: str,
    description: str,
    commands: Mapping[str, Command[R]],
) -> int:
    """Parse `argv`, run the chosen rotation and print its report; return the exit status."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, command in commands.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help)
        sub.add_argument("--env-file", type=Path, default=None, help=ENV_FILE_HELP)
    args = parser.parse_args(argv)
    chosen = commands[args.command]
    try:
        manager = SecretsManager.from_environment()
    except SecretsConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    env_file = args.env_file or manager.settings.secrets_env_file or Path(".env")

    async def run() -> R:
        async with manager:
            return await chosen.rotate(manager, env_file=env_file)

    try:
        rotation = asyncio.run(run())
    except SecretsConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SecretsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for line in chosen.report(args.command, rotation, manager.settings):
        print(line)
    return EXIT_OK
