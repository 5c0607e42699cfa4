"""Write a git-ignored `.env` of freshly generated development secrets, once."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.secrets.generate import generate_secrets


def render() -> str:
    """Return the contents of a new development `.env`."""
    lines = [
        "# Development secrets, generated once by `make run`. Never commit this file.",
        "SECRETS_PROVIDER=env",
        *(f"{name}={value}" for name, value in generate_secrets().items()),
        "# The local stack speaks plain HTTP, so the session cookie cannot be Secure here.",
        "SECURITY__COOKIE_SECURE=false",
    ]
    return "\n".join(lines) + "\n"


def main(path: str) -> None:
    """Create the file if it does not exist; never overwrite existing secrets."""
    target = Path(path)
    if target.exists():
        return
    # Created 0600 in one step, so the secrets are never readable by others, not even briefly.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(render())
    print(f"wrote {target} with freshly generated development secrets (git-ignored)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".env")
