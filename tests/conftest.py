"""Fixtures shared by every test folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _demo(tmp_path_factory, name: str, people: int) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp(name) / "joinedup-demo"
    joinedup = Path(sys.executable).parent / "joinedup"
    result = subprocess.run([str(joinedup), "demo", "--home", str(root), "--people", str(people)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-6000:]
    return root, result.stdout


@pytest.fixture(scope="session")
def demo_home_as_made(tmp_path_factory) -> tuple[Path, str]:
    """ONE real demo home (synth → extract → ingest → link → ...), made by `joinedup demo` in
    its own process as a user would run it: (its root, the demo's console output). Nothing
    writes to it: a test takes a copy (shutil.copytree) instead of running the demo again."""
    return _demo(tmp_path_factory, "demo-as-made", 300)


@pytest.fixture(scope="session")
def review_demo_home(tmp_path_factory) -> tuple[Path, str]:
    """A demo home whose run has links to review (as `demo_home_as_made`; take a copy). At
    300 people every blocked pair is one person's, the fit on them is sure of each, and the
    review queue is empty; at 600 the run holds ~126 links between 0.1 and 0.99."""
    return _demo(tmp_path_factory, "review-demo", 600)


@pytest.fixture(scope="session")
def demo_run(demo_home_as_made, tmp_path_factory) -> tuple[Path, str]:
    """A copy of the demo home shared by the service tests that need linked people (some of
    them add users and consents to it); (its root, the demo's console output)."""
    made, output = demo_home_as_made
    root = tmp_path_factory.mktemp("demo") / "joinedup-demo"
    shutil.copytree(made, root)
    return root, output
