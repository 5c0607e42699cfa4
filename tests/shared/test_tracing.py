"""OpenTelemetry: off by default; on, one request through the gateway to the portfolio is one
trace holding both services' spans (real processes, exported over OTLP/HTTP to a receiver)."""

import time
from contextlib import ExitStack

import httpx
import pytest

from devstack.servers import ServerProcess
from shared.tracing import tracing_requested
from tests.portfolio.conftest import PASSWORD
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support.stack import fast_identity, service_urls, stack_env, start_portfolio_and_stub

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
SERVER = 2  # SpanKind.SERVER in OTLP
CLIENT = 3


@pytest.mark.parametrize(
    ("environ", "exporter"),
    [
        ({}, None),
        ({"OTEL_SERVICE_NAME": "gateway"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, None),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, None),
    ],
)
def test_tracing_is_off_unless_the_otel_variables_ask_for_an_exporter(environ, exporter):
    assert tracing_requested(environ) == exporter


@pytest.mark.e2e
def test_a_request_through_the_gateway_is_one_trace_across_gateway_and_portfolio(
    sqlite_url, tmp_path
):
    with ExitStack() as stack:
        receiver = stack.enter_context(OtlpReceiver())
        env = stack_env(
            sqlite_url,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
            OTEL_BSP_SCHEDULE_DELAY="100",
        )
        identity = fast_identity(sqlite_url)
        identity.create_user("tracer", PASSWORD, roles=["portfolio", "trading"])
        identity.close()
        portfolio, stub = start_portfolio_and_stub(stack, env, tmp_path)
        gateway = stack.enter_context(
            ServerProcess(
                "services.api_gateway.app:app",
                env={**env, **service_urls(portfolio.url, stub.url)},
                log_path=tmp_path / "gateway.log",
            )
        )
        login = httpx.post(
            gateway.url + "/auth/token", json={"username": "tracer", "password": PASSWORD}
        )
        token = login.json()["access_token"]
        response = httpx.get(
            gateway.url + "/api/portfolio/positions",
            headers={
                "Authorization": f"Bearer {token}",
                "X-Request-ID": "req-traced-1",
                "traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01",
            },
        )
        assert response.status_code == 200, response.text
        spans = receiver.wait_for(TRACE_ID, _gateway_portfolio_and_sql)
        # Without a traceparent the gateway starts the trace, and a stub joins it.
        started = httpx.get(
            gateway.url + "/api/trading/orders/7",
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": "req-traced-2"},
        )
        assert started.status_code == 200, started.text
        root = _wait_for_span(receiver, "gateway", "req-traced-2")
        assert root.kind == SERVER
        assert root.parent_span_id == ""
        assert root.trace_id != TRACE_ID
        started_spans = receiver.wait_for(root.trace_id, _gateway_and_trading)

    by_service = {
        service: [s for s in spans if s.service == service] for service in ("gateway", "portfolio")
    }
    assert by_service["gateway"], spans
    assert by_service["portfolio"], spans
    # The gateway continued the client's trace: its server span's parent is the client's.
    [gateway_server] = [
        s for s in by_service["gateway"] if s.kind == SERVER and s.parent_span_id == CLIENT_SPAN
    ]
    assert gateway_server.attributes["lct.request_id"] == "req-traced-1"
    # Its call downstream is a client span, the parent of the portfolio's server span.
    [downstream] = [s for s in by_service["gateway"] if s.kind == CLIENT]
    [portfolio_server] = [
        s
        for s in by_service["portfolio"]
        if s.kind == SERVER and s.parent_span_id == downstream.span_id
    ]
    assert portfolio_server.attributes["lct.request_id"] == "req-traced-1"
    # The portfolio's SQL joined the trace too.
    assert any(s.kind == CLIENT for s in by_service["portfolio"]), by_service["portfolio"]
    # The log lines name the trace.
    gateway_log = (tmp_path / "gateway.log").read_text()
    portfolio_log = (tmp_path / "portfolio.log").read_text()
    assert f'"trace_id":"{TRACE_ID}"' in portfolio_log
    assert f'"trace_id":"{TRACE_ID}"' in gateway_log
    # The stub, named by the service it stands in for, continued the trace the gateway began.
    [client] = [s for s in started_spans if s.service == "gateway" and s.kind == CLIENT]
    [trading_server] = [s for s in started_spans if s.service == "trading" and s.kind == SERVER]
    assert trading_server.parent_span_id == client.span_id
    assert trading_server.attributes["lct.request_id"] == "req-traced-2"


def _gateway_portfolio_and_sql(spans: list[ReceivedSpan]) -> bool:
    # Each process exports its spans in its own batches: wait for every kind asserted on.
    kinds = {(s.service, s.kind) for s in spans}
    return {
        ("gateway", SERVER),
        ("gateway", CLIENT),
        ("portfolio", SERVER),
        ("portfolio", CLIENT),
    } <= kinds


def _gateway_and_trading(spans: list[ReceivedSpan]) -> bool:
    kinds = {(s.service, s.kind) for s in spans}
    return {("gateway", SERVER), ("gateway", CLIENT), ("trading", SERVER)} <= kinds


def _wait_for_span(receiver: OtlpReceiver, service: str, request_id: str) -> ReceivedSpan:
    """Return the server span of `service` tagged with `request_id` (fail after 20 s)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for span in list(receiver.spans):
            tagged = span.attributes.get("lct.request_id") == request_id
            if span.service == service and span.kind == SERVER and tagged:
                return span
        time.sleep(0.1)
    raise AssertionError(f"no {service} server span for {request_id}: {receiver.spans}")
