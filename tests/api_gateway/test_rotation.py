"""Key rotation inside one gateway: a new key verifies at once and signs from its activation
time on; the rotation ceremony writes the keys where the services read them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import boto3
import httpx
import jwt
import pytest
from pydantic import SecretStr

from devstack import REPO_ROOT
from services.api_gateway.assertions import AssertionCache
from services.api_gateway.config import GatewaySecrets, Settings
from services.api_gateway.errors import InvalidToken
from services.api_gateway.principal import AuthMethod, Principal
from services.api_gateway.rotation import (
    LiveKeys,
    not_before_of,
    rotate_assertion_key,
    rotate_signing_key,
    startup_key,
)
from services.api_gateway.runtime import _keys
from services.api_gateway.tokens import TokenService
from shared.assertion import AssertionSigner, AssertionVerifier
from shared.keys import generate_private_key, key_id, load_private_key, public_key_text
from shared.roles import Service
from shared.secrets import MissingSecretError, SecretsManager, SecretsSettings
from shared.secrets.envfile import read_env_file
from tests.support.moto_server import FAKE_AWS_CREDENTIALS, MotoServer

# In the past: PyJWT checks `nbf` against the real clock; the tokens live 900 s.
NOW = time.time() - 100


def tokens(private_key: str, ttl: int = 900) -> TokenService:
    return TokenService(private_key=private_key, issuer="gw", audience="api", ttl_seconds=ttl)


def kid(private_key: str) -> str:
    return key_id(load_private_key(private_key))


def signed_kid(token: str) -> str:
    value: str = jwt.get_unverified_header(token)["kid"]
    return value


class TestTokenServiceRotation:
    def test_a_rotated_key_verifies_at_once_but_signs_only_from_its_activation(self):
        old, new = generate_private_key(), generate_private_key()
        service = tokens(old)
        service.rotate(new, activate_at=NOW + 10)
        before = service.issue(username="ann", roles=["trading"], now=NOW + 9)
        assert signed_kid(before.token) == kid(old)
        # A token another gateway already signed with the new key verifies here.
        other = tokens(new)
        foreign = other.issue(username="bob", roles=["trading"], now=NOW)
        assert service.verify(foreign.token, now=NOW + 1).username == "bob"
        after = service.issue(username="ann", roles=["trading"], now=NOW + 10)
        assert signed_kid(after.token) == kid(new)
        assert service.kid == kid(new)
        # Tokens of the old key keep verifying until they expire.
        assert service.verify(before.token, now=NOW + 11).username == "ann"

    def test_jwks_lists_the_current_the_pending_and_the_previous_key(self):
        old, new, previous = (generate_private_key() for _ in range(3))
        service = tokens(old)
        service.set_previous_public_keys([public_key_text(load_private_key(previous))])
        service.rotate(new, activate_at=time.time() + 3600)
        kids = [key["kid"] for key in service.jwks()["keys"]]
        assert kids == [kid(old), kid(new), kid(previous)]

    def test_the_old_key_stays_in_the_jwks_until_its_last_token_expired(self):
        old, new = generate_private_key(), generate_private_key()
        service = tokens(old, ttl=1)
        service.rotate(new, activate_at=0)
        service.issue(username="ann", roles=[], now=time.time())  # the new key takes over
        assert [key["kid"] for key in service.jwks()["keys"]] == [kid(new), kid(old)]

    def test_the_old_key_leaves_the_jwks_once_its_last_token_expired(self):
        old, new = generate_private_key(), generate_private_key()
        service = tokens(old, ttl=1)
        service.rotate(new, activate_at=0)
        # Took over 1000 s ago: 1 s of token lifetime and 60 s of leeway are long gone.
        service.issue(username="ann", roles=[], now=time.time() - 1000)
        assert [key["kid"] for key in service.jwks()["keys"]] == [kid(new)]

    def test_the_old_key_leaves_the_jwks_61_seconds_after_its_tokens_could_be_signed(self):
        old, new = generate_private_key(), generate_private_key()
        service = tokens(old, ttl=1)
        service.rotate(new, activate_at=0)
        # Took over 61.5 s ago: a token signed just before lived 1 s, and others allow 60 s
        # of leeway; half a second later the old key is gone.
        service.issue(username="ann", roles=[], now=time.time() - 61.5)
        assert [key["kid"] for key in service.jwks()["keys"]] == [kid(new)]

    def test_a_second_rotation_before_the_first_activates_replaces_it(self):
        old, new, third = (generate_private_key() for _ in range(3))
        service = tokens(old)
        service.rotate(new, activate_at=time.time() + 3600)
        service.rotate(third, activate_at=time.time() + 7200)
        assert [key["kid"] for key in service.jwks()["keys"]] == [kid(old), kid(third)]
        # The same rotation seen again keeps its first activation time.
        service.rotate(third, activate_at=0)
        assert signed_kid(service.issue(username="ann", roles=[]).token) == kid(old)

    def test_rotating_back_to_the_current_key_cancels_a_pending_one(self):
        old, new = generate_private_key(), generate_private_key()
        service = tokens(old)
        service.rotate(new, activate_at=NOW)
        service.rotate(old, activate_at=NOW)
        assert signed_kid(service.issue(username="ann", roles=[], now=NOW + 1).token) == kid(old)
        foreign = tokens(new).issue(username="bob", roles=[], now=NOW)
        with pytest.raises(InvalidToken, match="key this gateway does not know"):
            service.verify(foreign.token, now=NOW + 1)

    def test_a_dropped_previous_key_is_refused(self):
        current, previous = generate_private_key(), generate_private_key()
        service = tokens(current)
        service.set_previous_public_keys([public_key_text(load_private_key(previous))])
        old_token = tokens(previous).issue(username="ann", roles=[], now=NOW).token
        assert service.verify(old_token, now=NOW + 1).username == "ann"
        service.forget(old_token)
        service.set_previous_public_keys([])
        with pytest.raises(InvalidToken, match="key this gateway does not know"):
            service.verify(old_token, now=NOW + 1)


def caller() -> Principal:
    return Principal(username="ann", roles=("trading",), auth_method=AuthMethod.PASSWORD)


def test_assertions_switch_to_a_rotated_key_at_its_activation_time():
    old, new = generate_private_key(), generate_private_key()
    cache = AssertionCache(AssertionSigner(old))
    first = cache.get(caller(), Service.TRADING)
    cache.rotate(AssertionSigner(new), activate_at=time.time() + 3600)
    assert cache.get(caller(), Service.TRADING) == first
    assert cache.kid == kid(old)
    cache = AssertionCache(AssertionSigner(old))
    cache.get(caller(), Service.TRADING)
    cache.rotate(AssertionSigner(new), activate_at=time.time() - 1)
    # The cached assertion of the old key is not reused once the new key is active.
    rotated = cache.get(caller(), Service.TRADING)
    assert signed_kid(rotated.decode()) == kid(new)
    verifier = AssertionVerifier([public_key_text(load_private_key(new))], audience="trading")
    assert verifier.verify(rotated.decode()).username == "ann"


class TestLiveKeys:
    def setup_method(self) -> None:
        self.jwt_key, self.assertion_key = generate_private_key(), generate_private_key()
        self.tokens = tokens(self.jwt_key)
        self.assertions = AssertionCache(AssertionSigner(self.assertion_key))
        self.client = httpx.AsyncClient(headers={"X-Service-Token": "old-token"})
        self.live = LiveKeys(
            tokens=self.tokens,
            assertions=self.assertions,
            identity_http=self.client,
            assertion_ttl_seconds=60,
            activation_delay=0.0,
        )

    def values(self, **overrides: str | None) -> dict[str, SecretStr | None]:
        plain: dict[str, str | None] = {
            "GATEWAY_JWT_PRIVATE_KEY": self.jwt_key,
            "GATEWAY_JWT_PREVIOUS_PUBLIC_KEY": None,
            "GATEWAY_ASSERTION_PRIVATE_KEY": self.assertion_key,
            "IDENTITY_SERVICE_TOKEN": "old-token",
            **overrides,
        }
        return {name: SecretStr(v) if v is not None else None for name, v in plain.items()}

    async def test_new_keys_and_service_token_are_taken_up(self):
        jwt_key, assertion_key = generate_private_key(), generate_private_key()
        await self.live.apply(
            self.values(
                GATEWAY_JWT_PRIVATE_KEY=jwt_key,
                GATEWAY_JWT_PREVIOUS_PUBLIC_KEY=public_key_text(load_private_key(self.jwt_key)),
                GATEWAY_ASSERTION_PRIVATE_KEY=assertion_key,
                IDENTITY_SERVICE_TOKEN="new-token",
            )
        )
        assert signed_kid(self.tokens.issue(username="ann", roles=[]).token) == kid(jwt_key)
        assert self.assertions.kid == kid(assertion_key)
        assert self.client.headers["X-Service-Token"] == "new-token"

    async def test_a_bad_key_changes_nothing_and_names_the_secret_not_the_value(self):
        with pytest.raises(
            ValueError, match="GATEWAY_ASSERTION_PRIVATE_KEY is not an Ed25519"
        ) as e:
            await self.live.apply(
                self.values(
                    GATEWAY_JWT_PRIVATE_KEY=generate_private_key(),
                    GATEWAY_ASSERTION_PRIVATE_KEY="not-a-key",
                    IDENTITY_SERVICE_TOKEN="new-token",
                )
            )
        assert "not-a-key" not in str(e.value)
        assert self.tokens.kid == kid(self.jwt_key)
        assert len(self.tokens.jwks()["keys"]) == 1
        assert self.client.headers["X-Service-Token"] == "old-token"

    async def test_a_key_signs_from_the_not_before_written_with_it(self):
        self.live.activation_delay = 3600.0  # would be the wait without a not-before
        jwt_key, assertion_key = generate_private_key(), generate_private_key()
        await self.live.apply(
            self.values(
                GATEWAY_JWT_PRIVATE_KEY=jwt_key,
                GATEWAY_JWT_PRIVATE_KEY_NOT_BEFORE=f"{int(time.time()) - 1} {kid(jwt_key)}",
                GATEWAY_ASSERTION_PRIVATE_KEY=assertion_key,
                GATEWAY_ASSERTION_PRIVATE_KEY_NOT_BEFORE=f"{int(time.time()) + 3600} "
                + kid(assertion_key),
            )
        )
        assert signed_kid(self.tokens.issue(username="ann", roles=[]).token) == kid(jwt_key)
        assert self.assertions.kid == kid(self.assertion_key)

    async def test_a_not_before_of_another_key_means_one_interval_from_the_read(self):
        self.live.activation_delay = 3600.0
        jwt_key, earlier = generate_private_key(), generate_private_key()
        await self.live.apply(
            self.values(
                GATEWAY_JWT_PRIVATE_KEY=jwt_key,
                GATEWAY_JWT_PRIVATE_KEY_NOT_BEFORE=f"{int(time.time()) - 1} {kid(earlier)}",
            )
        )
        assert signed_kid(self.tokens.issue(username="ann", roles=[]).token) == kid(self.jwt_key)

    async def test_a_vanished_signing_key_is_refused(self):
        with pytest.raises(ValueError, match="GATEWAY_JWT_PRIVATE_KEY is no longer set"):
            await self.live.apply(self.values(GATEWAY_JWT_PRIVATE_KEY=None))


class TestNotBefore:
    def test_a_not_before_counts_for_the_key_it_names_only(self):
        key = generate_private_key()
        assert not_before_of(SecretStr(f"1764720000 {kid(key)}"), kid(key)) == 1764720000.0
        assert not_before_of(SecretStr(f"1764720000 {kid(key)}"), "another-kid") is None
        assert not_before_of(SecretStr(f"soon {kid(key)}"), kid(key)) is None
        assert not_before_of(None, kid(key)) is None

    def test_a_gateway_starting_before_the_not_before_signs_with_the_previous_key(self):
        current, previous = generate_private_key(), generate_private_key()
        at = f"{int(NOW) + 10} {kid(current)}"
        chosen = startup_key(SecretStr(current), SecretStr(previous), SecretStr(at), now=NOW)
        assert chosen == (previous, float(int(NOW) + 10))
        # From the not-before on, or with no previous key to sign with: the current key.
        assert startup_key(
            SecretStr(current), SecretStr(previous), SecretStr(at), now=NOW + 10
        ) == (current, None)
        assert startup_key(SecretStr(current), None, SecretStr(at), now=NOW) == (current, None)

    def test_a_gateway_started_after_a_rotation_waits_for_the_not_before(self):
        jwt_new, jwt_old = generate_private_key(), generate_private_key()
        assertion_new, assertion_old = generate_private_key(), generate_private_key()
        soon = int(time.time()) + 3600
        secrets = GatewaySecrets(
            jwt_private_key=SecretStr(jwt_new),
            assertion_private_key=SecretStr(assertion_new),
            identity_service_token=SecretStr("t" * 32),
            jwt_previous_public_key=SecretStr(public_key_text(load_private_key(jwt_old))),
            jwt_previous_private_key=SecretStr(jwt_old),
            jwt_not_before=SecretStr(f"{soon} {kid(jwt_new)}"),
            assertion_previous_private_key=SecretStr(assertion_old),
            assertion_not_before=SecretStr(f"{soon} {kid(assertion_new)}"),
        )
        service, assertions = _keys(Settings(), secrets)
        assert signed_kid(service.issue(username="ann", roles=[]).token) == kid(jwt_old)
        assert [key["kid"] for key in service.jwks()["keys"]] == [kid(jwt_old), kid(jwt_new)]
        assert assertions.kid == kid(assertion_old)
        signed = assertions.get(caller(), Service.TRADING).decode()
        assert signed_kid(signed) == kid(assertion_old)
        # Tokens of the new key, signed elsewhere after the not-before, verify here now.
        elsewhere = TokenService(
            private_key=jwt_new, issuer=service.issuer, audience=service.audience, ttl_seconds=900
        )
        foreign = elsewhere.issue(username="bob", roles=[], now=NOW)
        assert service.verify(foreign.token).username == "bob"


class TestCeremonyOnTheEnvFile:
    def manager(self, tmp_path: Path, **values: str) -> tuple[SecretsManager, Path]:
        env_file = tmp_path / ".env"
        env_file.write_text("# kept\n" + "".join(f"{k}={v}\n" for k, v in values.items()))
        env_file.chmod(0o600)
        settings = SecretsSettings(
            secrets_provider="env", secrets_env_file=env_file, secrets_cache_ttl_seconds=1
        )
        return SecretsManager(settings=settings, environ={}), env_file

    async def test_rotate_signing_key_moves_the_current_public_key_to_previous(self, tmp_path):
        current = generate_private_key()
        manager, env_file = self.manager(tmp_path, GATEWAY_JWT_PRIVATE_KEY=current, OTHER="x")
        started = time.time()
        rotation = await rotate_signing_key(manager, env_file=env_file)
        written = read_env_file(env_file)
        assert written["GATEWAY_JWT_PREVIOUS_PUBLIC_KEY"] == public_key_text(
            load_private_key(current)
        )
        assert written["GATEWAY_JWT_PRIVATE_KEY"] != current
        assert rotation.new_kid == kid(written["GATEWAY_JWT_PRIVATE_KEY"])
        assert rotation.previous_kid == kid(current)
        # The key before signs until every gateway knows the new one: 1 s (the TTL) + 2 s.
        assert written["GATEWAY_JWT_PREVIOUS_PRIVATE_KEY"] == current
        at, named = written["GATEWAY_JWT_PRIVATE_KEY_NOT_BEFORE"].split(" ")
        assert named == rotation.new_kid
        assert int(at) == rotation.not_before
        assert started + 3 <= rotation.not_before <= time.time() + 4
        assert written["OTHER"] == "x"
        assert env_file.read_text().startswith("# kept\n")
        assert env_file.stat().st_mode & 0o777 == 0o600

    async def test_rotate_assertion_key_writes_both_halves_and_the_previous_public(self, tmp_path):
        current = generate_private_key()
        current_public = public_key_text(load_private_key(current))
        manager, env_file = self.manager(
            tmp_path,
            GATEWAY_ASSERTION_PRIVATE_KEY=current,
            GATEWAY_ASSERTION_PUBLIC_KEY=current_public,
        )
        rotation = await rotate_assertion_key(manager, env_file=env_file)
        written = read_env_file(env_file)
        assert written["GATEWAY_ASSERTION_PREVIOUS_PRIVATE_KEY"] == current
        assert written["GATEWAY_ASSERTION_PRIVATE_KEY_NOT_BEFORE"] == (
            f"{rotation.not_before} {rotation.new_kid}"
        )
        assert written["GATEWAY_ASSERTION_PREVIOUS_PUBLIC_KEY"] == current_public
        new_private = written["GATEWAY_ASSERTION_PRIVATE_KEY"]
        assert new_private != current
        assert written["GATEWAY_ASSERTION_PUBLIC_KEY"] == public_key_text(
            load_private_key(new_private)
        )

    async def test_nothing_to_rotate_is_a_clear_error(self, tmp_path):
        manager, env_file = self.manager(tmp_path, OTHER="x")
        with pytest.raises(MissingSecretError, match="missing secret GATEWAY_JWT_PRIVATE_KEY"):
            await rotate_signing_key(manager, env_file=env_file)
        assert read_env_file(env_file) == {"OTHER": "x"}


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SECRETS_", "GATEWAY_"))}
    return subprocess.run(
        [sys.executable, "-m", "services.api_gateway", *args],
        cwd=REPO_ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestCommandLine:
    def test_rotate_signing_key_on_an_env_file_prints_kids_never_keys(self, tmp_path):
        current = generate_private_key()
        env_file = tmp_path / "stack.env"
        env_file.write_text(f"GATEWAY_JWT_PRIVATE_KEY={current}\n")
        result = run_cli("rotate-signing-key", "--env-file", str(env_file))
        assert result.returncode == 0, result.stderr
        written = read_env_file(env_file)
        new = written["GATEWAY_JWT_PRIVATE_KEY"]
        assert f"wrote key {kid(new)} to {env_file}" in result.stdout
        assert f"previous key {kid(current)}" in result.stdout
        for value in (current, new, written["GATEWAY_JWT_PREVIOUS_PUBLIC_KEY"]):
            assert value not in result.stdout + result.stderr

    def test_a_missing_env_file_is_named_with_exit_status_1(self, tmp_path):
        result = run_cli("rotate-assertion-key", "--env-file", str(tmp_path / "none.env"))
        assert result.returncode == 1
        assert result.stderr.startswith("error: cannot read ")
        assert "Traceback" not in result.stderr

    def test_a_bad_provider_is_a_configuration_error(self):
        result = run_cli("rotate-signing-key", SECRETS_PROVIDER="nowhere")
        assert result.returncode == 2
        assert "SECRETS_PROVIDER=nowhere is not supported" in result.stderr


class TestAssertionKeyCeremonyOnAwsPerServiceSecrets:
    """The README's ceremony for AWS with one secret per service, against a moto server:
    the command writes the gateway's secret alone, and with the long interval it is given
    there is time to copy the public halves to the portfolio's secret before the switch."""

    REGION = "eu-west-1"
    GATEWAY, PORTFOLIO = "legacycointrader/gateway", "legacycointrader/portfolio"

    def test_the_public_halves_copied_to_the_portfolio_verify_before_the_switch(
        self, tmp_path, monkeypatch
    ):
        # Fake credentials and no AWS configuration of this machine, here and in the command.
        aws_env = {
            "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            **FAKE_AWS_CREDENTIALS,
        }
        for name in [name for name in os.environ if name.startswith("AWS_")]:
            monkeypatch.delenv(name)
        for name, value in aws_env.items():
            monkeypatch.setenv(name, value)
        aws_section = (
            (REPO_ROOT / "README.md")
            .read_text()
            .split("### AWS Secrets Manager: one secret per service", 1)[1]
            .split("\n### ", 1)[0]
        )
        shown = re.search(
            r"SECRETS_PROVIDER=aws AWS_SECRET_NAME=(\S+) SECRETS_CACHE_TTL_SECONDS=(\d+) \\\n"
            r"\s+python -m services\.api_gateway (rotate-assertion-key)",
            aws_section,
        )
        assert shown is not None
        assert shown[1] == self.GATEWAY
        interval = shown[2]
        current = generate_private_key()
        current_public = public_key_text(load_private_key(current))
        with MotoServer() as moto:
            client = boto3.client("secretsmanager", endpoint_url=moto.url, region_name=self.REGION)
            client.create_secret(
                Name=self.GATEWAY,
                SecretString=json.dumps(
                    {
                        "GATEWAY_JWT_PRIVATE_KEY": generate_private_key(),
                        "GATEWAY_ASSERTION_PRIVATE_KEY": current,
                    }
                ),
            )
            portfolio_before = {"GATEWAY_ASSERTION_PUBLIC_KEY": current_public}
            client.create_secret(Name=self.PORTFOLIO, SecretString=json.dumps(portfolio_before))

            def stored(name: str) -> dict[str, str]:
                answer = client.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")
                document: dict[str, str] = json.loads(answer["SecretString"])
                return document

            started = time.time()
            result = run_cli(
                shown[3],
                SECRETS_PROVIDER="aws",
                AWS_SECRET_NAME=shown[1],
                SECRETS_CACHE_TTL_SECONDS=interval,
                AWS_REGION=self.REGION,
                AWS_ENDPOINT_URL=moto.url,
                **aws_env,
            )
            assert result.returncode == 0, result.stderr
            gateway = stored(self.GATEWAY)
            new = gateway["GATEWAY_ASSERTION_PRIVATE_KEY"]
            assert new != current
            not_before = not_before_of(
                SecretStr(gateway["GATEWAY_ASSERTION_PRIVATE_KEY_NOT_BEFORE"]), kid(new)
            )
            # The switch is the README's interval + 2 s away: time for the copy, and for
            # every service on its own (shorter) interval to read it before then.
            assert not_before is not None
            assert not_before >= started + int(interval) + 2
            # The command wrote one secret: the portfolio's still has the old key alone.
            assert stored(self.PORTFOLIO) == portfolio_before

            # The copy the README asks for: the whole object, with both public halves.
            client.put_secret_value(
                SecretId=self.PORTFOLIO,
                SecretString=json.dumps(
                    {
                        **stored(self.PORTFOLIO),
                        "GATEWAY_ASSERTION_PUBLIC_KEY": gateway["GATEWAY_ASSERTION_PUBLIC_KEY"],
                        "GATEWAY_ASSERTION_PREVIOUS_PUBLIC_KEY": gateway[
                            "GATEWAY_ASSERTION_PREVIOUS_PUBLIC_KEY"
                        ],
                    }
                ),
            )
            settings = SecretsSettings(
                secrets_provider="aws",
                aws_secret_name=self.PORTFOLIO,
                aws_region=self.REGION,
                aws_endpoint_url=moto.url,
                secrets_cache_ttl_seconds=0,
            )
            with_keys = SecretsManager(settings=settings, environ={})
            keys = [
                value.get_secret_value()
                for value in (
                    with_keys.get_sync(name)
                    for name in (
                        "GATEWAY_ASSERTION_PUBLIC_KEY",
                        "GATEWAY_ASSERTION_PREVIOUS_PUBLIC_KEY",
                    )
                )
                if value is not None
            ]
        verifier = AssertionVerifier(keys, audience="portfolio")
        for private_key in (current, new):
            signed = AssertionCache(AssertionSigner(private_key)).get(caller(), Service.PORTFOLIO)
            assert verifier.verify(signed.decode()).username == "ann"
