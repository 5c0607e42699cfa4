"""Where each secret lives in Vault's per-service layout, and the policies that follow."""

import pytest

from devstack import REPO_ROOT
from shared.secrets import ManagedSecret, SecretRegistry
from shared.secrets.layout import home, home_of, policy_document, readable_paths
from shared.secrets.registry import Consumer

REGISTRY = SecretRegistry.load()
README = REPO_ROOT / "README.md"
# Read by every service (the metrics scrape token), readable by them alone.
EVERY = "portfolio-gateway-frontend-stub"


@pytest.mark.parametrize(
    ("service", "paths"),
    [
        (Consumer.PORTFOLIO, ["shared", "portfolio-gateway", "portfolio", EVERY, "api-keys"]),
        (Consumer.GATEWAY, ["shared", "gateway", "portfolio-gateway", EVERY]),
        (Consumer.FRONTEND, ["shared", "frontend", EVERY]),
        (Consumer.STUB, ["shared", EVERY]),
        (
            None,
            [
                "shared",
                "frontend",
                "gateway",
                "portfolio-gateway",
                "portfolio",
                EVERY,
                "operator",
                "api-keys",
            ],
        ),
    ],
)
def test_each_service_reads_only_its_paths(service, paths):
    assert readable_paths(REGISTRY, service) == paths


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("SESSION_SECRET_KEY", "frontend"),
        ("FLASK_SECRET_KEY", "frontend"),
        ("SESSION_PREVIOUS_SECRET_KEY", "frontend"),
        ("SESSION_SECRET_KEY_NOT_BEFORE", "frontend"),
        ("GATEWAY_JWT_PRIVATE_KEY", "gateway"),
        ("GATEWAY_JWT_PREVIOUS_PUBLIC_KEY", "shared"),
        ("GATEWAY_ASSERTION_PRIVATE_KEY", "gateway"),
        ("GATEWAY_JWT_PREVIOUS_PRIVATE_KEY", "gateway"),
        ("GATEWAY_JWT_PRIVATE_KEY_NOT_BEFORE", "gateway"),
        ("GATEWAY_ASSERTION_PREVIOUS_PRIVATE_KEY", "gateway"),
        ("GATEWAY_ASSERTION_PRIVATE_KEY_NOT_BEFORE", "gateway"),
        ("GATEWAY_ASSERTION_PUBLIC_KEY", "shared"),
        ("IDENTITY_SERVICE_TOKEN", "portfolio-gateway"),
        ("PORTFOLIO_NEW_API_KEY", "portfolio"),
        ("PORTFOLIO_MFA_ENCRYPTION_KEY", "portfolio"),
        ("METRICS_SCRAPE_TOKEN", EVERY),
        ("PORTFOLIO_API_KEY__A_2EB", "api-keys"),
        ("SOMETHING_UNDECLARED", "operator"),
    ],
)
def test_every_name_has_one_home(name, path):
    assert home_of(name, REGISTRY) == path


def test_a_secret_nobody_reads_is_for_the_operator_alone():
    entry = ManagedSecret(name="BREAK_GLASS", description="x")
    assert home(entry) == "operator"
    registry = SecretRegistry([entry])
    assert all("operator" not in readable_paths(registry, service) for service in Consumer)


def test_only_the_portfolio_may_write_and_only_the_api_keys():
    assert policy_document(REGISTRY, Consumer.PORTFOLIO, "secret", "legacycointrader") == (
        'path "secret/data/legacycointrader/shared" {\n  capabilities = ["read"]\n}\n\n'
        'path "secret/data/legacycointrader/portfolio-gateway" {\n  capabilities = ["read"]\n}\n\n'
        'path "secret/data/legacycointrader/portfolio" {\n  capabilities = ["read"]\n}\n\n'
        f'path "secret/data/legacycointrader/{EVERY}" {{\n  capabilities = ["read"]\n}}\n\n'
        'path "secret/data/legacycointrader/api-keys" {\n'
        '  capabilities = ["create", "update", "read"]\n}\n\n'
        'path "secret/metadata/legacycointrader/api-keys" {\n  capabilities = ["read"]\n}\n'
    )
    for service in (Consumer.GATEWAY, Consumer.FRONTEND, Consumer.STUB):
        document = policy_document(REGISTRY, service, "secret", "legacycointrader")
        assert "create" not in document
        assert "update" not in document
        assert "api-keys" not in document


# The README's "Least privilege on Vault" says where each secret lives and shows a policy;
# both must be what this module computes.


def readme_section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n### {title}\n")
    end = text.find("\n#", start + 1)
    return text[start:end]


def readme_path_table() -> dict[str, str]:
    """Map each path of the README's layout table to the text of its `holds` column."""
    rows = {}
    for line in readme_section("Least privilege on Vault").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`…/"):
            rows[cells[0].removeprefix("`…/").removesuffix("`")] = cells[1]
    return rows


@pytest.mark.parametrize("entry", list(REGISTRY), ids=lambda entry: entry.name)
def test_the_readme_names_each_secret_in_the_row_of_its_home(entry):
    rows = readme_path_table()
    assert home(entry) in rows, f"the README has no row for the path {home(entry)}"
    assert f"`{entry.name}`" in rows[home(entry)]


def test_the_readmes_gateway_policy_is_the_one_provisioned():
    section = readme_section("Least privilege on Vault")
    shown = section.split("```hcl\n", 1)[1].split("```", 1)[0]
    computed = policy_document(REGISTRY, Consumer.GATEWAY, "secret", "legacycointrader")
    assert " ".join(shown.split()) == " ".join(computed.split())
