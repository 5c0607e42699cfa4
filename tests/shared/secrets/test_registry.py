"""config/managed_secrets.yaml: the contract's names, and errors that say where."""

from pathlib import Path

import pytest

from devstack import REPO_ROOT
from shared.secrets import Consumer, RegistryError, SecretRegistry
from shared.secrets.registry import DEFAULT_REGISTRY_PATH

# docs/CONTRACTS.md, table "Managed secrets".
CONTRACT = {
    "SESSION_SECRET_KEY": (("FLASK_SECRET_KEY", "FRONTEND_SESSION_SECRET"), {"frontend"}),
    "SESSION_PREVIOUS_SECRET_KEY": ((), set()),
    "SESSION_SECRET_KEY_NOT_BEFORE": ((), set()),
    "GATEWAY_JWT_PRIVATE_KEY": (("GATEWAY_JWT_SIGNING_KEY",), {"gateway"}),
    "GATEWAY_JWT_PREVIOUS_PUBLIC_KEY": ((), set()),
    "GATEWAY_JWT_PREVIOUS_PRIVATE_KEY": ((), set()),
    "GATEWAY_JWT_PRIVATE_KEY_NOT_BEFORE": ((), set()),
    "GATEWAY_ASSERTION_PRIVATE_KEY": ((), {"gateway"}),
    "GATEWAY_ASSERTION_PUBLIC_KEY": ((), {"portfolio", "stub"}),
    "GATEWAY_ASSERTION_PREVIOUS_PUBLIC_KEY": ((), set()),
    "GATEWAY_ASSERTION_PREVIOUS_PRIVATE_KEY": ((), set()),
    "GATEWAY_ASSERTION_PRIVATE_KEY_NOT_BEFORE": ((), set()),
    "IDENTITY_SERVICE_TOKEN": (("PORTFOLIO_INTERNAL_TOKEN",), {"portfolio", "gateway"}),
    "PORTFOLIO_NEW_API_KEY": (("PORTFOLIO_ROTATION_API_KEY",), set()),
    "METRICS_SCRAPE_TOKEN": ((), set()),
    "PORTFOLIO_MFA_ENCRYPTION_KEY": ((), set()),
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "managed_secrets.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_path_is_the_repository_file_not_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    registry = SecretRegistry.load()
    assert registry.path == DEFAULT_REGISTRY_PATH
    assert DEFAULT_REGISTRY_PATH.parent.name == "config"


def test_repository_registry_declares_the_contract_names_aliases_and_services():
    registry = SecretRegistry.load()
    assert {entry.name for entry in registry} == set(CONTRACT)
    for name, (aliases, services) in CONTRACT.items():
        entry = registry.get(name)
        assert entry is not None
        assert entry.aliases == aliases
        assert {str(service) for service in entry.required_by} == services
        assert entry.description


@pytest.mark.parametrize("consumer", list(Consumer))
def test_required_by_lists_exactly_the_entries_naming_the_service(consumer):
    registry = SecretRegistry.load()
    expected = {name for name, (_, services) in CONTRACT.items() if consumer.value in services}
    assert {entry.name for entry in registry.required_by(consumer)} == expected


def test_candidates_are_the_name_then_the_aliases_in_declared_order():
    entry = SecretRegistry.load().get("SESSION_SECRET_KEY")
    assert entry is not None
    assert entry.candidates == ("SESSION_SECRET_KEY", "FLASK_SECRET_KEY", "FRONTEND_SESSION_SECRET")


def test_unknown_field_names_the_file_the_entry_and_the_field(tmp_path):
    path = write(
        tmp_path,
        """
secrets:
  - name: A_KEY
    description: first
  - name: B_KEY
    description: second
    requried_by: [frontend]
""",
    )
    with pytest.raises(RegistryError) as caught:
        SecretRegistry.load(path)
    message = str(caught.value)
    assert str(path) in message
    assert "secrets[1] (B_KEY).requried_by" in message
    assert "Extra inputs are not permitted" in message


def test_unknown_service_in_required_by_is_named(tmp_path):
    path = write(
        tmp_path,
        "secrets:\n  - name: A_KEY\n    description: x\n    required_by: [frontend, billing]\n",
    )
    with pytest.raises(RegistryError, match=r"secrets\[0\] \(A_KEY\)\.required_by\[1\]"):
        SecretRegistry.load(path)


def test_missing_description_is_named(tmp_path):
    path = write(tmp_path, "secrets:\n  - name: A_KEY\n")
    with pytest.raises(RegistryError, match=r"secrets\[0\] \(A_KEY\)\.description: Field required"):
        SecretRegistry.load(path)


def test_unknown_top_level_field_is_named(tmp_path):
    path = write(tmp_path, "secrets: []\nsecret: []\n")
    with pytest.raises(RegistryError, match=r"managed_secrets\.yaml: secret: Extra inputs"):
        SecretRegistry.load(path)


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "secrets:\n  - name: A_KEY\n    aliases: [B\n")
    with pytest.raises(RegistryError, match=r"not valid YAML: line \d+, column \d+"):
        SecretRegistry.load(path)


def test_a_name_declared_twice_is_refused(tmp_path):
    path = write(
        tmp_path,
        """
secrets:
  - name: A_KEY
    aliases: [SHARED]
    description: a
  - name: B_KEY
    aliases: [SHARED]
    description: b
""",
    )
    with pytest.raises(RegistryError, match="SHARED is declared by both A_KEY and B_KEY"):
        SecretRegistry.load(path)


def test_a_name_that_is_not_an_environment_variable_name_is_refused(tmp_path):
    path = write(tmp_path, "secrets:\n  - name: not-a-var\n    description: x\n")
    with pytest.raises(RegistryError, match=r"secrets\[0\] \(not-a-var\)\.name"):
        SecretRegistry.load(path)


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(RegistryError, match=r"absent\.yaml: cannot read the secrets registry"):
        SecretRegistry.load(path)


def test_empty_file_is_an_error_not_an_empty_registry(tmp_path):
    with pytest.raises(RegistryError, match=r"managed_secrets\.yaml: top level must be a mapping"):
        SecretRegistry.load(write(tmp_path, ""))


def test_asking_for_an_unknown_service_names_the_accepted_ones():
    with pytest.raises(ValueError, match="unknown service 'billing'; accepted: portfolio, gateway"):
        SecretRegistry.load().required_by("billing")


def readme_table_after(heading: str) -> str:
    """Return the first Markdown table under `heading` in the README."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(f"\n{heading}\n") :]
    lines = section.splitlines()
    first = next(index for index, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        table.append(line)
    return "\n".join(table)


@pytest.mark.parametrize("entry", list(SecretRegistry.load()), ids=lambda entry: entry.name)
def test_the_readmes_secrets_table_names_every_managed_secret(entry):
    assert f"`{entry.name}`" in readme_table_after("## Secrets")


@pytest.mark.parametrize(
    "entry",
    [entry for entry in SecretRegistry.load() if entry.readers],
    ids=lambda entry: entry.name,
)
def test_the_readme_says_whether_a_running_service_takes_up_each_secret_it_reads(entry):
    # Issue 18: a rotated secret is taken up without a restart, or the README says it is not.
    assert f"`{entry.name}`" in readme_table_after("### Rotating secrets without a restart")
