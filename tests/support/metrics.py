"""Read a Prometheus exposition the way Prometheus would, for tests of the metrics."""

from __future__ import annotations

import secrets

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def new_scrape_token() -> SecretStr:
    """Return a fresh scrape token, as `generate_secrets` makes one."""
    return SecretStr(secrets.token_urlsafe(48))


def parse(text: str) -> Samples:
    """Map (sample name, labels) to value for every sample of an exposition."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    """Return the sample `name` with exactly `labels`, 0 when absent (nothing counted yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def label_values(samples: Samples) -> set[str]:
    """Return every label value of every sample."""
    return {value for _, labels in samples for _, value in labels}


def families(text: str) -> set[str]:
    """Return the name of every metric family an exposition declares (`# TYPE` lines)."""
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


async def scrape(client: httpx.AsyncClient, token: SecretStr) -> Samples:
    """Scrape `GET /metrics` with the token; fail unless it answers 200."""
    response = await client.get(
        "/metrics", headers={"Authorization": f"Bearer {token.get_secret_value()}"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)
