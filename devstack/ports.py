"""The loopback ports the processes listen on: chosen, checked, and who holds a busy one."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path

from devstack.errors import StackError
from devstack.launch import HOST
from devstack.processes import PROCESSES


def base_url(port: int) -> str:
    """Return the loopback URL of a port."""
    return f"http://{HOST}:{port}"


def free_port() -> int:
    """Return a loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def resolve_ports(environ: Mapping[str, str]) -> dict[str, int]:
    """Return each process's port: `LCT_<NAME>_PORT` when set, else the default."""
    ports: dict[str, int] = {}
    for process in PROCESSES:
        raw = environ.get(process.port_variable, "").strip()
        if not raw:
            ports[process.name] = process.default_port
            continue
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise StackError(f"{process.port_variable}={raw} is not a TCP port (1-65535)")
        ports[process.name] = int(raw)
    taken: dict[int, str] = {}
    for name, port in ports.items():
        if port in taken:
            raise StackError(f"{name} and {taken[port]} are both set to port {port}")
        taken[port] = name
    return ports


def port_owner(port: int) -> str | None:
    """Describe the process listening on `port` (Linux /proc), None when it cannot be told."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            listening = fields[3] == "0A"
            if listening and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
                    text = cmdline.decode(errors="replace").strip()
                    text = text if len(text) <= 80 else text[:77] + "..."
                    return f"pid {proc.name} ({text})"
        except OSError:
            continue
    return None


def port_in_use(port: int) -> bool:
    """Tell whether binding 127.0.0.1:`port` fails the way uvicorn's bind would."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def busy_port_messages(ports: Mapping[str, int]) -> list[str]:
    """Return one line per port that is already taken, naming the process when possible."""
    by_name = {process.name: process for process in PROCESSES}
    messages = []
    for name, port in ports.items():
        if not port_in_use(port):
            continue
        owner = port_owner(port)
        holder = f"by {owner}" if owner else "by another process"
        messages.append(
            f"port {port} ({name}) is already in use {holder}; stop it, "
            f"or move {name} with {by_name[name].port_variable}=<port>"
        )
    return messages
