"""Ports: a busy or malformed one is refused before anything starts, in one line each."""

from __future__ import annotations

import os
import socket

import pytest

from devstack.errors import StackError
from devstack.ports import free_port, port_in_use, resolve_ports
from tests.support.runner import run_devstack


def test_port_in_use_is_refused_naming_the_port_and_the_process(stack_env, env_file, ports):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports["gateway"]))
        holder.listen()
        result = run_devstack(stack_env, "--env-file", str(env_file))
    assert result.returncode == 2
    assert (
        f"devstack: port {ports['gateway']} (gateway) is already in use by pid {os.getpid()}"
    ) in result.stderr
    assert "LCT_GATEWAY_PORT" in result.stderr
    assert "started" not in result.stdout


def test_every_busy_port_gets_its_own_line(stack_env, env_file, ports):
    with socket.socket() as first, socket.socket() as second:
        for holder, name in ((first, "trading"), (second, "monitoring")):
            holder.bind(("127.0.0.1", ports[name]))
            holder.listen()
        result = run_devstack(stack_env, "--env-file", str(env_file))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2
    assert len(lines) == 2
    assert f"port {ports['trading']} (trading)" in lines[0]
    assert f"port {ports['monitoring']} (monitoring)" in lines[1]


@pytest.mark.parametrize("value", ["http", "0", "70000", "-1"])
def test_port_variable_that_is_not_a_port_is_refused(stack_env, env_file, value):
    result = run_devstack({**stack_env, "LCT_FRONTEND_PORT": value}, "--env-file", str(env_file))
    assert result.returncode == 2
    assert f"LCT_FRONTEND_PORT={value} is not a TCP port" in result.stderr


def test_two_processes_on_one_port_are_refused(stack_env, env_file, ports):
    env = {**stack_env, "LCT_MARKET_PORT": str(ports["trading"])}
    result = run_devstack(env, "--env-file", str(env_file))
    assert result.returncode == 2
    assert f"market and trading are both set to port {ports['trading']}" in result.stderr


def test_a_port_variable_moves_one_process():
    ports = resolve_ports({"LCT_GATEWAY_PORT": " 9000 "})
    assert ports["gateway"] == 9000
    assert ports["frontend"] == 8080
    with pytest.raises(StackError, match="frontend and gateway are both set to port 8080"):
        resolve_ports({"LCT_GATEWAY_PORT": "8080"})


def test_a_free_port_is_free():
    assert not port_in_use(free_port())
