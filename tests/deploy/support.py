"""Load the repository's scripts (not packages) as modules for the deploy tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from devstack import REPO_ROOT


def load_script(relative: str) -> ModuleType:
    """Import `scripts/x.py` or `docker/x.py` once, by path."""
    path = REPO_ROOT / relative
    name = f"_deploy_{Path(relative).stem}"
    if name in sys.modules:
        return sys.modules[name]
    # vault_init imports write_dev_env by name, as it does inside the image.
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
