"""`python -m services.api_gateway rotate-signing-key | rotate-assertion-key`.

Each writes a new Ed25519 key to the configured secrets store (`SECRETS_PROVIDER`), or to
the `.env` file on the env provider, and moves the current public key to the previous-key
secret. Running services take the new key up without a restart; see the README.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from services.api_gateway.rotation import Rotation, rotate_assertion_key, rotate_signing_key
from shared.secrets import SecretsConfigError, SecretsError, SecretsManager

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

_COMMANDS = {
    "rotate-signing-key": (
        rotate_signing_key,
        "new GATEWAY_JWT_PRIVATE_KEY; the current public key becomes "
        "GATEWAY_JWT_PREVIOUS_PUBLIC_KEY",
    ),
    "rotate-assertion-key": (
        rotate_assertion_key,
        "new GATEWAY_ASSERTION_PRIVATE_KEY and GATEWAY_ASSERTION_PUBLIC_KEY; the current "
        "public key becomes GATEWAY_ASSERTION_PREVIOUS_PUBLIC_KEY",
    ),
}


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m services.api_gateway",
        description="Rotate the gateway's signing keys in the secrets store.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in _COMMANDS.items():
        command = commands.add_parser(name, help=help_text, description=help_text)
        command.add_argument(
            "--env-file",
            type=Path,
            default=None,
            help="with SECRETS_PROVIDER=env: the file to write "
            "(default: SECRETS_ENV_FILE, else .env)",
        )
    args = parser.parse_args(argv)
    try:
        manager = SecretsManager.from_environment()
    except SecretsConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    env_file = args.env_file or manager.settings.secrets_env_file or Path(".env")
    rotate = _COMMANDS[args.command][0]

    async def run() -> Rotation:
        async with manager:
            return await rotate(manager, env_file=env_file)

    try:
        rotation = asyncio.run(run())
    except SecretsConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SecretsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    ttl = manager.settings.secrets_cache_ttl_seconds
    signs_from = datetime.fromtimestamp(rotation.not_before, UTC).strftime("%Y-%m-%d %H:%M:%S")
    print(f"{args.command}: wrote key {rotation.new_kid} to {rotation.written_to}")
    print(f"previous key {rotation.previous_kid} stays accepted until the next rotation")
    print(
        f"running services read it within SECRETS_CACHE_TTL_SECONDS={ttl:g} s; every gateway, "
        f"also one started now, signs with it from {signs_from} UTC ({rotation.not_before})"
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
