"""Container healthcheck: exit 0 when `http://127.0.0.1:<port>/healthz` answers 200.

The runtime image has no curl or wget, so compose healthchecks run this with the image's
python: `python docker/healthcheck.py 8003`.
"""

import sys
import urllib.error
import urllib.request


def healthy(port: int, path: str = "/healthz", timeout: float = 3.0) -> bool:
    """Tell whether the local server on `port` answers `path` with 200."""
    url = f"http://127.0.0.1:{port}{path}"
    try:
        # Always http://127.0.0.1: no file:// or other scheme can reach here.
        with urllib.request.urlopen(url, timeout=timeout) as response:  # nosec B310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main(argv: list[str]) -> int:
    """Check the port given as the only argument."""
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python docker/healthcheck.py <port>", file=sys.stderr)
        return 2
    return 0 if healthy(int(argv[0])) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
