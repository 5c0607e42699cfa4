"""`python -m services.frontend rotate-session-secret`.

Writes a new SESSION_SECRET_KEY to the configured secrets store (`SECRETS_PROVIDER`), or to
the `.env` file on the env provider; the current one becomes SESSION_PREVIOUS_SECRET_KEY.
Running frontends take it up without a restart, and nobody is signed out; see the README.
"""

from __future__ import annotations

import sys

from services.frontend.rotation import Rotation, rotate_session_secret
from shared.secrets import SecretsSettings
from shared.secrets.rotate import Command, rotation_cli, utc_text


def _report(command: str, rotation: Rotation, _settings: SecretsSettings) -> list[str]:
    return [
        f"{command}: wrote secret {rotation.new} to {rotation.written_to}",
        f"previous secret {rotation.previous} stays accepted until the next rotation",
        f"every frontend, also one started now, signs with it from "
        f"{utc_text(rotation.not_before)} UTC ({rotation.not_before})",
    ]


_HELP = (
    "new SESSION_SECRET_KEY, signing from one SECRETS_CACHE_TTL_SECONDS + 2 s on; the "
    "current one becomes SESSION_PREVIOUS_SECRET_KEY"
)
_COMMANDS = {"rotate-session-secret": Command(rotate_session_secret, _HELP, _report)}


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    return rotation_cli(
        argv,
        prog="python -m services.frontend",
        description="Rotate the frontend's session secret in the secrets store.",
        commands=_COMMANDS,
    )


if __name__ == "__main__":
    sys.exit(main())
