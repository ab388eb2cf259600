"""Fixtures shared by every test folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_home_as_made(tmp_path_factory) -> tuple[Path, str]:
    """ONE real demo home (synth → extract → ingest → link → ...), made by `joinedup demo` in
    its own process as a user would run it: (its root, the demo's console output). Nothing
    writes to it: a test takes a copy (shutil.copytree) instead of running the demo again."""
    root = tmp_path_factory.mktemp("demo-as-made") / "joinedup-demo"
    joinedup = Path(sys.executable).parent / "joinedup"
    result = subprocess.run([str(joinedup), "demo", "--home", str(root), "--people", "300"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-6000:]
    return root, result.stdout


@pytest.fixture(scope="session")
def demo_run(demo_home_as_made, tmp_path_factory) -> tuple[Path, str]:
    """A copy of the demo home shared by the service tests that need linked people (some of
    them add users and consents to it); (its root, the demo's console output)."""
    made, output = demo_home_as_made
    root = tmp_path_factory.mktemp("demo") / "joinedup-demo"
    shutil.copytree(made, root)
    return root, output
