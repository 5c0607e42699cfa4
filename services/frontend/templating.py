"""The Jinja2 environment: where the templates and static files are, and the filters."""

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from fastapi.templating import Jinja2Templates

from services.frontend import numbers
from services.frontend.gateway import epoch

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


def when(value: object) -> str:
    """Format a timestamp (epoch seconds or ISO 8601) as UTC, or a dash."""
    seconds = epoch(value)
    if seconds is None:
        return "—"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def when_short(value: object) -> str:
    """Format a timestamp as UTC to the minute, for tables whose heading says UTC."""
    seconds = epoch(value)
    if seconds is None:
        return "—"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M")


def iso(value: object) -> str:
    """Format a timestamp as ISO 8601 UTC for a `datetime` attribute."""
    seconds = epoch(value)
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def days_since(value: object) -> str:
    """Say how many whole days ago a timestamp was."""
    seconds = epoch(value)
    if seconds is None:
        return "—"
    days = int((time.time() - seconds) // 86400)
    return "today" if days <= 0 else f"{days} day{'s' if days != 1 else ''}"


def is_past(value: object) -> bool:
    """Tell whether a timestamp lies in the past."""
    seconds = epoch(value)
    return seconds is not None and seconds <= time.time()


def pretty_json(value: object) -> str:
    """Indent a JSON value for a <pre> block."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def build_templates() -> Jinja2Templates:
    """Return the page templates with their filters (autoescaped HTML)."""
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    templates.env.filters.update(
        when=when,
        when_short=when_short,
        iso=iso,
        days_since=days_since,
        is_past=is_past,
        pretty_json=pretty_json,
        amount=numbers.amount,
        quantity=numbers.quantity,
        signed=numbers.signed,
        percent=numbers.percent,
        exact=numbers.exact,
        sign_class=numbers.sign_class,
    )
    templates.env.globals["epoch"] = epoch
    return templates
