"""The processes of the stack and the Procfile generated from them."""

from __future__ import annotations

from devstack import REPO_ROOT
from devstack.processes import PROCESSES, render_procfile
from tests.support.runner import run_devstack


def test_procfile_runs_what_the_runner_runs():
    assert (REPO_ROOT / "Procfile").read_text() == render_procfile()


def test_procfile_option_prints_the_procfile():
    result = run_devstack({}, "--procfile")
    assert result.returncode == 0, result.stderr
    assert result.stdout == render_procfile()


def test_processes_use_the_documented_ports():
    assert {p.name: p.default_port for p in PROCESSES} == {
        "portfolio": 8003,
        "gateway": 8000,
        "frontend": 8080,
        "trading": 8101,
        "market": 8102,
        "strategy": 8103,
        "token": 8104,
        "execution": 8105,
        "monitoring": 8106,
    }


def test_every_service_module_is_in_the_checkout():
    assert all(process.present for process in PROCESSES)


def test_a_stub_is_told_its_name_and_signals_reach_uvicorn():
    trading = next(p for p in PROCESSES if p.name == "trading")
    assert trading.command(8101).startswith(
        "exec env STUB_SERVICE_NAME=trading python -m uvicorn services.stub.app:app "
    )
