"""Automatic checkpoints (every N entries, every T seconds, at close, at the end of every CLI
command) and the governance board's witness copy of each."""

from __future__ import annotations

import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from audit import Ledger, LedgerError, LedgerSettings, checkpoint_open_ledgers, ledgers_opened
from audit.checkpoint_files import read_checkpoint_lines
from audit.verify import verify_ledger
from tests.audit.helpers import sample_event


def sizes(path: Path) -> list[int]:
    return [c["tree_size"] for c in read_checkpoint_lines(path)[0]]


def test_a_checkpoint_every_n_entries_and_one_at_close(ledger_dir, signing_key):
    with Ledger(ledger_dir, signing_key, checkpoint_every=10, checkpoint_seconds=0) as led:
        for i in range(35):
            led.append(sample_event(i))
        assert sizes(ledger_dir / "checkpoints.jsonl") == [10, 20, 30]
        led.append_many([sample_event(i) for i in range(35, 62)])  # crosses 40, 50 and 60
        assert sizes(ledger_dir / "checkpoints.jsonl") == [10, 20, 30, 40, 50, 60]
    assert sizes(ledger_dir / "checkpoints.jsonl") == [10, 20, 30, 40, 50, 60, 62]
    with Ledger(ledger_dir, signing_key, checkpoint_every=10, checkpoint_seconds=0):
        pass  # nothing new: no second checkpoint of the same size
    assert sizes(ledger_dir / "checkpoints.jsonl")[-2:] == [60, 62]


def test_a_checkpoint_when_t_seconds_have_passed_at_the_next_append(ledger_dir, signing_key):
    with Ledger(ledger_dir, signing_key, checkpoint_every=0, checkpoint_seconds=0.3) as led:
        led._arm_timer = lambda: None  # the idle timer is tested below
        led.append(sample_event(0))
        led.append(sample_event(1))
        assert sizes(ledger_dir / "checkpoints.jsonl") == []
        time.sleep(0.35)
        led.append(sample_event(2))
        assert sizes(ledger_dir / "checkpoints.jsonl") == [3]


def test_an_idle_ledger_is_checkpointed_by_its_timer(ledger_dir, signing_key, tmp_path):
    witness = tmp_path / "board"
    led = Ledger(ledger_dir, signing_key, checkpoint_every=0, checkpoint_seconds=0.2, witness=witness)
    try:
        led.append_many([sample_event(i) for i in range(3)])
        deadline = time.monotonic() + 5
        while sizes(witness / "checkpoints.jsonl") != [3]:
            assert time.monotonic() < deadline, "no timed checkpoint"
            time.sleep(0.05)
        assert sizes(ledger_dir / "checkpoints.jsonl") == [3]
    finally:
        led.close()
    assert sizes(ledger_dir / "checkpoints.jsonl") == [3]  # close found nothing uncovered


def test_every_checkpoint_is_also_written_to_the_witness(ledger_dir, signing_key, tmp_path):
    witness = tmp_path / "board" / "witness"
    with Ledger(ledger_dir, signing_key, checkpoint_every=7, witness=witness) as led:
        led.append_many([sample_event(i) for i in range(30)])
        led.checkpoint()
    assert (witness / "checkpoints.jsonl").read_bytes() == (ledger_dir / "checkpoints.jsonl").read_bytes()
    assert sizes(witness / "checkpoints.jsonl") == [7, 14, 21, 28, 30]


def test_the_witness_catches_up_after_a_checkpoint_it_missed(ledger_dir, signing_key, tmp_path):
    witness = tmp_path / "board"
    with Ledger(ledger_dir, signing_key, checkpoint_every=0) as led:  # witness not configured yet
        led.append_many([sample_event(i) for i in range(5)])
    with Ledger(ledger_dir, signing_key, checkpoint_every=0, witness=witness):
        pass
    assert sizes(witness / "checkpoints.jsonl") == [5]


def test_an_unwritable_witness_never_fails_an_append_but_fails_checkpoint_and_close(
    ledger_dir, signing_key, tmp_path
):
    witness = tmp_path / "not-a-dir"
    witness.write_text("a file where the witness directory should be")
    led = Ledger(ledger_dir, signing_key, checkpoint_every=2, witness=witness)
    ids = led.append_many([sample_event(i) for i in range(5)])  # crosses 2 and 4: logged only
    assert len(ids) == 5 and len(led) == 5
    with pytest.raises(LedgerError, match="witness"):
        led.checkpoint()
    with pytest.raises(LedgerError, match="witness"):
        led.close()
    with pytest.raises(LedgerError, match="closed"):
        led.append(sample_event(9))
    with Ledger(ledger_dir, signing_key) as again:  # the entries are durable all the same
        assert [e["event_id"] for e in again.events()] == ids


def test_checkpoint_open_ledgers_covers_only_ledgers_opened_after_the_mark(tmp_path, signing_key):
    before = Ledger(tmp_path / "before", signing_key, checkpoint_every=0)
    mark = ledgers_opened()
    after = Ledger(tmp_path / "after", signing_key, checkpoint_every=0)
    try:
        before.append(sample_event(0))
        after.append(sample_event(1))
        done = checkpoint_open_ledgers(mark)
        assert [c["tree_size"] for c in done] == [1]
        assert sizes(tmp_path / "after" / "checkpoints.jsonl") == [1]
        assert sizes(tmp_path / "before" / "checkpoints.jsonl") == []
        assert checkpoint_open_ledgers(mark) == []  # nothing new
    finally:
        before.close()
        after.close()


@pytest.mark.parametrize("fail", [False, True])
def test_every_cli_command_ends_with_a_checkpoint_at_the_witness(tmp_path, fail):
    """A command that leaves its ledger open (as the service context does), whether it
    succeeds or fails, still ends with a checkpoint covering all it appended."""
    from joinedup.cli import cli
    from joinedup.home import init_home

    home = init_home(tmp_path / "home", project_id="cp-test", witness=Path("board-witness"))
    witness = tmp_path / "home" / "board-witness"
    assert home.ledger_settings.witness == witness
    kept_open = []

    @click.command("append-and-leave-open")
    def append_and_leave_open() -> None:
        ledger = home.open_ledger()
        kept_open.append(ledger)
        ledger.append_many([sample_event(i) for i in range(3)])
        if fail:
            raise click.ClickException("the command failed after recording")

    cli.add_command(append_and_leave_open)
    try:
        result = CliRunner().invoke(cli, ["append-and-leave-open"])
    finally:
        cli.commands.pop("append-and-leave-open")
    assert result.exit_code == (1 if fail else 0), result.output
    try:
        assert sizes(witness / "checkpoints.jsonl") == [3]
        pem = home.ledger_dir.joinpath("audit-public.pem").read_bytes()
        assert verify_ledger(home.ledger_dir, pem, witness=witness).ok
    finally:
        kept_open[0].close()


def test_settings_are_validated_with_a_message_naming_the_setting(tmp_path):
    settings = LedgerSettings.from_table({"checkpoint_every": 5, "witness": "w"}, base_dir=tmp_path)
    assert settings == LedgerSettings(5, 60.0, tmp_path / "w")
    assert LedgerSettings.from_table(None) == LedgerSettings()
    for table, message in [
        ({"checkpoint_every": -1}, "checkpoint_every"),
        ({"checkpoint_every": "100"}, "checkpoint_every"),
        ({"checkpoint_seconds": "soon"}, "checkpoint_seconds"),
        ({"witness": ""}, "witness"),
        ({"witnes": "/x"}, r"unknown setting\(s\) witnes"),
    ]:
        with pytest.raises(LedgerError, match=message):
            LedgerSettings.from_table(table)


def test_a_bad_audit_table_stops_the_home_from_loading(tmp_path):
    import tomllib

    import tomli_w

    from joinedup.home import HomeError, init_home, load_home

    home = init_home(tmp_path / "home", project_id="cp-test")
    settings_path = home.root / "joinedup.toml"
    settings = tomllib.loads(settings_path.read_text())
    assert settings["audit"] == {"checkpoint_every": 100, "checkpoint_seconds": 60.0}
    settings["audit"]["checkpoint_every"] = "often"
    settings_path.write_text(tomli_w.dumps(settings))
    with pytest.raises(HomeError, match=r"joinedup.toml: \[audit\] checkpoint_every"):
        load_home(home.root)


def test_an_unwritable_witness_makes_the_cli_command_fail(tmp_path):
    from joinedup.cli import cli
    from joinedup.home import init_home

    (tmp_path / "not-a-dir").write_text("x")
    home = init_home(tmp_path / "home", project_id="cp-test", witness=tmp_path / "not-a-dir")

    @click.command("append-one")
    def append_one() -> None:
        with home.open_ledger() as ledger:
            ledger.append(sample_event(0))

    cli.add_command(append_one)
    try:
        result = CliRunner().invoke(cli, ["append-one"])
    finally:
        cli.commands.pop("append-one")
    assert result.exit_code == 1 and "witness" in str(result.exception or result.output)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_server_shutdown_signs_a_checkpoint_at_the_witness(tmp_path, workers):
    import subprocess
    import sys

    import httpx

    from joinedup.home import init_home
    from joinedup.users import open_user_store
    from tests.joinedup.conftest import LOOPBACK_SSL, free_port

    home = init_home(tmp_path / "home", project_id="cp-test", witness=Path("board"))
    token = open_user_store(home).add("adviser", "csc-margate")[1]
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("joinedup")), "serve", "--home", str(home.root),
         "--port", str(port), "--no-access-log", "--workers", str(workers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline
            try:
                httpx.get(f"{url}/v1/health", timeout=2, verify=LOOPBACK_SSL)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(3):  # refused (an adviser may not verify the ledger), and recorded
            assert httpx.get(f"{url}/v1/audit/verify", headers=headers, timeout=30,
                             verify=LOOPBACK_SSL).status_code == 403
        assert sizes(home.root / "board" / "checkpoints.jsonl") == []  # nothing due yet
    finally:
        server.terminate()
        server.wait(timeout=60)
    with Ledger(home.ledger_dir) as ledger:
        entries = len(ledger)
    assert entries >= 3
    assert sizes(home.root / "board" / "checkpoints.jsonl")[-1] == entries
