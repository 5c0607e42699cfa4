"""The AWS Secrets Manager store, through aioboto3, against a moto server on 127.0.0.1."""

import asyncio
import json
import os
from typing import Any

import boto3
import pytest
from pydantic import SecretStr

from devstack.ports import free_port
from shared.secrets import SecretRegistry, SecretsManager, SecretsSettings, SecretsUnavailableError
from tests.support.holding_proxy import HoldingProxy
from tests.support.moto_server import FAKE_AWS_CREDENTIALS, MotoServer

REGION = "eu-west-1"
LONG = "a" * 40


@pytest.fixture(scope="module")
def moto():
    with MotoServer() as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Fake credentials and no AWS configuration of this machine, for this test only."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name, value in FAKE_AWS_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


@pytest.fixture
def secret_name(request):
    return "lct/" + request.node.name.replace("[", "_").replace("]", "_")


def seed(moto: MotoServer, name: str, secret_string: str) -> Any:
    client = boto3.client(
        "secretsmanager",
        endpoint_url=moto.url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_secret(Name=name, SecretString=secret_string)
    return client


def current_version(client: Any, name: str) -> Any:
    # By stage: moto answers a plain read from the version it last put itself, not from
    # the one AWSCURRENT was moved to (AWS answers both from AWSCURRENT).
    return client.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")


def make(
    endpoint: str,
    name: str,
    *,
    environ: dict[str, str] | None = None,
    profile: str | None = None,
) -> SecretsManager:
    settings = SecretsSettings(
        secrets_provider="aws",
        aws_secret_name=name,
        aws_region=REGION,
        aws_profile=profile,
        aws_endpoint_url=endpoint,
        aws_timeout=2,
        secrets_cache_ttl_seconds=0,
    )
    return SecretsManager(settings=settings, registry=SecretRegistry.load(), environ=environ or {})


async def test_reads_the_json_object_and_it_beats_the_environment(moto, aws_env, secret_name):
    seed(
        moto,
        secret_name,
        json.dumps({"FLASK_SECRET_KEY": LONG, "IDENTITY_SERVICE_TOKEN": "t" * 32}),
    )
    environ = {"SESSION_SECRET_KEY": "e" * 40, "GATEWAY_ASSERTION_PUBLIC_KEY": "from-env"}
    async with make(moto.url, secret_name, environ=environ) as manager:
        assert manager.provider_name == "aws"
        session = await manager.resolve("SESSION_SECRET_KEY")
        public = await manager.resolve("GATEWAY_ASSERTION_PUBLIC_KEY")
    assert session is not None
    assert session.value.get_secret_value() == LONG
    assert session.source == f"aws:{secret_name} (alias FLASK_SECRET_KEY)"
    assert public is not None
    assert public.source == "environment"


async def test_write_back_puts_a_new_version_keeping_every_other_entry(moto, aws_env, secret_name):
    client = seed(moto, secret_name, json.dumps({"SESSION_SECRET_KEY": LONG, "COUNT": 3}))
    async with make(moto.url, secret_name) as manager:
        where = await manager.write_api_key("security-admin", SecretStr("k" * 64))
    current = current_version(client, secret_name)
    assert where == (
        f"aws:{secret_name} key PORTFOLIO_API_KEY__SECURITY_2DADMIN (version {current['VersionId']})"
    )
    assert json.loads(current["SecretString"]) == {
        "SESSION_SECRET_KEY": LONG,
        "COUNT": 3,
        "PORTFOLIO_API_KEY__SECURITY_2DADMIN": "k" * 64,
    }
    versions = client.list_secret_version_ids(SecretId=secret_name)["Versions"]
    assert len(versions) == 2


async def test_concurrent_write_backs_lose_no_key(moto, aws_env, secret_name):
    client = seed(moto, secret_name, json.dumps({"SESSION_SECRET_KEY": LONG}))
    managers = [make(moto.url, secret_name) for _ in range(8)]
    try:
        # Eight managers (as eight processes would) write at once: a write whose version
        # was not current any more when it moved AWSCURRENT reads again and merges.
        await asyncio.gather(
            *(
                manager.write_api_key(f"user{index}", str(index) * 40)
                for index, manager in enumerate(managers)
            )
        )
    finally:
        for manager in managers:
            await manager.aclose()
    current = current_version(client, secret_name)
    assert json.loads(current["SecretString"]) == {
        "SESSION_SECRET_KEY": LONG,
        **{f"PORTFOLIO_API_KEY__USER{index}": str(index) * 40 for index in range(8)},
    }


async def test_an_operator_write_between_read_and_write_is_kept(moto, aws_env, secret_name):
    client = seed(
        moto,
        secret_name,
        json.dumps({"SESSION_SECRET_KEY": LONG, "GATEWAY_JWT_PRIVATE_KEY": "old"}),
    )
    with HoldingProxy(moto.port) as proxy:
        # Our read of the secret is answered, but the answer is held back while the
        # operator puts a new signing key; then our write goes ahead with the stale read.
        hold = proxy.hold(b"secretsmanager.GetSecretValue")
        async with make(proxy.url, secret_name) as manager:
            write = asyncio.ensure_future(manager.write_api_key("alice", "k" * 40))
            assert await asyncio.to_thread(hold.answered.wait, 30)
            client.put_secret_value(
                SecretId=secret_name,
                SecretString=json.dumps(
                    {"SESSION_SECRET_KEY": LONG, "GATEWAY_JWT_PRIVATE_KEY": "new"}
                ),
            )
            hold.release()
            where = await write
    current = current_version(client, secret_name)
    assert json.loads(current["SecretString"]) == {
        "SESSION_SECRET_KEY": LONG,
        "GATEWAY_JWT_PRIVATE_KEY": "new",
        "PORTFOLIO_API_KEY__ALICE": "k" * 40,
    }
    assert (
        where == f"aws:{secret_name} key PORTFOLIO_API_KEY__ALICE (version {current['VersionId']})"
    )
    stages = {
        stage
        for version in client.list_secret_version_ids(SecretId=secret_name)["Versions"]
        for stage in version["VersionStages"]
    }
    assert stages == {"AWSCURRENT", "AWSPREVIOUS"}


async def test_write_back_creates_the_secret_when_absent(moto, aws_env, secret_name):
    async with make(moto.url, secret_name) as manager:
        await manager.write_api_key("alice", "k" * 40)
        assert (await manager.get("PORTFOLIO_API_KEY__ALICE")) == SecretStr("k" * 40)


async def test_missing_secret_is_a_clear_error(moto, aws_env, secret_name):
    async with make(moto.url, secret_name) as manager:
        with pytest.raises(SecretsUnavailableError) as caught:
            await manager.get("SESSION_SECRET_KEY")
    assert str(caught.value) == f"AWS secret {secret_name} does not exist in {REGION}"


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '"a string"'])
async def test_secret_that_is_not_a_json_object_is_a_clear_error(moto, aws_env, secret_name, text):
    seed(moto, secret_name, text)
    async with make(moto.url, secret_name) as manager:
        with pytest.raises(SecretsUnavailableError) as caught:
            await manager.get("SESSION_SECRET_KEY")
    assert str(caught.value) == f"AWS secret {secret_name} is not a JSON object of name → value"


async def test_credentials_come_from_aws_profile(moto, aws_env, tmp_path, secret_name):
    seed(moto, secret_name, json.dumps({"SESSION_SECRET_KEY": LONG}))
    for name in FAKE_AWS_CREDENTIALS:
        aws_env.delenv(name)
    (tmp_path / "aws-credentials").write_text(
        "[lct-test]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
    )
    async with make(moto.url, secret_name, profile="lct-test") as manager:
        assert (await manager.require("SESSION_SECRET_KEY")).get_secret_value() == LONG


async def test_no_credentials_is_a_clear_error(moto, aws_env, secret_name):
    for name in FAKE_AWS_CREDENTIALS:
        aws_env.delenv(name)
    async with make(moto.url, secret_name) as manager:
        with pytest.raises(SecretsUnavailableError) as caught:
            await manager.get("SESSION_SECRET_KEY")
    assert str(caught.value) == (
        f"AWS Secrets Manager ({REGION}, {moto.url}): no usable AWS credentials "
        "(set AWS_PROFILE or the access key pair)"
    )


async def test_unreachable_endpoint_is_a_clear_error(aws_env, secret_name):
    endpoint = f"http://127.0.0.1:{free_port()}"
    async with make(endpoint, secret_name) as manager:
        with pytest.raises(SecretsUnavailableError) as caught:
            await manager.get("SESSION_SECRET_KEY")
    assert str(caught.value) == f"cannot reach AWS Secrets Manager ({REGION}, {endpoint})"


def test_sync_twin_opens_and_closes_its_own_client(moto, aws_env, secret_name):
    seed(moto, secret_name, json.dumps({"SESSION_SECRET_KEY": LONG}))
    manager = make(moto.url, secret_name)
    assert manager.require_sync("SESSION_SECRET_KEY").get_secret_value() == LONG
    assert manager.write_api_key_sync("carol", "k" * 40) is not None
    assert manager.get_sync("PORTFOLIO_API_KEY__CAROL") == SecretStr("k" * 40)
