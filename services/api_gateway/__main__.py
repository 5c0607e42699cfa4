"""`python -m services.api_gateway rotate-signing-key | rotate-assertion-key`.

Each writes a new Ed25519 key to the configured secrets store (`SECRETS_PROVIDER`), or to
the `.env` file on the env provider, and moves the current public key to the previous-key
secret. Running services take the new key up without a restart; see the README.
"""

from __future__ import annotations

import sys

from services.api_gateway.rotation import Rotation, rotate_assertion_key, rotate_signing_key
from shared.secrets import SecretsSettings
from shared.secrets.rotate import Command, rotation_cli, utc_text


def _report(command: str, rotation: Rotation, settings: SecretsSettings) -> list[str]:
    ttl = settings.secrets_cache_ttl_seconds
    return [
        f"{command}: wrote key {rotation.new_kid} to {rotation.written_to}",
        f"previous key {rotation.previous_kid} stays accepted until the next rotation",
        f"running services read it within SECRETS_CACHE_TTL_SECONDS={ttl:g} s; every gateway, "
        f"also one started now, signs with it from {utc_text(rotation.not_before)} UTC "
        f"({rotation.not_before})",
    ]


_COMMANDS = {
    "rotate-signing-key": Command(
        rotate_signing_key,
        "new GATEWAY_JWT_PRIVATE_KEY; the current public key becomes "
        "GATEWAY_JWT_PREVIOUS_PUBLIC_KEY",
        _report,
    ),
    "rotate-assertion-key": Command(
        rotate_assertion_key,
        "new GATEWAY_ASSERTION_PRIVATE_KEY and GATEWAY_ASSERTION_PUBLIC_KEY; the current "
        "public key becomes GATEWAY_ASSERTION_PREVIOUS_PUBLIC_KEY",
        _report,
    ),
}


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    return rotation_cli(
        argv,
        prog="python -m services.api_gateway",
        description="Rotate the gateway's signing keys in the secrets store.",
        commands=_COMMANDS,
    )


if __name__ == "__main__":
    sys.exit(main())
