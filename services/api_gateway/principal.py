"""The authenticated caller of one request."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from shared.roles import Service, is_admin, services_for


class AuthMethod(StrEnum):
    """How the caller proved who they are (the assertion's `auth` claim)."""

    PASSWORD = "password"  # noqa: S105  # nosec B105 - a token obtained with a password
    API_KEY = "api_key"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, with what roles, and how they authenticated."""

    username: str
    roles: tuple[str, ...]
    auth_method: AuthMethod
    key_id: str | None = None
    jti: str | None = None
    expires_at: float | None = None
    issued_at: float | None = None
    # When the password the token was obtained with was set (microseconds since the epoch);
    # None for API keys and for tokens issued before the gateway wrote it.
    password_version: int | None = None
    # The identity service's feed position of the user's last access change at login; None
    # for API keys and for tokens issued before the gateway wrote it.
    access_version: int | None = None
    services: frozenset[Service] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "services", frozenset(services_for(self.roles)))

    @property
    def is_admin(self) -> bool:
        """Tell whether the caller holds the admin role."""
        return is_admin(self.roles)

    def may_reach(self, service: Service) -> bool:
        """Tell whether the caller's roles grant the service."""
        return service in self.services
