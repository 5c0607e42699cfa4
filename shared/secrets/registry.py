"""The registry of managed secrets: `config/managed_secrets.yaml`, validated on load."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from shared.secrets.errors import RegistryError

DEFAULT_REGISTRY_PATH = Path(__file__).resolve().parents[2] / "config" / "managed_secrets.yaml"

SecretName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class Consumer(StrEnum):
    """A process that may require a managed secret."""

    PORTFOLIO = "portfolio"
    GATEWAY = "gateway"
    FRONTEND = "frontend"
    STUB = "stub"


class ManagedSecret(BaseModel):
    """One entry of the registry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: SecretName
    aliases: tuple[SecretName, ...] = ()
    required_by: tuple[Consumer, ...] = ()
    # Services that read it when it is set but start without it (e.g. a previous key).
    read_by: tuple[Consumer, ...] = ()
    # Not confidential (a public key): kept where every service may read it.
    public: bool = False
    description: Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
    min_length: Annotated[int, Field(gt=0)] | None = None

    @property
    def candidates(self) -> tuple[str, ...]:
        """Return the primary name followed by the aliases, in lookup order."""
        return (self.name, *self.aliases)

    @property
    def readers(self) -> tuple[Consumer, ...]:
        """Return every service that reads it, required or not, in `Consumer` order."""
        wanted = {*self.required_by, *self.read_by}
        return tuple(consumer for consumer in Consumer if consumer in wanted)


class _RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secrets: list[ManagedSecret]

    @model_validator(mode="after")
    def _names_are_unique(self) -> _RegistryFile:
        seen: dict[str, str] = {}
        for secret in self.secrets:
            for candidate in secret.candidates:
                if candidate in seen:
                    raise ValueError(
                        f"{candidate} is declared by both {seen[candidate]} and {secret.name}"
                    )
                seen[candidate] = secret.name
        return self


class SecretRegistry:
    """The managed secrets, by primary name, in file order."""

    def __init__(self, secrets: Iterable[ManagedSecret], *, path: Path | None = None) -> None:
        self.path = path
        self._secrets = {secret.name: secret for secret in secrets}

    @classmethod
    def load(cls, path: Path | str | None = None) -> SecretRegistry:
        """Read and validate a registry file (default: the repository's)."""
        file = Path(path) if path is not None else DEFAULT_REGISTRY_PATH
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise RegistryError(
                f"{file}: cannot read the secrets registry ({exc.strerror})"
            ) from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RegistryError(f"{file}: not valid YAML: {_yaml_problem(exc)}") from None
        if not isinstance(raw, dict):
            raise RegistryError(f"{file}: top level must be a mapping with a `secrets:` list")
        try:
            parsed = _RegistryFile.model_validate(raw)
        except ValidationError as exc:
            raise RegistryError(f"{file}: {_describe(exc, raw)}") from None
        return cls(parsed.secrets, path=file)

    def get(self, name: str) -> ManagedSecret | None:
        """Return the entry whose primary name is `name`, if any."""
        return self._secrets.get(name)

    def required_by(self, consumer: Consumer | str) -> list[ManagedSecret]:
        """Return every entry the given process requires."""
        try:
            wanted = Consumer(consumer)
        except ValueError:
            accepted = ", ".join(Consumer)
            raise ValueError(f"unknown service {consumer!r}; accepted: {accepted}") from None
        return [secret for secret in self._secrets.values() if wanted in secret.required_by]

    def __iter__(self) -> Iterator[ManagedSecret]:
        return iter(self._secrets.values())

    def __len__(self) -> int:
        return len(self._secrets)

    def __contains__(self, name: object) -> bool:
        return name in self._secrets


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    if mark is None:
        return str(problem)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def _describe(exc: ValidationError, raw: Any) -> str:
    """Name each failing location as `secrets[2] (NAME).field` so an operator can find it."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        location = list(error["loc"])
        text = ""
        if len(location) >= 2 and location[0] == "secrets" and isinstance(location[1], int):
            index = location[1]
            text = f"secrets[{index}]"
            name = _entry_name(raw, index)
            if name:
                text += f" ({name})"
            rest = location[2:]
        else:
            rest = location
        for part in rest:
            text += f"[{part}]" if isinstance(part, int) else f".{part}"
        text = text.lstrip(".") or "top level"
        problems.append(f"{text}: {error['msg']}")
    return "; ".join(problems)


def _entry_name(raw: Any, index: int) -> str | None:
    try:
        name = raw["secrets"][index]["name"]
    except (KeyError, IndexError, TypeError):
        return None
    return name if isinstance(name, str) else None
