"""Fresh values for every secret a service requires: the local `.env`, Vault's first start, tests."""

import secrets

from shared.keys import generate_private_key, load_private_key, public_key_text


def generate_secrets() -> dict[str, str]:
    """Return a new, strong value for every required managed secret and for the optional
    ones a stack should have from the start (the `.env` form)."""
    assertion_key = generate_private_key()
    return {
        "SESSION_SECRET_KEY": secrets.token_urlsafe(48),
        "GATEWAY_JWT_PRIVATE_KEY": generate_private_key(),
        "GATEWAY_ASSERTION_PRIVATE_KEY": assertion_key,
        "GATEWAY_ASSERTION_PUBLIC_KEY": public_key_text(load_private_key(assertion_key)),
        "IDENTITY_SERVICE_TOKEN": secrets.token_urlsafe(48),
        # Optional to start (a service without it serves metrics to nobody), but wanted.
        "METRICS_SCRAPE_TOKEN": secrets.token_urlsafe(48),
        # Optional to start, but TOTP needs it: sealed factors are unreadable without it.
        "PORTFOLIO_MFA_ENCRYPTION_KEY": secrets.token_urlsafe(48),
    }
