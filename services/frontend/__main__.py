"""`python -m services.frontend rotate-session-secret`.

Writes a new SESSION_SECRET_KEY to the configured secrets store (`SECRETS_PROVIDER`), or to
the `.env` file on the env provider; the current one becomes SESSION_PREVIOUS_SECRET_KEY.
Running frontends take it up without a restart, and nobody is signed out; see the README.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from services.frontend.rotation import Rotation, rotate_session_secret
from shared.secrets import SecretsConfigError, SecretsError, SecretsManager

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m services.frontend",
        description="Rotate the frontend's session secret in the secrets store.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    help_text = (
        "new SESSION_SECRET_KEY, signing from one SECRETS_CACHE_TTL_SECONDS + 2 s on; the "
        "current one becomes SESSION_PREVIOUS_SECRET_KEY"
    )
    command = commands.add_parser("rotate-session-secret", help=help_text, description=help_text)
    command.add_argument(
        "--env-file",
        type=Path,
        default=None,
        help="with SECRETS_PROVIDER=env: the file to write (default: SECRETS_ENV_FILE, else .env)",
    )
    args = parser.parse_args(argv)
    try:
        manager = SecretsManager.from_environment()
    except SecretsConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    env_file = args.env_file or manager.settings.secrets_env_file or Path(".env")

    async def run() -> Rotation:
        async with manager:
            return await rotate_session_secret(manager, env_file=env_file)

    try:
        rotation = asyncio.run(run())
    except SecretsConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SecretsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    signs_from = datetime.fromtimestamp(rotation.not_before, UTC).strftime("%Y-%m-%d %H:%M:%S")
    print(f"{args.command}: wrote secret {rotation.new} to {rotation.written_to}")
    print(f"previous secret {rotation.previous} stays accepted until the next rotation")
    print(
        f"every frontend, also one started now, signs with it from {signs_from} UTC "
        f"({rotation.not_before})"
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
