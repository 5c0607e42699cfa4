"""The operations guide's two bash blocks, character for character, and how to run them.

The guide (SECURITY_OPERATIONS.md, "User provisioning", steps 1 and 3) promises that every
command in it works exactly as printed; the tests run these blocks as an operator would.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping

from devstack import REPO_ROOT

GUIDE_CREATE_USER = """\
python - <<'PY'
from services.portfolio.identity import PortfolioIdentityService

identity = PortfolioIdentityService()
user = identity.create_user(
    "security-admin",
    "change_me_now!",
    roles=["admin", "portfolio", "trading"],
)
print(f"Created user {user.username} with roles: {user.roles}")
PY
"""

GUIDE_ROTATE_API_KEY = """\
export PORTFOLIO_NEW_API_KEY=$(openssl rand -hex 32)

python - <<'PY'
from services.portfolio.identity import PortfolioIdentityService

service = PortfolioIdentityService()
result = service.rotate_api_key("security-admin")
print(
    "API key for",
    result.user.username,
    "rotated; updated secret is available via the managed store."
)
PY
"""

# What the blocks print when they work.
GUIDE_CREATED_LINE = "Created user security-admin with roles: ['admin', 'portfolio', 'trading']\n"
GUIDE_ROTATED_LINE = (
    "API key for security-admin rotated; updated secret is available via the managed store.\n"
)
GUIDE_ADMIN = "security-admin"
GUIDE_PASSWORD = "change_me_now!"


def run_guide_block(
    block: str, env: Mapping[str, str], *, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a guide block with bash from the repository root, the venv first on PATH.

    The caller's own identity and secrets settings are dropped first, so only `env`
    decides which database and which secrets store the block sees.
    """
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PORTFOLIO_", "SECRETS_", "VAULT_", "AWS_", "VIRTUAL_ENV"))
    }
    base["PATH"] = f"{REPO_ROOT / '.venv' / 'bin'}{os.pathsep}{base.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-c", block],
        cwd=REPO_ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
