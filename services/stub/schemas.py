"""What a stub answers."""

from __future__ import annotations

from pydantic import BaseModel


class Health(BaseModel):
    """Liveness."""

    status: str
    service: str
