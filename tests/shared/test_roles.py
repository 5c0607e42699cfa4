import pytest

from shared.roles import (
    ROLE_SERVICES,
    ROLES,
    SERVICES,
    Role,
    Service,
    UnknownRoleError,
    can_access,
    parse_roles,
    services_for,
)


def test_the_eight_roles_of_the_spec():
    assert [r.value for r in ROLES] == [
        "portfolio",
        "trading",
        "market",
        "strategy",
        "token",
        "execution",
        "monitoring",
        "admin",
    ]


@pytest.mark.parametrize("role", [r for r in ROLES if r is not Role.ADMIN])
@pytest.mark.parametrize("service", SERVICES)
def test_each_role_reaches_only_its_namesake(role, service):
    assert can_access([role], service) is (role.value == service.value)


@pytest.mark.parametrize("service", SERVICES)
def test_admin_reaches_every_service(service):
    assert can_access(["admin"], service)


def test_no_role_reaches_nothing():
    assert services_for([]) == []
    assert not any(can_access([], s) for s in SERVICES)


def test_unknown_role_is_refused_naming_it_and_the_allowed_ones():
    with pytest.raises(UnknownRoleError) as exc:
        parse_roles(["portfolio", "superuser"])
    assert "'superuser'" in str(exc.value)
    assert "portfolio, trading, market" in str(exc.value)


def test_parse_roles_normalises_and_drops_duplicates():
    assert parse_roles([" Admin", "admin", "trading"]) == [Role.ADMIN, Role.TRADING]


def test_services_for_keeps_map_order():
    assert services_for(["trading", "portfolio"]) == [Service.PORTFOLIO, Service.TRADING]
    assert set(ROLE_SERVICES[Role.ADMIN]) == set(SERVICES)


def test_a_role_list_setting_names_an_unknown_role():
    from pydantic import TypeAdapter, ValidationError

    from shared.roles import RoleList

    adapter = TypeAdapter(RoleList)
    assert adapter.validate_python(" admin , trading ") == " admin , trading "
    assert adapter.validate_python("") == ""
    with pytest.raises(ValidationError, match="unknown role 'wizard'"):
        adapter.validate_python("admin,wizard")
