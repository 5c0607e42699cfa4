"""The signing-key rotation ceremony under docker compose: `vault_init.py --rotate-key`.

Only `vault-init` holds Vault's root token (in init.json on the vault-unseal volume), so the
ceremony runs as that job, `docker compose --env-file compose.env run --rm vault-init python
docker/vault_init.py --rotate-key signing`. Here the job runs as compose runs it, against a
real OpenBao with the compose configuration, and the gateway's own AppRole then reads the
rotated keys.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from devstack import REPO_ROOT
from services.api_gateway.rotation import not_before_of
from services.frontend.rotation import fingerprint
from shared.keys import key_id, load_private_key, public_key_text
from tests.deploy.support import load_script
from tests.deploy.test_vault_init import JOB, job_env, login, read, run_job
from tests.support.openbao_persistent import PersistentOpenBao

vault_init = load_script("docker/vault_init.py")
COMMAND = re.compile(
    r"docker compose --env-file compose\.env run --rm (vault-init) "
    r"(python docker/vault_init\.py --rotate-key signing --rotate-key assertion)`"
)


@pytest.fixture
def bao(tmp_path: Path) -> Iterator[PersistentOpenBao]:
    with PersistentOpenBao(tmp_path / "bao") as server:
        yield server


@pytest.fixture
def init_file(tmp_path: Path) -> Path:
    return tmp_path / "vault-unseal" / "init.json"


def test_an_unknown_key_to_rotate_is_refused_by_name():
    result = run_job({"PATH": "/usr/bin:/bin"}, JOB, "--rotate-key", "database")
    assert result.returncode == 2
    assert "invalid choice: 'database'" in result.stderr


def test_rotating_both_keys_with_the_root_token_the_gateway_reads_them(bao, init_file):
    env = job_env(bao, init_file)
    assert run_job(env, JOB).returncode == 0
    gateway = login(bao, init_file, "gateway")
    before, _ = read(gateway, "gateway")
    shared_before, _ = read(gateway, "shared")

    started = int(time.time())
    result = run_job(env, JOB, "--rotate-key", "signing", "--rotate-key", "assertion")
    assert result.returncode == 0, result.stderr

    after, _ = read(gateway, "gateway")
    shared, _ = read(gateway, "shared")
    old_jwt, new_jwt = before["GATEWAY_JWT_PRIVATE_KEY"], after["GATEWAY_JWT_PRIVATE_KEY"]
    assert new_jwt != old_jwt
    assert after["GATEWAY_JWT_PREVIOUS_PRIVATE_KEY"] == old_jwt
    assert shared["GATEWAY_JWT_PREVIOUS_PUBLIC_KEY"] == public_key_text(load_private_key(old_jwt))
    new_kid = key_id(load_private_key(new_jwt))
    # Gateways sign with it once each has read it: 300 s (the services' interval) + 2 s.
    signs_from = not_before_of(SecretStr(after["GATEWAY_JWT_PRIVATE_KEY_NOT_BEFORE"]), new_kid)
    assert signs_from is not None
    assert started + 302 <= signs_from <= time.time() + 303
    old_assertion = before["GATEWAY_ASSERTION_PRIVATE_KEY"]
    new_assertion = after["GATEWAY_ASSERTION_PRIVATE_KEY"]
    assert new_assertion != old_assertion
    assert after["GATEWAY_ASSERTION_PREVIOUS_PRIVATE_KEY"] == old_assertion
    assert shared["GATEWAY_ASSERTION_PUBLIC_KEY"] == public_key_text(
        load_private_key(new_assertion)
    )
    assert (
        shared["GATEWAY_ASSERTION_PREVIOUS_PUBLIC_KEY"]
        == shared_before["GATEWAY_ASSERTION_PUBLIC_KEY"]
    )
    # The job says what it did by key id, never by value.
    assert f"rotate-signing-key: wrote key {new_kid}" in result.stdout
    for value in (old_jwt, new_jwt, old_assertion, new_assertion):
        assert value not in result.stdout + result.stderr
    # The rotation changed nothing else: the frontend's secret stayed.
    frontend = login(bao, init_file, "frontend")
    assert read(frontend, "frontend")[1] == 1


def test_the_readmes_ceremony_is_the_jobs_option_on_the_container_holding_the_root_token():
    found = COMMAND.search((REPO_ROOT / "README.md").read_text())
    assert found is not None
    service, command = found[1], found[2].split()
    assert vault_init.arguments(command[2:]).rotate_key == ["signing", "assertion"]
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    job = compose["services"][service]
    # `run` replaces the job's command with the README's: the same script, more options.
    assert job["command"] == command[:2]
    init_dir = str(Path(job["environment"]["VAULT_INIT_FILE"]).parent)
    assert f"vault-unseal:{init_dir}" in job["volumes"]
    # No other service mounts the volume with the root token.
    holders = [
        name
        for name, spec in compose["services"].items()
        if any(str(volume).startswith("vault-unseal:") for volume in spec.get("volumes", []))
    ]
    assert holders == [service]


def test_rotating_the_session_secret_the_frontend_reads_both(bao, init_file):
    env = job_env(bao, init_file)
    assert run_job(env, JOB).returncode == 0
    frontend = login(bao, init_file, "frontend")
    before, _ = read(frontend, "frontend")
    result = run_job(env, JOB, "--rotate-key", "session")
    assert result.returncode == 0, result.stderr
    after, _ = read(frontend, "frontend")
    old, new = before["SESSION_SECRET_KEY"], after["SESSION_SECRET_KEY"]
    assert new != old
    assert after["SESSION_PREVIOUS_SECRET_KEY"] == old
    assert after["SESSION_SECRET_KEY_NOT_BEFORE"].split()[1] == fingerprint(SecretStr(new))
    assert old not in result.stdout + result.stderr
    assert new not in result.stdout + result.stderr
