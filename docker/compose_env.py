"""Write the git-ignored `compose.env` that every `docker compose --env-file` call reads.

Created once, by `make compose-env`: PostgreSQL takes its password only when it first creates
its volume, so the value must stay the same from one shell to the next. An existing file is
never rewritten; a variable a newer compose file needs is appended, the others keep their
values. (The VAULT_TOKEN older files hold is no longer read: each service now logs in to
Vault with its own AppRole credentials, which vault-init writes.)
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from pathlib import Path

# What docker-compose.yml requires (`${NAME:?...}`), each generated when missing.
VARIABLES = ("POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD")
HEADER = (
    "# docker compose credentials, written once by `make compose-env`. Never commit this file.\n"
    "# Use with: docker compose --env-file compose.env ...  (README: changing a password)\n"
)
ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*=(?P<value>.*)$")


def generate() -> str:
    """Return a new random value: hex, so no quoting in an env file or a URL can break it."""
    return secrets.token_hex(24)


def assigned(text: str) -> dict[str, str]:
    """Return the `NAME=value` assignments of an env file, comments and blanks skipped."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = ASSIGNMENT.match(line)
        if match and not line.lstrip().startswith("#"):
            found[match["name"]] = match["value"].strip()
    return found


def main(path: str) -> int:
    """Create the file, or append the variables it lacks; return the exit status."""
    target = Path(path)
    if not target.exists():
        body = HEADER + "".join(f"{name}={generate()}\n" for name in VARIABLES)
        # Created 0600 in one step, so the values are never readable by others, not even briefly.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(body)
        print(f"wrote {target}: {', '.join(VARIABLES)} (git-ignored; keep it)")
        return 0
    existing = assigned(target.read_text())
    empty = [name for name in VARIABLES if name in existing and not existing[name]]
    if empty:
        print(
            f"{target}: {', '.join(empty)} is empty; set a value or delete the line to have "
            "one generated",
            file=sys.stderr,
        )
        return 1
    missing = [name for name in VARIABLES if name not in existing]
    if not missing:
        print(f"{target} already holds {', '.join(VARIABLES)}; nothing changed")
        return 0
    text = target.read_text()
    with target.open("a") as handle:
        if text and not text.endswith("\n"):
            handle.write("\n")
        handle.write("".join(f"{name}={generate()}\n" for name in missing))
    print(f"added {', '.join(missing)} to {target}; the other values are kept")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "compose.env"))
