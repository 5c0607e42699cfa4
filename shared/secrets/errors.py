"""Errors of the secrets layer: one root, messages that never carry a value."""


class SecretsError(Exception):
    """A secret could not be resolved, stored or configured."""


class SecretsConfigError(SecretsError):
    """The secrets settings or the registry file are wrong."""


class RegistryError(SecretsConfigError):
    """`managed_secrets.yaml` is missing, malformed or has an unknown field."""


class MissingSecretError(SecretsError):
    """A required secret resolves nowhere."""

    def __init__(self, name: str, aliases: tuple[str, ...], consulted: str) -> None:
        self.name = name
        self.aliases = aliases
        self.consulted = consulted
        alias_text = f"aliases: {', '.join(aliases)}" if aliases else "no aliases"
        super().__init__(f"missing secret {name} ({alias_text}): not found in {consulted}")


class InvalidSecretError(SecretsError):
    """A secret resolved to a value its registry entry refuses (e.g. too short)."""


class SecretsUnavailableError(SecretsError):
    """The configured store cannot be read or written and nothing usable is cached."""
