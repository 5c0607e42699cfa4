"""The `.env` file of a local run as a place secrets are re-read from and rotated into.

Processes started from a `.env` copy it into their environment once; re-reading the file is
how a running service on the env provider sees a rotated value (`SECRETS_ENV_FILE`).
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from shared.secrets.errors import SecretsConfigError, SecretsUnavailableError

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")


def parse_env_text(text: str) -> dict[str, str]:
    """Return the `KEY=value` pairs of an env file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        key, value = match.group(1), match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def read_env_file(path: Path) -> dict[str, str]:
    """Return the pairs of the file; raise `SecretsUnavailableError` naming it if unreadable."""
    try:
        return parse_env_text(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SecretsUnavailableError(f"cannot read {path} ({exc.strerror})") from None


def write_env_values(path: Path, updates: Mapping[str, str]) -> None:
    """Set `updates` in the file in one atomic replace, keeping every other line and 0600."""
    for key, value in updates.items():
        if _LINE.match(f"{key}=") is None or "\n" in value or "\r" in value:
            raise SecretsConfigError(f"{key}: not a value an env file can hold on one line")
    if not path.is_file():
        raise SecretsConfigError(f"{path} does not exist; nothing to rotate")
    with _locked(path.parent):
        lines = path.read_text(encoding="utf-8").splitlines()
        pending = dict(updates)
        kept: list[str] = []
        for line in lines:
            match = _LINE.match(line)
            if match is not None and match.group(1) in updates:
                if match.group(1) not in pending:
                    continue  # a later duplicate would shadow the new value: dropped
                key = match.group(1)
                kept.append(f"{key}={pending.pop(key)}")
            else:
                kept.append(line)
        kept.extend(f"{key}={value}" for key, value in pending.items())
        # A reader sees the old file or the new one, never half of it.
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write("\n".join(kept) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    # Two rotations at once must not both start from the same old file.
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
