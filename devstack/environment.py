"""The environment every process of the stack gets: `.env`, the shell, and where the others are."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from honcho.environ import parse as parse_env_file

from devstack.errors import StackError
from devstack.launch import HOST
from devstack.ports import base_url
from shared.roles import Service


def load_environment(env_file: Path) -> dict[str, str]:
    """Merge `.env` under the process environment (a variable set in the shell wins), and
    name the file in `SECRETS_ENV_FILE` so running services re-read rotated secrets."""
    if not env_file.is_file():
        raise StackError(
            f"{env_file} does not exist: run `make run`, or write it with "
            f"`python scripts/write_dev_env.py {env_file}`"
        )
    values: dict[str, str] = parse_env_file(env_file.read_text())
    return {"SECRETS_ENV_FILE": str(env_file.resolve()), **values, **os.environ}


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
