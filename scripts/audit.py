"""Run pip-audit over the installed dependencies and print a short verdict.

pip-audit lists every package it could not look up, one line each; where the vulnerability
service cannot be reached that is every package, which buries the one line that matters.
This prints the vulnerabilities found (exit 1) and how many packages could not be audited.
"""

import json
import subprocess  # nosec B404 - runs our own venv's pip-audit
import sys
from pathlib import Path


def main() -> int:
    """Audit the environment; exit 1 when a known vulnerability is found."""
    pip_audit = Path(sys.executable).with_name("pip-audit")
    completed = subprocess.run(  # noqa: S603  # nosec B603 - fixed arguments
        [str(pip_audit), "--skip-editable", "--progress-spinner", "off", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        report = json.loads(completed.stdout)
    except json.JSONDecodeError:
        print(completed.stderr.strip() or "pip-audit failed", file=sys.stderr)
        return 1
    vulnerable = [d for d in report.get("dependencies", []) if d.get("vulns")]
    skipped = [d for d in report.get("dependencies", []) if d.get("skip_reason")]
    audited = len(report.get("dependencies", [])) - len(skipped)
    for dep in vulnerable:
        ids = ", ".join(v["id"] for v in dep["vulns"])
        print(f"pip-audit: {dep['name']} {dep['version']}: {ids}")
    print(
        f"pip-audit: {audited} packages audited, {len(vulnerable)} with known vulnerabilities, "
        f"{len(skipped)} could not be looked up"
    )
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main())
