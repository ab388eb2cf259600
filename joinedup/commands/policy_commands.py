"""CLI commands of the policy concern: `joinedup policy test` and `joinedup policy check`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from joinedup.commands.common import read_json_object


def _data_dir(home: Path | None) -> Path | None:
    """A home may override the policy data with HOME/config/policy-data/*.json."""
    if home is None:
        return None
    candidate = Path(home) / "config" / "policy-data"
    return candidate if candidate.is_dir() else None


def register(cli: click.Group) -> None:
    """Add this concern's commands to the root group."""

    @cli.group("policy")
    def policy_group() -> None:
        """Rego policies: run their tests, check a decision."""

    @policy_group.command("test")
    @click.option("--home", type=click.Path(path_type=Path), default=None,
                  help="Use this home's policy data overrides, if any.")
    @click.option("-v", "--verbose", is_flag=True, help="List every test.")
    def test_command(home: Path | None, verbose: bool) -> None:
        """Run every test_ rule of every *_test.rego through the embedded engine."""
        from policies import PolicyDataError
        from policies.testing import run_rego_tests

        try:
            results = run_rego_tests(None, _data_dir(home))
        except PolicyDataError as exc:
            raise click.ClickException(str(exc)) from exc
        failed = [r for r in results if not r.passed]
        for r in results:
            if verbose or not r.passed:
                click.echo(f"{'PASS' if r.passed else 'FAIL'} {r.file} {r.name} ({r.rows} rows)"
                           + (f": {r.detail}" if r.detail else ""))
        rows = sum(r.rows for r in results)
        click.echo(f"{len(results) - len(failed)}/{len(results)} tests passed ({rows} evaluations)")
        if failed:
            raise SystemExit(1)

    @policy_group.command("check")
    @click.option("--input", "input_file", required=True, type=click.Path(path_type=Path, dir_okay=False),
                  help="Policy input JSON (docs/CONTRACTS.md, 'Policy decisions').")
    @click.option("--home", type=click.Path(path_type=Path), default=None,
                  help="Use this home's policy engine settings and data overrides.")
    def check_command(input_file: Path, home: Path | None) -> None:
        """Print the decision for one input as JSON."""
        from policies import PolicyDataError, PolicyError, engine_from_settings

        policy_input = read_json_object(input_file, "policy input")
        try:
            if home is not None:
                from joinedup.home import HomeError, load_home

                try:
                    settings = load_home(home).settings.get("policy", {})
                except HomeError as exc:
                    raise click.ClickException(str(exc)) from exc
                engine = engine_from_settings(settings, data_dir=_data_dir(home))
            else:
                engine = engine_from_settings({})  # the default engine
            decision = engine.decide(policy_input)
        except (PolicyError, PolicyDataError) as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(json.dumps(decision.to_dict(), indent=2))
