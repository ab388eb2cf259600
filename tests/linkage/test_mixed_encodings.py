"""`joinedup link` refuses extracts whose postcode views of the names were salted
differently (`[encoding] name_postcode_salt`): those filters would not compare, and the
run would quietly lose every pair that needs them."""

from __future__ import annotations

from click.testing import CliRunner

from connectors.extract import pseudonymise_extract
from connectors.synth import write_synthetic_sources
from joinedup.cli import cli
from joinedup.home import init_home


def test_link_refuses_extracts_with_different_name_postcode_salts(tmp_path):
    home = init_home(tmp_path / "home")
    write_synthetic_sources(tmp_path / "src", 300, 5)
    dwp, nhs = tmp_path / "dwp", tmp_path / "nhs"
    pseudonymise_extract(home.keyring(), "dwp", "dwp", str(tmp_path / "src" / "dwp_claimants.csv"), None, dwp)
    pseudonymise_extract(home.keyring(), "nhs", "nhs", str(tmp_path / "src" / "nhs"), None, nhs,
                         settings={"name_postcode_salt": "postcode+other-name"})
    runner = CliRunner()
    args = ["link", "--home", str(home.root), "--extracts", str(dwp), "--extracts", str(nhs)]
    res = runner.invoke(cli, [*args, "--out", "mixed"])
    assert res.exit_code == 1, res.output
    assert "name_postcode_salt" in res.output and "previous run untouched" in res.output
    assert not (home.runs_dir / "mixed").exists()
    # One setting for both: linked.
    pseudonymise_extract(home.keyring(), "nhs", "nhs", str(tmp_path / "src" / "nhs"), None, nhs)
    res = runner.invoke(cli, [*args, "--out", "same"])
    assert res.exit_code == 0, res.output
