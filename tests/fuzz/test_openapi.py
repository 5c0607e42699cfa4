"""schemathesis against the OpenAPI documents of the gateway, the portfolio API and the
internal identity API: no 5xx, and every answer conforms to the documented status codes,
types and schemas.

Driven through hypothesis directly (schemathesis' pytest plugin does not load under this
pytest), one bounded run per operation; every operation's failure is reported together.
"""

from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

pytestmark = pytest.mark.e2e

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
# Bounded: the three schemas together run in well under two minutes on two shared cores.
FUZZ = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def fuzz(
    schema: schemathesis.BaseSchema, base_url: str, headers: Callable[[], dict[str, str]]
) -> dict[str, str]:
    """Run every operation; return the failures by operation."""
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    for operation in operations:

        @FUZZ
        @given(case=operation.as_strategy())
        def run(case) -> None:
            case.call_and_validate(base_url=base_url, headers=headers(), checks=CHECKS, timeout=30)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # every failure is reported below
            failures[operation.label] = f"{type(exc).__name__}: {str(exc)[:2000]}"
    return failures


def test_gateway_api_conforms_to_its_schema(fuzz_stack, gateway_schema):
    failures = fuzz(
        gateway_schema, fuzz_stack.gateway_url, lambda: {"X-API-Key": fuzz_stack.admin_key}
    )
    assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())


def test_portfolio_api_conforms_to_its_schema(fuzz_stack, portfolio_schema):
    failures = fuzz(portfolio_schema, fuzz_stack.portfolio_url, fuzz_stack.portfolio_headers)
    assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())


def test_identity_api_conforms_to_its_schema(fuzz_stack, identity_schema):
    failures = fuzz(identity_schema, fuzz_stack.portfolio_url, fuzz_stack.portfolio_headers)
    assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())
