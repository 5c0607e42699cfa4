"""`python -m devstack` (what `make run` calls): the whole stack locally, under honcho.

It refuses to start when a port is taken, starts the nine processes with the `.env` secrets,
waits until each answers `/healthz`, creates the first `admin` user on a new database (with
`python -m services.portfolio create-first-admin`; its one-time password is printed once),
prints the URLs, and stops everything on Ctrl-C or SIGTERM. Once the stack is up, a process
that exits is reported and restarted with backoff (devstack/restarts.py); before that, one
that cannot start stops everything. Exit status: that of the
processes (130 after Ctrl-C, 143 after SIGTERM), 1 when the stack did not come up, 2 when it
refused to start.

Ports: `LCT_<NAME>_PORT` (e.g. `LCT_GATEWAY_PORT=9000`) moves one process; the gateway and
the frontend are told where the others are. `--procfile` prints the Procfile instead.
`--vault` (`make run-vault`) keeps the secrets in a local OpenBao instead (devstack/vault.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from devstack import REPO_ROOT
from devstack.errors import StackError
from devstack.processes import render_procfile
from devstack.stack import PROGRAM, run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROGRAM}",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        default=REPO_ROOT / ".env",
        help="the secrets file every process reads (default: .env in the repository)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for every /healthz (default: 60)",
    )
    parser.add_argument(
        "--procfile", action="store_true", help="print the Procfile for `honcho start` and exit"
    )
    parser.add_argument(
        "--vault",
        action="store_true",
        help="keep the secrets in a local OpenBao, one AppRole per service (make run-vault)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; errors are one clear line each on stderr."""
    args = parse_args(argv)
    os.chdir(REPO_ROOT)
    if args.procfile:
        sys.stdout.write(render_procfile())
        return 0
    try:
        return run(args.env_file, args.timeout, vault=args.vault)
    except StackError as exc:
        for line in exc.args:
            print(f"{PROGRAM}: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
