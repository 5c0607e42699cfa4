"""Operator CLI of the identity store: `python -m services.portfolio <command> ...`.

Passwords are prompted for (new ones twice) or, when stdin is not a terminal, read from
stdin one per line (a new one twice too: the second line must repeat the first, so a typo
in a script is refused rather than set); never from the command line, where `ps` and shell
history would see them.

`create-first-admin` creates `admin` (role admin) with a one-time password it prints once,
which must be changed at first login, only when the database has no user at all.

Exit status: 0 done (for `create-first-admin` also when the database already has users and
nothing was created), 1 an error (one line on stderr; nothing was changed), 2 a usage error.
"""

import argparse
import getpass
import logging
import re
import secrets
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from services.portfolio.accounts.passwords import one_time_password
from services.portfolio.accounts.schemas import User
from services.portfolio.errors import ConfigurationError, PortfolioError
from services.portfolio.identity import PortfolioIdentityService
from shared.roles import ROLES, Role
from shared.secrets import SecretsError
from shared.usernames import InvalidUsernameError

ROLE_HELP = "a role to grant (repeat for several): " + ", ".join(ROLES)
FIRST_ADMIN = "admin"
FIRST_ADMIN_ROLES = [Role.ADMIN.value]
ONE_TIME_PASSWORD_LABEL = "one-time password:"  # noqa: S105  # nosec B105 - a label


class CommandError(Exception):
    """A problem with what the operator typed or piped in."""


def _read_line(what: str) -> str:
    line = sys.stdin.readline()
    if not line:
        raise CommandError(f"expected a line on stdin for: {what}")
    return line.removesuffix("\n").removesuffix("\r")


def _read_secret(prompt: str, *, confirm: bool = False) -> str:
    what = prompt.rstrip(": ")
    if not sys.stdin.isatty():
        value = _read_line(what)
        repeated = _read_line(f"{what} (repeated)") if confirm else value
    else:
        value = getpass.getpass(prompt)
        repeated = getpass.getpass("Repeat it: ") if confirm else value
    if not secrets.compare_digest(value.encode(), repeated.encode()):
        raise CommandError("the two entries differ; nothing was changed")
    return value


def _describe(user: User) -> str:
    return f"{user.username} (roles: {', '.join(user.roles) or 'none'})"


def create_user(identity: PortfolioIdentityService, args: argparse.Namespace) -> None:
    """Create a user with a prompted password."""
    password = _read_secret(f"Password for {args.username}: ", confirm=True)
    user = identity.create_user(
        args.username, password, args.role, must_change_password=args.must_change_password
    )
    print(f"created user {_describe(user)}")


def rotate_api_key(identity: PortfolioIdentityService, args: argparse.Namespace) -> None:
    """Give a user a new API key: from stdin, else the secrets layer, else a random one."""
    new_key = _read_secret("New API key: ") if args.from_stdin else None
    result = identity.rotate_api_key(args.username, new_key)
    print(f"rotated the API key of {result.user.username}; key id {result.user.api_key_id}")
    if result.stored_at is not None:
        print(f"the new key is stored at {result.stored_at}")
    elif result.generated:
        # Stored nowhere else: this is the only time anybody sees it.
        print(f"new API key (shown once, store it now): {result.api_key}")


def rotate_password(identity: PortfolioIdentityService, args: argparse.Namespace) -> None:
    """Replace a password, given the current one."""
    current = _read_secret(f"Current password of {args.username}: ")
    new = _read_secret("New password: ", confirm=True)
    user = identity.rotate_password(args.username, current, new)
    print(f"rotated the password of {user.username}")


def list_users(identity: PortfolioIdentityService, args: argparse.Namespace) -> None:
    """Print every user as a table, or as JSON lines for a SIEM."""
    users = identity.list_users()
    if args.json:
        for user in users:
            print(user.model_dump_json())
        return
    header = ("USERNAME", "ROLES", "ACTIVE", "LAST LOGIN", "PASSWORD EXPIRES", "API KEY ID")
    rows = [header] + [
        (
            user.username,
            ",".join(user.roles) or "-",
            "yes" if user.is_active else "no",
            _when(user.last_login_at),
            "now (must change)" if user.must_change_password else _when(user.password_expires_at),
            user.api_key_id or "-",
        )
        for user in users
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _when(moment: object) -> str:
    return moment.isoformat(timespec="seconds") if hasattr(moment, "isoformat") else "-"


def deactivate_user(identity: PortfolioIdentityService, args: argparse.Namespace) -> None:
    """Deactivate a user."""
    user = identity.deactivate_user(args.username)
    print(f"deactivated {user.username}")


def reactivate_user(identity: PortfolioIdentityService, args: argparse.Namespace) -> None:
    """Let a deactivated user sign in again."""
    user = identity.reactivate_user(args.username)
    print(f"reactivated {user.username}")


def delete_user(identity: PortfolioIdentityService, args: argparse.Namespace) -> None:
    """Delete a user softly (the name stays reserved, the history auditable)."""
    user = identity.delete_user(args.username)
    print(f"deleted {user.username}; the name stays reserved")


def reset_password(identity: PortfolioIdentityService, args: argparse.Namespace) -> None:
    """Set a one-time password, printed once, to change at the next sign-in."""
    issued = identity.reset_password(args.username)
    print(f"reset the password of {issued.user.username}")
    print(
        f"  {ONE_TIME_PASSWORD_LABEL} {issued.one_time_password}   (shown this once, never again)"
    )


def set_roles(identity: PortfolioIdentityService, args: argparse.Namespace) -> None:
    """Replace a user's roles."""
    user = identity.set_roles(args.username, args.role)
    print(f"set roles of {_describe(user)}")


_RELATIVE = re.compile(r"(\d{1,6})([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str) -> datetime:
    """Return the moment `value` names: ISO 8601 (UTC unless it says), or `30m`, `24h`, `7d` ago."""
    relative = _RELATIVE.fullmatch(value.strip())
    if relative is not None:
        amount, unit = relative.groups()
        return datetime.now(UTC) - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--since must be an ISO 8601 time (2026-01-31T08:00:00Z) or an age "
            f"such as 30m, 24h or 7d, not {value[:40]!r}"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def audit(identity: PortfolioIdentityService, args: argparse.Namespace) -> None:
    """Print security events oldest first, or as JSON lines for a SIEM."""
    try:
        events = identity.audit_events(since=args.since, user=args.user, event_type=args.type)
    except InvalidUsernameError as exc:
        raise CommandError(f"--user: {exc}") from None
    for event in events:
        if args.json:
            print(event.model_dump_json())
            continue
        print(
            f"{event.time.isoformat(timespec='seconds')}  #{event.id}  {event.type}  "
            f"{event.outcome}  actor={event.actor or '-'}  subject={event.subject or '-'}  "
            f"client={event.client_address or '-'}  request={event.request_id or '-'}"
        )


def create_first_admin(identity: PortfolioIdentityService, args: argparse.Namespace) -> None:
    """Create `admin` with a one-time password when the database has no user; print it once."""
    existing = identity.list_users()
    if existing:
        print(f"the database already has {len(existing)} user(s); no admin user created")
        return
    password = one_time_password(avoid=FIRST_ADMIN)
    identity.create_user(FIRST_ADMIN, password, FIRST_ADMIN_ROLES, must_change_password=True)
    where = f"at {args.login_url} " if args.login_url else ""
    print(f"new database: created user '{FIRST_ADMIN}' with roles {FIRST_ADMIN_ROLES}")
    print(f"  {ONE_TIME_PASSWORD_LABEL} {password}   (shown this once, never again)")
    print(
        f"  log in {where}and choose a new password: it must be changed at first login "
        "(or POST /auth/password/rotate on the gateway)"
    )


Command = Callable[[PortfolioIdentityService, argparse.Namespace], None]


def build_parser() -> argparse.ArgumentParser:
    """Return the CLI's argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m services.portfolio",
        description="Manage the users of the identity store (database: PORTFOLIO_DATABASE_URL).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Command, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    sub = add("create-user", create_user, "create a user; the password is prompted for")
    sub.add_argument("username")
    sub.add_argument("--role", action="append", default=[], help=ROLE_HELP)
    sub.add_argument(
        "--must-change-password",
        action="store_true",
        help="make the password expired until the user rotates it",
    )
    sub = add("rotate-api-key", rotate_api_key, "give a user a new API key")
    sub.add_argument("username")
    sub.add_argument(
        "--from-stdin",
        action="store_true",
        help="read the new key from stdin (else PORTFOLIO_NEW_API_KEY, else a random key)",
    )
    sub = add("rotate-password", rotate_password, "replace a user's password")
    sub.add_argument("username")
    sub = add("list-users", list_users, "list every user")
    sub.add_argument("--json", action="store_true", help="one JSON object per line")
    sub = add("deactivate-user", deactivate_user, "deactivate a user")
    sub.add_argument("username")
    sub = add("reactivate-user", reactivate_user, "let a deactivated user sign in again")
    sub.add_argument("username")
    sub = add("delete-user", delete_user, "delete a user (soft: the name stays reserved)")
    sub.add_argument("username")
    sub = add(
        "reset-password",
        reset_password,
        "set a one-time password, printed once, to change at the next sign-in",
    )
    sub.add_argument("username")
    sub = add("set-roles", set_roles, "replace a user's roles")
    sub.add_argument("username")
    sub.add_argument("--role", action="append", required=True, help=ROLE_HELP)
    sub = add("audit", audit, "print security events, oldest first")
    sub.add_argument(
        "--since",
        type=parse_since,
        help="only events at or after this time: ISO 8601, or an age such as 30m, 24h, 7d",
    )
    sub.add_argument("--user", help="only events by or about this user")
    sub.add_argument("--type", help="only events of this type, e.g. login.failed")
    sub.add_argument("--json", action="store_true", help="one JSON object per line")
    sub = add(
        "create-first-admin",
        create_first_admin,
        "on a database with no user, create 'admin' (role admin) with a one-time password, "
        "printed once, to change at first login",
    )
    sub.add_argument("--login-url", help="where the admin signs in (only printed)")
    sub.epilog = (
        "exit status: 0 when created, and when the database already has users (nothing is "
        "created); 1 on an error, one line on stderr"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors are one line on stderr and exit status 1."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    try:
        with PortfolioIdentityService() as identity:
            args.handler(identity, args)
    except (PortfolioError, ConfigurationError, SecretsError, CommandError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; nothing was changed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
