"""The demo runs end to end (small population) and writes its outputs; the overview
renders its sections in real headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from joinedup.cli import cli

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SECTIONS = ("run", "linkage", "summaries", "referral", "areas", "audit")


@pytest.fixture(scope="module")
def demo_dir(demo_run):
    return demo_run


@pytest.mark.slow
def test_demo_runs_and_writes_its_outputs(demo_dir):
    root, output = demo_dir
    assert "joinedup demo finished" in output and "overview.html" in output
    overview = (root / "overview.html").read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in overview
    assert "failed" not in [line.split()[0] for line in output.splitlines() if line.strip()]
    # Extracts were really written by the connectors, one per agency.
    for name in ("dwp-thanet", "council-thanet", "nhs-kent", "housing-thanet"):
        manifest = json.loads((root / "outgoing" / name / "manifest.json").read_text())
        assert manifest["counts"]["accepted"] > 0
    tokens = root / "secrets" / "demo-tokens.json"
    assert oct(tokens.stat().st_mode & 0o777) == "0o600"
    # The ledger verified and recorded the consents.
    assert "verified=True" in output
    # No raw identifier of a sample person in the ledger.
    log = (root / "ledger" / "log.jsonl").read_text()
    import csv

    with (root / "sources" / "dwp_claimants.csv").open() as fh:
        first = next(csv.DictReader(fh))
    for value in first.values():
        if value and len(value) > 5 and not value.replace(".", "").isdigit():
            assert value not in log


def test_demo_refuses_to_overwrite_a_directory_that_is_not_a_demo(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    result = CliRunner().invoke(cli, ["demo", "--home", str(tmp_path), "--people", "50"])
    assert result.exit_code != 0 and "not a demo home" in result.output
    assert (tmp_path / "precious.txt").exists()


@pytest.mark.browser
@pytest.mark.slow
def test_overview_renders_in_headless_chromium(demo_dir, tmp_path):
    root, _ = demo_dir
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         (root / "overview.html").as_uri()],
        capture_output=True, text=True, timeout=90, check=True,
    ).stdout
    assert "joinedup" in dom and "demo overview" in dom
    for section in SECTIONS:
        assert f'id="{section}"' in dom
    assert "What ran" in dom and "Audit ledger" in dom
    shot = tmp_path / "overview.png"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile2'}",
         f"--screenshot={shot}", "--window-size=1200,2000", (root / "overview.html").as_uri()],
        capture_output=True, timeout=90, check=True,
    )
    assert shot.exists() and shot.stat().st_size > 10_000
