"""Roles and the role-to-service map: the one place RBAC is defined."""

from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator


class Service(StrEnum):
    """A downstream service routed through the gateway."""

    PORTFOLIO = "portfolio"
    TRADING = "trading"
    MARKET = "market"
    STRATEGY = "strategy"
    TOKEN = "token"  # noqa: S105  # nosec B105 - a service name, not a credential
    EXECUTION = "execution"
    MONITORING = "monitoring"


class Role(StrEnum):
    """A role a user may hold."""

    PORTFOLIO = "portfolio"
    TRADING = "trading"
    MARKET = "market"
    STRATEGY = "strategy"
    TOKEN = "token"  # noqa: S105  # nosec B105 - a role name, not a credential
    EXECUTION = "execution"
    MONITORING = "monitoring"
    ADMIN = "admin"


SERVICES: tuple[Service, ...] = tuple(Service)
ROLES: tuple[Role, ...] = tuple(Role)

# admin reaches every service and /admin/*; every other role reaches exactly its namesake.
ROLE_SERVICES: dict[Role, frozenset[Service]] = {
    **{Role(service.value): frozenset({service}) for service in Service},
    Role.ADMIN: frozenset(Service),
}


class UnknownRoleError(ValueError):
    """A role name outside the allowed set."""

    def __init__(self, role: str) -> None:
        self.role = role
        allowed = ", ".join(ROLES)
        super().__init__(f"unknown role {role!r}; allowed roles: {allowed}")


def parse_roles(roles: Iterable[str]) -> list[Role]:
    """Validate role names, dropping duplicates and keeping their first order."""
    parsed: list[Role] = []
    for name in roles:
        key = name.strip().lower() if isinstance(name, str) else name
        try:
            role = Role(key)
        except ValueError:
            raise UnknownRoleError(str(name)) from None
        if role not in parsed:
            parsed.append(role)
    return parsed


def services_for(roles: Iterable[str]) -> list[Service]:
    """Return the services the given roles reach, in the map's order."""
    granted: set[Service] = set()
    for name in roles:
        if name in Role.__members__.values():
            granted |= ROLE_SERVICES[Role(name)]
    return [service for service in SERVICES if service in granted]


def can_access(roles: Iterable[str], service: str) -> bool:
    """Tell whether the roles grant the service."""
    return service in services_for(roles)


def is_admin(roles: Iterable[str]) -> bool:
    """Tell whether the roles include admin."""
    return Role.ADMIN in set(roles)


def parse_role_list(text: str) -> frozenset[str]:
    """Return the roles of a comma-separated list (`PORTFOLIO_MFA_REQUIRED_ROLES`); empty
    text is no role; an unknown name raises `UnknownRoleError`."""
    names = [part for part in (piece.strip() for piece in text.split(",")) if part]
    return frozenset(str(role) for role in parse_roles(names))


def _checked_role_list(text: str) -> str:
    try:
        parse_role_list(text)
    except UnknownRoleError as exc:
        raise ValueError(str(exc)) from None
    return text


RoleList = Annotated[str, AfterValidator(_checked_role_list)]
"""A setting holding a comma-separated list of role names, each checked when it is read."""
