"""The first administrator of a new database, made by the identity store's own command."""

from __future__ import annotations

import subprocess  # nosec B404 - runs our own CLI with a fixed argv
import sys
from collections.abc import Mapping

from devstack import REPO_ROOT

FAILED = "could not create the first admin user"


def create_first_admin(env: Mapping[str, str], login_url: str, timeout: float) -> list[str]:
    """Run `python -m services.portfolio create-first-admin`; return the lines to print."""
    command = [
        sys.executable,
        "-m",
        "services.portfolio",
        "create-first-admin",
        "--login-url",
        login_url,
    ]
    try:
        done = subprocess.run(  # noqa: S603  # nosec B603 - fixed argv, our own module
            command,
            cwd=REPO_ROOT,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return [f"{FAILED}: no answer after {timeout:.0f} s"]
    if done.returncode == 0:
        return done.stdout.splitlines()
    # The stack stays useful without it; say why (the password is never in it).
    reason = next(reversed(done.stderr.strip().splitlines()), f"exit status {done.returncode}")
    return [f"{FAILED}: {reason.removeprefix('error: ')}"]
