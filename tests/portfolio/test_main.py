"""The operator CLI `python -m services.portfolio`, run as a real subprocess."""

import json
import os
import subprocess
import sys

import pytest

from devstack import REPO_ROOT
from devstack.ports import free_port
from services.portfolio.__main__ import ONE_TIME_PASSWORD_LABEL, one_time_password
from services.portfolio.errors import PasswordExpiredError
from services.portfolio.identity import PortfolioIdentityService
from tests.portfolio.conftest import CHEAP_ARGON2_ENV, PASSWORD, make_settings


@pytest.fixture
def cli(sqlite_url):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PORTFOLIO_", "SECRETS_"))}
    env = {
        **base,
        "PORTFOLIO_DATABASE_URL": sqlite_url,
        "SECRETS_PROVIDER": "env",
        **CHEAP_ARGON2_ENV,
    }

    def run(*args: str, stdin: str = "", extra_env: dict[str, str] | None = None):
        return subprocess.run(
            [sys.executable, "-m", "services.portfolio", *args],
            cwd=REPO_ROOT,
            env={**env, **(extra_env or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    run.url = sqlite_url  # type: ignore[attr-defined]
    return run


def identity_for(url: str) -> PortfolioIdentityService:
    return PortfolioIdentityService(settings=make_settings(url))


def seed(url: str, username: str, role: str) -> None:
    with identity_for(url) as identity:
        identity.create_user(username, PASSWORD, roles=[role])


def twice(password: str) -> str:
    """A new password as a script pipes it: the line, then the same line again."""
    return f"{password}\n{password}\n"


def test_create_user_reads_the_password_from_stdin(cli):
    done = cli(
        "create-user", "Ops-User", "--role", "portfolio", "--role", "market", stdin=twice(PASSWORD)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "created user ops-user (roles: portfolio, market)\n"
    assert PASSWORD not in done.stdout + done.stderr
    with identity_for(cli.url) as identity:
        assert identity.authenticate("ops-user", PASSWORD).roles == ["portfolio", "market"]


def test_create_user_with_must_change_password(cli):
    assert (
        cli(
            "create-user",
            "admin",
            "--role",
            "admin",
            "--must-change-password",
            stdin=twice(PASSWORD),
        ).returncode
        == 0
    )
    listing = cli("list-users")
    assert "now (must change)" in listing.stdout


def test_passwords_are_never_taken_from_the_command_line(cli):
    done = cli("create-user", "ops", "--role", "portfolio", "--password", PASSWORD)
    assert done.returncode == 2
    assert "unrecognized arguments" in done.stderr


def test_errors_are_one_line_on_stderr_with_status_1(cli):
    done = cli("create-user", "ops", "--role", "root", stdin=twice(PASSWORD))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: unknown role 'root'")
    assert "Traceback" not in done.stderr


def test_missing_password_on_stdin_is_an_error(cli):
    done = cli("create-user", "ops", "--role", "portfolio", stdin="")
    assert done.returncode == 1
    assert done.stderr.startswith("error: expected a line on stdin")


def test_a_new_password_piped_in_must_be_repeated_on_the_second_line(cli):
    typo = cli("create-user", "ops", "--role", "portfolio", stdin=f"{PASSWORD}\n{PASSWORD}x\n")
    assert typo.returncode == 1
    assert typo.stderr == "error: the two entries differ; nothing was changed\n"
    once = cli("create-user", "ops", "--role", "portfolio", stdin=PASSWORD + "\n")
    assert once.returncode == 1
    assert once.stderr == "error: expected a line on stdin for: Password for ops (repeated)\n"
    listing = cli("list-users")
    assert "ops" not in listing.stdout


def test_rotate_password_refuses_a_mismatched_repeat(cli):
    seed(cli.url, "ops", "portfolio")
    new = "the new long passphrase"
    done = cli("rotate-password", "ops", stdin=f"{PASSWORD}\n{new}\n{new}.\n")
    assert done.returncode == 1
    assert done.stderr == "error: the two entries differ; nothing was changed\n"
    with identity_for(cli.url) as identity:
        assert identity.authenticate("ops", PASSWORD).username == "ops"


@pytest.mark.parametrize("control", ["\x00", "\x1b", "\t", "\x7f", "\x85"])
def test_a_password_with_a_control_character_is_refused(cli, control):
    password = f"long enough {control}passphrase"
    done = cli("create-user", "ops", "--role", "portfolio", stdin=twice(password))
    assert done.returncode == 1
    assert "control character" in done.stderr
    assert password not in done.stderr


def test_weak_password_is_refused(cli):
    done = cli("create-user", "ops", "--role", "portfolio", stdin="short\nshort\n")
    assert done.returncode == 1
    assert "at least 12 characters" in done.stderr


def test_unknown_command_is_a_usage_error(cli):
    assert cli("drop-everything").returncode == 2


def test_rotate_api_key_prints_a_generated_key_once(cli):
    seed(cli.url, "bot", "market")
    done = cli("rotate-api-key", "bot")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("rotated the API key of bot; key id ")
    key = lines[1].rsplit(" ", 1)[-1]
    with identity_for(cli.url) as identity:
        assert identity.verify_api_key(key).username == "bot"


def test_rotate_api_key_from_stdin_does_not_echo_the_key(cli):
    seed(cli.url, "bot", "market")
    key = "stdin-key-" + "s" * 40
    done = cli("rotate-api-key", "bot", "--from-stdin", stdin=key + "\n")
    assert done.returncode == 0, done.stderr
    assert key not in done.stdout + done.stderr
    with identity_for(cli.url) as identity:
        assert identity.verify_api_key(key).username == "bot"


def test_rotate_api_key_uses_the_environment_variable(cli):
    seed(cli.url, "bot", "market")
    key = "env-key-" + "e" * 40
    done = cli("rotate-api-key", "bot", extra_env={"PORTFOLIO_ROTATION_API_KEY": key})
    assert done.returncode == 0, done.stderr
    assert key not in done.stdout
    with identity_for(cli.url) as identity:
        assert identity.verify_api_key(key).username == "bot"


def test_rotate_password_reads_current_then_new(cli):
    seed(cli.url, "ops", "portfolio")
    new = "the new long passphrase"
    done = cli("rotate-password", "ops", stdin=f"{PASSWORD}\n{new}\n{new}\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "rotated the password of ops\n"
    again = "yet another passphrase"
    wrong = cli("rotate-password", "ops", stdin=f"{PASSWORD}\n{again}\n{again}\n")
    assert wrong.returncode == 1
    assert wrong.stderr == "error: invalid username or password\n"


def test_list_users_as_table_and_json_lines(cli):
    seed(cli.url, "amy", "trading")
    seed(cli.url, "zed", "admin")
    table = cli("list-users").stdout.splitlines()
    assert table[0].split() == [
        "USERNAME",
        "ROLES",
        "ACTIVE",
        "LAST",
        "LOGIN",
        "PASSWORD",
        "EXPIRES",
        "API",
        "KEY",
        "ID",
    ]
    assert [line.split()[0] for line in table[1:]] == ["amy", "zed"]
    records = [json.loads(line) for line in cli("list-users", "--json").stdout.splitlines()]
    assert [r["username"] for r in records] == ["amy", "zed"]
    assert records[1]["roles"] == ["admin"]
    assert all("last_login_at" in r and not any("hash" in k for k in r) for r in records)


def test_set_roles_and_deactivate_user(cli):
    seed(cli.url, "ops", "portfolio")
    assert cli("set-roles", "ops", "--role", "trading", "--role", "market").stdout == (
        "set roles of ops (roles: trading, market)\n"
    )
    assert cli("deactivate-user", "ops").stdout == "deactivated ops\n"
    missing = cli("deactivate-user", "ghost")
    assert missing.returncode == 1
    assert missing.stderr == "error: no user named 'ghost'\n"
    with identity_for(cli.url) as identity:
        user = identity.get_user("ops")
    assert user.roles == ["trading", "market"]
    assert not user.is_active


def test_unreachable_database_is_one_line(cli):
    done = cli(
        "list-users",
        extra_env={"PORTFOLIO_DATABASE_URL": "sqlite+aiosqlite:////nonexistent-dir/x.db"},
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot reach the SQLite database /nonexistent-dir/x.db")
    assert done.stderr.count("\n") == 1


class TestCreateFirstAdmin:
    def test_prints_a_password_to_change_on_a_new_database_and_nothing_after(self, cli):
        first = cli("create-first-admin")
        second = cli("create-first-admin")
        assert first.returncode == 0, first.stderr
        lines = first.stdout.splitlines()
        assert lines[0] == "new database: created user 'admin' with roles ['admin']"
        assert lines[1].startswith(f"  {ONE_TIME_PASSWORD_LABEL} ")
        assert lines[2].startswith("  log in and choose a new password")
        password = lines[1].split(ONE_TIME_PASSWORD_LABEL, 1)[1].split()[0]
        with identity_for(cli.url) as identity:
            admin = identity.get_user("admin")
        assert admin.roles == ["admin"]
        assert admin.must_change_password
        assert second.returncode == 0, second.stderr
        assert second.stdout == "the database already has 1 user(s); no admin user created\n"
        assert password not in second.stdout

    def test_says_where_to_log_in(self, cli):
        done = cli("create-first-admin", "--login-url", "http://127.0.0.1:8080/")
        assert done.returncode == 0, done.stderr
        assert "log in at http://127.0.0.1:8080/ and choose a new password" in done.stdout

    def test_creates_nothing_when_any_user_exists(self, cli):
        seed(cli.url, "ops", "portfolio")
        done = cli("create-first-admin")
        assert done.returncode == 0, done.stderr
        assert ONE_TIME_PASSWORD_LABEL not in done.stdout
        with identity_for(cli.url) as identity:
            assert [user.username for user in identity.list_users()] == ["ops"]

    def test_unreachable_database_is_one_line_with_status_1(self, cli):
        url = f"postgresql+asyncpg://nobody:sekrit@127.0.0.1:{free_port()}/x"
        done = cli(
            "create-first-admin",
            extra_env={"PORTFOLIO_DATABASE_URL": url, "PORTFOLIO_DATABASE_CONNECT_TIMEOUT": "2"},
        )
        assert done.returncode == 1
        assert done.stdout == ""
        assert done.stderr.startswith("error: cannot reach the PostgreSQL database")
        assert done.stderr.count("\n") == 1
        assert "sekrit" not in done.stderr


class TestOneTimePassword:
    def test_has_every_character_class_and_24_characters(self):
        password = one_time_password()
        assert len(password) == 24
        assert any(c.islower() for c in password)
        assert any(c.isupper() for c in password)
        assert any(c.isdigit() for c in password)
        assert any(c in "-_.!" for c in password)

    def test_is_different_every_time(self):
        assert len({one_time_password() for _ in range(20)}) == 20


def test_a_bad_setting_is_one_line(cli):
    done = cli("list-users", extra_env={"PORTFOLIO_PASSWORD_ROTATION_DAYS": "abc"})
    assert done.returncode == 1
    assert done.stderr.startswith("error: the portfolio service cannot start: ")
    assert "PORTFOLIO_PASSWORD_ROTATION_DAYS" in done.stderr
    assert done.stderr.count("\n") == 1


# audit


def test_audit_prints_one_json_object_per_event_oldest_first(cli):
    seed(cli.url, "ivy", "portfolio")
    with identity_for(cli.url) as identity:
        identity.authenticate("ivy", PASSWORD)
        identity.deactivate_user("ivy")
    done = cli("audit", "--since", "1h", "--json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(e["type"], e["subject"], e["outcome"]) for e in events] == [
        ("user.created", "ivy", "success"),
        ("login.succeeded", "ivy", "success"),
        ("user.deactivated", "ivy", "success"),
    ]
    assert set(events[0]) == {
        "id",
        "time",
        "type",
        "actor",
        "subject",
        "client_address",
        "request_id",
        "outcome",
        "detail",
    }
    assert PASSWORD not in done.stdout


def test_audit_filters_by_type_user_and_time(cli):
    seed(cli.url, "jack", "portfolio")
    seed(cli.url, "kate", "trading")
    only_kate = cli("audit", "--user", "KATE", "--json")
    assert [json.loads(line)["subject"] for line in only_kate.stdout.splitlines()] == ["kate"]
    future = cli("audit", "--since", "2999-01-01T00:00:00Z", "--type", "user.created")
    assert (future.returncode, future.stdout) == (0, "")
    table = cli("audit", "--type", "user.created")
    assert table.stdout.count("user.created") == 2


@pytest.mark.parametrize(
    ("args", "named"),
    [(("--since", "last tuesday"), "--since"), (("--type", "login.maybe"), "type must be one of")],
)
def test_audit_refuses_a_bad_filter_naming_it(cli, args, named):
    done = cli("audit", *args)
    assert done.returncode in (1, 2)
    assert named in done.stderr


# reactivate-user, delete-user, reset-password


def test_reset_reactivate_and_delete_from_the_shell(cli):
    seed(cli.url, "lena", "portfolio")
    seed(cli.url, "root", "admin")
    reset = cli("reset-password", "lena")
    assert reset.returncode == 0, reset.stderr
    [line] = [ln for ln in reset.stdout.splitlines() if ONE_TIME_PASSWORD_LABEL in ln]
    one_time = line.split(ONE_TIME_PASSWORD_LABEL)[1].split()[0]
    with identity_for(cli.url) as identity:
        with pytest.raises(PasswordExpiredError):
            identity.authenticate("lena", one_time)
        identity.deactivate_user("lena")
    assert cli("reactivate-user", "lena").stdout == "reactivated lena\n"
    deleted = cli("delete-user", "lena")
    assert deleted.stdout == "deleted lena; the name stays reserved\n"
    again = cli("reactivate-user", "lena")
    assert again.returncode == 1
    assert "deleted" in again.stderr
    last = cli("delete-user", "root")
    assert last.returncode == 1
    assert "last active admin" in last.stderr
