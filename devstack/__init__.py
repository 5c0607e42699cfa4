"""The development stack: every service as a real uvicorn process on 127.0.0.1.

`python -m devstack` (what `make run` calls) runs the whole stack under honcho; the tests and
the bench start single processes with `devstack.servers.ServerProcess`. Every launch takes its
uvicorn flags from `devstack.launch`.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The checkout every process runs from (its working directory)."""
