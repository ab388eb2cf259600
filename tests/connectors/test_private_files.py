"""What connectors write is owner-only (files 0600, directories 0700), and what a killed
run leaves behind is removed by the next run (connectors.files)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from connectors import files
from connectors.extract import ExtractError, pseudonymise_extract
from connectors.files import (
    OutputBusy,
    make_private_dir,
    make_tree_private,
    open_private,
    replace_dir_atomically,
    staging_dir,
    tidy_leftovers,
    write_file_atomic,
)
from connectors.mapping import load_mapping
from joinedup.home import init_home
from tests.connectors.extract_fixtures import keyring, person_rows, write_csv, write_mapping

REPO = Path(__file__).resolve().parents[2]
JOINEDUP = Path(sys.executable).parent / "joinedup"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def open_umask():
    """The most permissive usual umask (022), as a shell might have it."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def source(tmp_path: Path):
    csv_path = write_csv(tmp_path / "people.csv", person_rows(60))
    return csv_path, load_mapping(write_mapping(tmp_path / "map.toml"))


def run(source, out: Path, **kw):
    csv_path, mapping = source
    return pseudonymise_extract(keyring(), "csv", "src", str(csv_path), mapping, out, **kw)


def test_extract_files_are_0600_and_directories_0700(source, tmp_path, open_umask):
    out = tmp_path / "new-parent" / "extract"
    run(source, out)
    assert mode(out.parent) == 0o700  # created by the extract
    assert mode(out) == 0o700
    written = list(out.iterdir())
    assert {p.name for p in written} >= {"keymap.parquet", "linkage.parquet", "manifest.json", "rejects.csv"}
    assert {p.name: mode(p) for p in written} == {p.name: 0o600 for p in written}
    # Replacing keeps it so.
    run(source, out)
    assert mode(out) == 0o700 and all(mode(p) == 0o600 for p in out.iterdir())


def test_existing_parent_directory_keeps_its_mode(source, tmp_path, open_umask):
    parent = tmp_path / "shared"
    parent.mkdir(mode=0o755)
    os.chmod(parent, 0o755)
    run(source, parent / "extract")
    assert mode(parent) == 0o755
    assert mode(parent / "extract") == 0o700


def test_helpers_make_owner_only_files_even_over_open_ones(tmp_path, open_umask):
    target = tmp_path / "a" / "b" / "c"
    make_private_dir(target)
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", target)] == [0o700] * 3

    path = tmp_path / "doc.json"
    path.write_text("{}")
    os.chmod(path, 0o644)
    write_file_atomic(path, b'{"a": 1}')
    assert mode(path) == 0o600 and path.read_text() == '{"a": 1}'

    log = tmp_path / "log.txt"
    log.write_text("old\n")
    os.chmod(log, 0o666)
    with open_private(log, "a") as fh:
        fh.write("new\n")
    assert mode(log) == 0o600 and log.read_text() == "old\nnew\n"

    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_text("x")
    (tree / "link").symlink_to("/etc/hostname")
    before = mode(Path("/etc/hostname"))
    make_tree_private(tree)
    assert (mode(tree), mode(tree / "sub"), mode(tree / "sub" / "f")) == (0o700, 0o700, 0o600)
    assert mode(Path("/etc/hostname")) == before  # a link is not followed


def test_private_umask_covers_files_libraries_create(tmp_path, open_umask):
    with files.private_umask():
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "f").write_text("x")
    assert (mode(tmp_path / "d"), mode(tmp_path / "d" / "f")) == (0o700, 0o600)
    (tmp_path / "after").write_text("x")
    assert mode(tmp_path / "after") == 0o644  # the umask is back


def _killed_run(source, out: Path, tmp_path: Path) -> None:
    """An extract process that dies (no cleanup at all) half-way through writing (the Python
    engine's writer; the native engine's staging is the same directory, tested in
    test_native_engine.py)."""
    csv_path, _ = source
    script = f"""
import os, connectors.extract as m
from connectors.mapping import load_mapping
from tests.connectors.extract_fixtures import keyring
real = m._write_batch
calls = []
def dying(*a, **k):
    calls.append(1)
    if len(calls) == 2:
        os._exit(3)  # like kill -9: no finally, no atexit
    return real(*a, **k)
m._write_batch = dying
m.pseudonymise_extract(keyring(), "csv", "src", {str(csv_path)!r},
    load_mapping({str(tmp_path / 'map.toml')!r}), {str(out)!r}, batch_size=10, engine="python")
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO)
    assert proc.returncode == 3


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def test_the_next_run_removes_what_a_killed_run_left(source, tmp_path):
    out = tmp_path / "extract"
    run(source, out)
    _killed_run(source, out, tmp_path)
    first = [n for n in leftovers(out) if ".tmp-" in n]
    assert len(first) == 1, first  # a half-written staging directory
    _killed_run(source, out, tmp_path)  # the next run, killed too, removed the first one
    second = [n for n in leftovers(out) if ".tmp-" in n]
    assert len(second) == 1 and second != first, second
    assert (out / "manifest.json").exists()  # the old output is untouched

    run(source, out)
    assert leftovers(out) == []
    assert (out / "manifest.json").exists()


def test_the_next_cli_run_removes_what_a_killed_run_left(source, tmp_path):
    home = tmp_path / "home"
    init_home(home, project_id="proj-tidy")
    out = tmp_path / "extract"
    _killed_run(source, out, tmp_path)
    assert [n for n in leftovers(out) if ".tmp-" in n]
    assert not out.exists()
    csv_path, _ = source
    done = subprocess.run(
        [str(JOINEDUP), "extract", "--home", str(home), "--kind", "csv", "--source-name", "src",
         "--input", str(csv_path), "--mapping", str(tmp_path / "map.toml"), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert leftovers(out) == []
    assert mode(out) == 0o700 and all(mode(p) == 0o600 for p in out.iterdir())


def test_a_crash_between_the_two_renames_gets_the_old_output_back(tmp_path):
    """Where the file system cannot swap two names at once, the old output is moved aside
    first; if the run dies right then, the next run puts it back before anything else."""
    out = tmp_path / "extract"
    old = tmp_path / f".{out.name}.old-deadbeef"
    old.mkdir()
    (old / "manifest.json").write_text("old")
    half = tmp_path / f".{out.name}.tmp-cafebabe"
    half.mkdir()
    with staging_dir(out) as tmp:
        assert (out / "manifest.json").read_text() == "old"
        assert not old.exists() and not half.exists()
        assert mode(tmp) == 0o700
        (tmp / "manifest.json").write_text("new")
        replace_dir_atomically(tmp, out)
    assert (out / "manifest.json").read_text() == "new"
    assert leftovers(out) == []


def test_replacing_without_a_swap_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    out = tmp_path / "extract"
    for text in ("one", "two"):
        with staging_dir(out) as tmp:
            (tmp / "manifest.json").write_text(text)
            replace_dir_atomically(tmp, out)
    assert (out / "manifest.json").read_text() == "two"
    assert leftovers(out) == []


def test_the_swap_exchanges_both_names_or_touches_neither(tmp_path):
    out = tmp_path / "extract"
    out.mkdir()
    (out / "f").write_text("old")
    tmp = tmp_path / "new"
    tmp.mkdir()
    (tmp / "f").write_text("new")
    swapped = files._exchange(tmp, out)
    expected = ("new", "old") if swapped else ("old", "new")
    assert ((out / "f").read_text(), (tmp / "f").read_text()) == expected


def test_a_second_writer_of_the_same_output_is_refused(source, tmp_path):
    out = tmp_path / "extract"
    with staging_dir(out):
        with pytest.raises(OutputBusy):
            with staging_dir(out):
                pass
        with pytest.raises(ExtractError, match="another process is writing"):
            run(source, out)
    run(source, out)  # free again
    assert leftovers(out) == []


def test_a_failed_run_removes_its_staging_directory(tmp_path):
    out = tmp_path / "extract"
    with pytest.raises(RuntimeError):
        with staging_dir(out) as tmp:
            (tmp / "part").write_text("x")
            raise RuntimeError("boom")
    assert leftovers(out) == [] and not out.exists()
    assert tidy_leftovers(out) == []


def test_synthetic_sources_are_owner_only_and_a_killed_runs_staging_is_removed(tmp_path, open_umask):
    from connectors.synth import write_synthetic_sources

    out = tmp_path / "sources"
    out.mkdir()
    left = out / ".synth.tmp-0badf00d"  # what a killed run leaves
    (left / "nhs").mkdir(parents=True)
    write_synthetic_sources(out, 30, seed=2, workers=1)
    assert not left.exists()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    assert mode(out) == 0o700
    for p in out.rglob("*"):
        assert mode(p) == (0o700 if p.is_dir() else 0o600), p
