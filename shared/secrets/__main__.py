"""`python -m shared.secrets check|get|provision`.

`check [--service S]` and `get NAME [--service S]` read as service S does (its paths in
Vault's per-service layout, with the credentials in the environment); `provision --vault
--credentials-dir DIR` sets Vault up for least privilege (shared/secrets/provision.py).

`--env-file PATH` (check, get) reads a `.env` file under the environment, as `make run` gives
it to every process: `check --env-file .env` sees what the local stack sees. Without it a
check that finds secrets missing while a `.env` is in the current directory says so.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from shared.secrets.envfile import read_env_file
from shared.secrets.errors import SecretsConfigError, SecretsError, SecretsUnavailableError
from shared.secrets.manager import SecretsManager
from shared.secrets.registry import Consumer, ManagedSecret

EXIT_OK = 0
EXIT_MISSING = 1
EXIT_CONFIG = 2
LOCAL_ENV_FILE = ".env"
ENV_FILE_HELP = "read this .env file under the environment, as `make run` does (e.g. .env)"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m shared.secrets",
        description="Check or read the managed secrets of config/managed_secrets.yaml.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check", help="show where every managed secret resolves from (never its value)"
    )
    check.add_argument(
        "--service",
        choices=[consumer.value for consumer in Consumer],
        help="only the secrets this service requires",
    )
    check.add_argument("--env-file", type=Path, metavar="PATH", help=ENV_FILE_HELP)
    get = commands.add_parser("get", help="print one secret's value (for scripts)")
    get.add_argument("name")
    get.add_argument(
        "--service",
        choices=[consumer.value for consumer in Consumer],
        help="read as this service does (its paths, its credentials)",
    )
    get.add_argument("--env-file", type=Path, metavar="PATH", help=ENV_FILE_HELP)
    provision = commands.add_parser(
        "provision",
        help="write Vault's policies, AppRoles and missing secrets; "
        "each service's credentials to DIR/<service>/",
    )
    provision.add_argument("--vault", action="store_true", required=True, help="provision Vault")
    provision.add_argument("--credentials-dir", type=Path, required=True, metavar="DIR")
    args = parser.parse_args(argv)

    if args.command == "provision":
        return _provision(args.credentials_dir)
    if args.env_file is not None:
        try:
            _load_env_file(args.env_file)
        except SecretsUnavailableError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    try:
        manager = SecretsManager.from_environment(service=args.service)
    except SecretsConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check":
        status = asyncio.run(_check(manager, args.service))
        if status == EXIT_MISSING and args.env_file is None and Path(LOCAL_ENV_FILE).is_file():
            print(
                f"hint: `make run` gives every process the values of {LOCAL_ENV_FILE}; this "
                f"check read only this shell's environment. To see what the stack sees: "
                f"python -m shared.secrets check --env-file {LOCAL_ENV_FILE}",
                file=sys.stderr,
            )
        return status
    return asyncio.run(_get(manager, args.name))


def _load_env_file(path: Path) -> None:
    """Put a `.env` file's values under the environment, as `make run` does (the shell wins)."""
    for name, value in read_env_file(path).items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("SECRETS_ENV_FILE", str(path.resolve()))


async def _check(manager: SecretsManager, service: str | None) -> int:
    status = EXIT_OK
    async with manager:
        entries = (
            manager.registry.required_by(service) if service is not None else list(manager.registry)
        )
        store_error: SecretsUnavailableError | None = None
        for entry in entries:
            required = _required_text(entry)
            try:
                # One store failure is enough: do not wait out the timeout once per secret.
                if store_error is not None:
                    raise store_error
                resolved = await manager.resolve(entry.name)
            except SecretsUnavailableError as exc:
                store_error = exc
                outcome = f"UNAVAILABLE ({exc})"
                failed = True
            except SecretsError as exc:
                outcome = f"INVALID ({exc})"
                failed = bool(entry.required_by)
            else:
                outcome = "MISSING" if resolved is None else f"resolved from {resolved.source}"
                failed = resolved is None and bool(entry.required_by)
            if failed:
                status = EXIT_MISSING
            print(f"{entry.name}: {required}: {outcome}")
    return status


async def _get(manager: SecretsManager, name: str) -> int:
    async with manager:
        try:
            value = await manager.require(name)
        except SecretsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_MISSING
    print(value.get_secret_value())
    return EXIT_OK


def _provision(credentials_dir: Path) -> int:
    # Imported here: only provisioning needs it.
    from shared.secrets.config import SecretsSettings
    from shared.secrets.provision import provision_vault

    try:
        report = provision_vault(SecretsSettings.from_environment(), credentials_dir)
    except SecretsConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SecretsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MISSING
    except OSError as exc:
        print(
            f"error: cannot write the credentials under {credentials_dir}: {exc.strerror}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    for line in report.lines():
        print(line)
    return EXIT_OK


def _required_text(entry: ManagedSecret) -> str:
    if not entry.required_by:
        return "optional"
    return "required by " + ", ".join(entry.required_by)


if __name__ == "__main__":
    sys.exit(main())
