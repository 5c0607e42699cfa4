"""What a stub answers."""

from __future__ import annotations

from pydantic import BaseModel


class Echo(BaseModel):
    """The verified caller and the request, echoed back."""

    service: str
    method: str
    path: str
    user: str
    roles: list[str]
    request_id: str | None


class Health(BaseModel):
    """Liveness."""

    status: str
    service: str
