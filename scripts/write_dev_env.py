"""Write a git-ignored `.env` of freshly generated development secrets, once."""

import secrets
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.keys import generate_private_key, load_private_key, public_key_text


def render() -> str:
    """Return the contents of a new development `.env`."""
    assertion_key = generate_private_key()
    lines = [
        "# Development secrets, generated once by `make run`. Never commit this file.",
        "SECRETS_PROVIDER=env",
        f"SESSION_SECRET_KEY={secrets.token_urlsafe(48)}",
        f"GATEWAY_JWT_PRIVATE_KEY={generate_private_key()}",
        f"GATEWAY_ASSERTION_PRIVATE_KEY={assertion_key}",
        f"GATEWAY_ASSERTION_PUBLIC_KEY={public_key_text(load_private_key(assertion_key))}",
        f"IDENTITY_SERVICE_TOKEN={secrets.token_urlsafe(48)}",
        "# The local stack speaks plain HTTP, so the session cookie cannot be Secure here.",
        "SECURITY__COOKIE_SECURE=false",
    ]
    return "\n".join(lines) + "\n"


def main(path: str) -> None:
    """Create the file if it does not exist; never overwrite existing secrets."""
    target = Path(path)
    if target.exists():
        return
    target.write_text(render())
    target.chmod(0o600)
    print(f"wrote {target} with freshly generated development secrets (git-ignored)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".env")
