"""`python -m bench.tracing`: prints the CPU per request with tracing off and on."""

import re

from bench.tracing import main


def test_prints_both_figures_and_what_tracing_adds(capsys):
    assert main(["--requests", "200", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    off = float(re.search(r"tracing off:\s+([\d.]+) µs", out).group(1))
    on = float(re.search(r"tracing on:\s+([\d.]+) µs", out).group(1))
    assert on > off  # a span costs something; the off path is a flag check
    assert "added by tracing on:" in out
