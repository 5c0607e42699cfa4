"""SecretWatcher: re-reads the store (a real OpenBao) or the `.env` file and reports changes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from shared.secrets import SecretsManager, SecretsSettings
from shared.secrets.watch import SecretValues, SecretWatcher
from tests.support.openbao_dev import OpenBaoDev

TOKEN_A = "a" * 40
TOKEN_B = "b" * 40
NAMES = ("IDENTITY_SERVICE_TOKEN", "GATEWAY_JWT_PREVIOUS_PUBLIC_KEY")


class Recorder:
    def __init__(self, refuse: bool = False) -> None:
        self.calls: list[dict[str, str | None]] = []
        self.refuse = refuse

    async def __call__(self, values: SecretValues) -> None:
        if self.refuse:
            raise ValueError("IDENTITY_SERVICE_TOKEN refused by the test")
        self.calls.append(
            {k: v.get_secret_value() if v is not None else None for k, v in values.items()}
        )


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoDev]:
    with OpenBaoDev(log_path=tmp_path_factory.mktemp("bao") / "bao.log") as server:
        yield server


def vault_manager(bao: OpenBaoDev, path: str) -> SecretsManager:
    env = bao.env(path)
    settings = SecretsSettings(
        secrets_provider="vault",
        vault_addr=env["VAULT_ADDR"],
        vault_token=SecretStr(env["VAULT_TOKEN"]),
        vault_secret_path=env["VAULT_SECRET_PATH"],
        vault_timeout=2,
        secrets_cache_ttl_seconds=300,
    )
    return SecretsManager(settings=settings, environ={})


async def test_a_value_rotated_in_openbao_is_reported_past_the_cache(bao):
    bao.write("watch-rotate", {"IDENTITY_SERVICE_TOKEN": TOKEN_A})
    recorder = Recorder()
    async with vault_manager(bao, "watch-rotate") as manager:
        watcher = SecretWatcher(manager, NAMES, recorder)
        assert (await watcher.prime())["IDENTITY_SERVICE_TOKEN"] == SecretStr(TOKEN_A)
        assert await watcher.poll() is False
        bao.write("watch-rotate", {"IDENTITY_SERVICE_TOKEN": TOKEN_B})
        # The manager's cache lives 300 s; the watcher reads past it.
        assert await watcher.poll() is True
        assert recorder.calls == [
            {"IDENTITY_SERVICE_TOKEN": TOKEN_B, "GATEWAY_JWT_PREVIOUS_PUBLIC_KEY": None}
        ]
        assert (await manager.get("IDENTITY_SERVICE_TOKEN")) == SecretStr(TOKEN_B)


async def test_the_background_task_reports_within_the_interval(bao):
    bao.write("watch-interval", {"IDENTITY_SERVICE_TOKEN": TOKEN_A})
    recorder = Recorder()
    async with vault_manager(bao, "watch-interval") as manager:
        watcher = SecretWatcher(manager, NAMES, recorder, interval=0.5)
        await watcher.prime()
        watcher.start()
        try:
            bao.write("watch-interval", {"IDENTITY_SERVICE_TOKEN": TOKEN_B})
            for _ in range(40):
                if recorder.calls:
                    break
                await asyncio.sleep(0.1)
        finally:
            await watcher.stop()
    assert [call["IDENTITY_SERVICE_TOKEN"] for call in recorder.calls] == [TOKEN_B]


async def test_a_store_outage_keeps_the_values_in_use(tmp_path, caplog):
    recorder = Recorder()
    with OpenBaoDev(log_path=tmp_path / "bao.log") as server:
        server.write("watch-down", {"IDENTITY_SERVICE_TOKEN": TOKEN_A})
        manager = vault_manager(server, "watch-down")
        watcher = SecretWatcher(manager, NAMES, recorder)
        await watcher.prime()
    with caplog.at_level(logging.WARNING, logger="shared.secrets"):
        assert await watcher.poll() is False
    await manager.aclose()
    assert recorder.calls == []
    assert "cannot reach Vault" in caplog.text
    assert TOKEN_A not in caplog.text


def env_manager(env_file: Path) -> SecretsManager:
    settings = SecretsSettings(secrets_provider="env", secrets_env_file=env_file)
    return SecretsManager(settings=settings, environ={"IDENTITY_SERVICE_TOKEN": TOKEN_A})


async def test_the_env_file_is_re_read_and_aliases_count(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(f"IDENTITY_SERVICE_TOKEN={TOKEN_A}\n")
    recorder = Recorder()
    watcher = SecretWatcher(env_manager(env_file), NAMES, recorder)
    await watcher.prime()
    env_file.write_text(f"PORTFOLIO_INTERNAL_TOKEN={TOKEN_B}\n")
    assert await watcher.poll() is True
    assert recorder.calls[-1]["IDENTITY_SERVICE_TOKEN"] == TOKEN_B


async def test_a_name_missing_from_the_env_file_falls_back_to_the_environment(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("# nothing here\n")
    watcher = SecretWatcher(env_manager(env_file), NAMES, Recorder())
    values = await watcher.read()
    assert values["IDENTITY_SERVICE_TOKEN"] == SecretStr(TOKEN_A)
    assert values["GATEWAY_JWT_PREVIOUS_PUBLIC_KEY"] is None


async def test_a_refused_value_is_logged_without_it_and_offered_again(tmp_path, caplog):
    env_file = tmp_path / ".env"
    env_file.write_text(f"IDENTITY_SERVICE_TOKEN={TOKEN_A}\n")
    recorder = Recorder(refuse=True)
    watcher = SecretWatcher(env_manager(env_file), NAMES, recorder)
    await watcher.prime()
    env_file.write_text(f"IDENTITY_SERVICE_TOKEN={TOKEN_B}\n")
    with caplog.at_level(logging.ERROR, logger="shared.secrets"):
        assert await watcher.poll() is False
    assert "IDENTITY_SERVICE_TOKEN were not taken up" in caplog.text
    assert TOKEN_B not in caplog.text
    recorder.refuse = False
    assert await watcher.poll() is True
    assert recorder.calls[-1]["IDENTITY_SERVICE_TOKEN"] == TOKEN_B


def test_a_ttl_of_zero_still_pauses_between_reads(tmp_path):
    settings = SecretsSettings(secrets_provider="env", secrets_cache_ttl_seconds=0)
    watcher = SecretWatcher(SecretsManager(settings=settings, environ={}), NAMES, Recorder())
    assert watcher.interval == 0.5


async def test_reads_on_demand_are_shared_and_at_most_one_a_second(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(f"IDENTITY_SERVICE_TOKEN={TOKEN_A}\n")
    recorder = Recorder()
    watcher = SecretWatcher(env_manager(env_file), NAMES, recorder)
    await watcher.prime()
    env_file.write_text(f"IDENTITY_SERVICE_TOKEN={TOKEN_B}\n")
    # A burst of refused credentials: one read between them all.
    await asyncio.gather(*(watcher.refresh() for _ in range(20)))
    assert [call["IDENTITY_SERVICE_TOKEN"] for call in recorder.calls] == [TOKEN_B]
    env_file.write_text(f"IDENTITY_SERVICE_TOKEN={TOKEN_A}\n")
    await watcher.refresh()
    assert len(recorder.calls) == 1
    await asyncio.sleep(1.05)
    await watcher.refresh()
    assert [call["IDENTITY_SERVICE_TOKEN"] for call in recorder.calls] == [TOKEN_B, TOKEN_A]
