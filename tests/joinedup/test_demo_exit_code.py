"""`joinedup demo` exits non-zero when any step fails (a failure is injected into one step)."""

from __future__ import annotations

from click.testing import CliRunner

from joinedup import demo
from joinedup.cli import cli


def test_demo_exits_non_zero_when_a_step_fails(tmp_path, monkeypatch):
    def broken(state):
        raise RuntimeError("injected failure")

    steps = [(name, broken if fn is demo._synthesise else fn) for name, fn in demo._STEPS]
    monkeypatch.setattr(demo, "_STEPS", steps)
    result = CliRunner().invoke(cli, ["demo", "--home", str(tmp_path / "d"), "--people", "50"])
    assert result.exit_code != 0, result.output
    assert "did not complete" in result.output and "synthesise" in result.output
