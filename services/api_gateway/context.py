"""What the gateway knows about one request while it runs: id, client, caller, service."""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import time
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field

from starlette.types import Scope

from services.api_gateway.config import IpNetwork
from services.api_gateway.principal import Principal

CONTEXT_KEY = "lct.context"
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


@dataclass(slots=True)
class RequestContext:
    """Per-request facts the access log and usage counters need."""

    request_id: str
    client: str | None
    started: float = field(default_factory=time.perf_counter)
    principal: Principal | None = None
    service: str | None = None
    status: int | None = None
    trace_id: str | None = None


# The request being served, for calls made on its behalf (the identity service's audit trail).
current_request: ContextVar[RequestContext | None] = ContextVar("current_request", default=None)


def request_context(scope: Scope) -> RequestContext:
    """Return the context the access-log middleware attached to a request scope."""
    context: RequestContext = scope[CONTEXT_KEY]
    return context


# A random per-process prefix and a counter: unique across replicas and restarts without
# a getrandom() call per request (measurably slow on a busy host).
_PREFIX = os.urandom(8).hex()
_COUNTER = itertools.count(1)


def request_id_from(header: bytes | None) -> str:
    """Keep a sane client-sent request id, else make a new one."""
    if header is not None and _SANE_REQUEST_ID.fullmatch(header):
        return header.decode("ascii")
    return f"{_PREFIX}{next(_COUNTER):016x}"


def client_address(
    peer: str | None, forwarded_for: bytes | None, trusted: Iterable[IpNetwork]
) -> str | None:
    """Return the caller's address; `X-Forwarded-For` counts only when the peer is trusted."""
    networks = tuple(trusted)
    if not networks or peer is None or forwarded_for is None or not _in(peer, networks):
        return peer
    hops = [hop.strip() for hop in forwarded_for.decode("latin-1").split(",") if hop.strip()]
    # Walk from the nearest hop outwards and stop at the first address we do not trust.
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer
        if not _in(hop, networks):
            return hop
    return hops[0] if hops else peer


def _in(address: str, networks: tuple[IpNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)
