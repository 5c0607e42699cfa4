"""Write a git-ignored `.env` of freshly generated development secrets, once."""

import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.secrets.generate import generate_secrets

# Secrets that came after the first `.env` files were written: an older file gains them (each
# stands alone: no alias, no key pair to keep matched), so e.g. TOTP enrolment works without
# deleting `.env`. Nothing the file already holds is ever changed.
ADDED_LATER = ("METRICS_SCRAPE_TOKEN", "PORTFOLIO_MFA_ENCRYPTION_KEY")
_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=", re.MULTILINE)


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


def top_up(target: Path) -> list[str]:
    """Append to an existing file the secrets of ADDED_LATER it lacks; return their names."""
    text = target.read_text()
    missing = [name for name in ADDED_LATER if name not in set(_ASSIGNMENT.findall(text))]
    if not missing:
        return []
    generated = generate_secrets()
    lines = [
        "" if text.endswith("\n") or not text else "\n",
        "# Added by `make run`: secrets this file was written without.\n",
        *(f"{name}={generated[name]}\n" for name in missing),
    ]
    with target.open("a") as handle:
        handle.write("".join(lines))
    return missing


def main(path: str) -> None:
    """Create the file if it does not exist; never overwrite existing secrets, only add the
    later ones an older file lacks."""
    target = Path(path)
    if target.exists():
        added = top_up(target)
        if added:
            print(f"added {', '.join(added)} to {target} (newly generated; nothing else changed)")
        return
    # Created 0600 in one step, so the secrets are never readable by others, not even briefly.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(render())
    print(f"wrote {target} with freshly generated development secrets (git-ignored)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".env")
