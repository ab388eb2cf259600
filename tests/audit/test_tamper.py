"""verify_ledger catches each kind of tampering and names the first bad entry."""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path

import pytest

from audit import Ledger
from audit.records import decode_record, encode_record
from audit.verifier import canonical_json
from audit.verify import verify_ledger
from tests.audit.helpers import sample_event

N = 40
EVERY = 10


@pytest.fixture
def filled(ledger_dir: Path, signing_key: Path) -> tuple[Path, bytes]:
    with Ledger(ledger_dir, signing_key, checkpoint_every=EVERY) as led:
        led.append_many([sample_event(i) for i in range(N)])
        pem = led.public_key_path.read_bytes()
    return ledger_dir, pem


def lines_of(ledger_dir: Path) -> list[bytes]:
    return (ledger_dir / "log.jsonl").read_bytes().splitlines(keepends=True)


def write_lines(ledger_dir: Path, lines: list[bytes]) -> None:
    (ledger_dir / "log.jsonl").write_bytes(b"".join(lines))


def verify(ledger_dir: Path, pem: bytes, **kw):
    return verify_ledger(ledger_dir, pem, checkpoint_every=EVERY, **kw)


def test_untouched_ledger_verifies(filled):
    result = verify(*filled)
    assert result.ok and result.entries == N and result.first_bad is None
    assert result.checkpoints_checked == N // EVERY


def test_modified_entry_is_named(filled):
    ledger_dir, pem = filled
    lines = lines_of(ledger_dir)
    lines[17] = lines[17].replace(b'"purpose":"employment_support"', b'"purpose":"marketing"')
    # Keep the CRC valid so only the leaf hash can give it away.
    body = lines[17].rpartition(b"\t")[0]
    lines[17] = body + b"\t" + b"%08x" % zlib.crc32(body) + b"\n"
    write_lines(ledger_dir, lines)
    result = verify(ledger_dir, pem)
    assert not result.ok
    assert result.first_bad == 17
    assert result.to_dict()["first_bad_entry"].startswith("ev-000000000017-")
    assert any("modified" in p for p in result.problems)


def test_modified_entry_with_rewritten_leaf_hash_is_caught_by_checkpoints(filled):
    ledger_dir, pem = filled
    lines = lines_of(ledger_dir)
    record = decode_record(lines[23])
    forged = {**record.event, "purpose": "marketing"}
    lines[23] = encode_record(23, forged)[0]  # a fully consistent record, leaf and all
    write_lines(ledger_dir, lines)
    result = verify(ledger_dir, pem)
    assert not result.ok
    assert result.first_bad == 20  # the last good checkpoint covers 0..19
    assert any("root does not match" in p for p in result.problems)


def test_deleted_entry_is_named(filled):
    ledger_dir, pem = filled
    lines = lines_of(ledger_dir)
    del lines[8]
    write_lines(ledger_dir, lines)
    result = verify(ledger_dir, pem)
    assert not result.ok and result.first_bad == 8
    assert any("deleted" in p for p in result.problems)


def test_inserted_entry_is_named(filled):
    ledger_dir, pem = filled
    lines = lines_of(ledger_dir)
    fake = {**sample_event(999), "event_id": "ev-0000000012"}
    lines.insert(12, encode_record(12, fake)[0])
    write_lines(ledger_dir, lines)
    result = verify(ledger_dir, pem)
    assert not result.ok and result.first_bad == 12
    assert any("inserted" in p for p in result.problems)


def test_reordered_entries_are_named(filled):
    ledger_dir, pem = filled
    lines = lines_of(ledger_dir)
    lines[30], lines[31] = lines[31], lines[30]
    write_lines(ledger_dir, lines)
    result = verify(ledger_dir, pem)
    assert not result.ok and result.first_bad == 30


def test_truncated_log_is_caught(filled):
    ledger_dir, pem = filled
    write_lines(ledger_dir, lines_of(ledger_dir)[:35])
    result = verify(ledger_dir, pem)
    assert not result.ok and result.first_bad == 35
    assert any("truncated" in p for p in result.problems)


def test_truncation_that_also_drops_checkpoints_is_caught_by_a_trusted_checkpoint(filled):
    ledger_dir, pem = filled
    trusted = json.loads((ledger_dir / "checkpoints.jsonl").read_bytes().splitlines()[-1])
    write_lines(ledger_dir, lines_of(ledger_dir)[:25])
    cps = (ledger_dir / "checkpoints.jsonl").read_bytes().splitlines(keepends=True)
    (ledger_dir / "checkpoints.jsonl").write_bytes(b"".join(cps[:2]))
    # Cut back to a consistent point, the directory alone cannot show it (documented)...
    assert verify(ledger_dir, pem).ok
    # ...which is why the board keeps checkpoints: its copy of the latest one names the cut.
    result = verify(ledger_dir, pem, trusted_checkpoints=[trusted])
    assert not result.ok and result.first_bad == 25
    assert any("trusted checkpoint #1 covers 40 entries" in p for p in result.problems)


def test_forged_checkpoint_is_caught(filled):
    ledger_dir, pem = filled
    path = ledger_dir / "checkpoints.jsonl"
    cps = [json.loads(line) for line in path.read_bytes().splitlines()]
    cps[1]["root_hash"] = "00" * 32  # claims a different tree, keeps the old signature
    path.write_bytes(b"".join(canonical_json(c) + b"\n" for c in cps))
    result = verify(ledger_dir, pem)
    assert not result.ok
    assert any("checkpoint #2: forged" in p for p in result.problems)


def test_checkpoint_signed_by_another_key_is_caught(filled, tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    ledger_dir, pem = filled
    path = ledger_dir / "checkpoints.jsonl"
    cps = [json.loads(line) for line in path.read_bytes().splitlines()]
    body = {k: v for k, v in cps[0].items() if k != "signature"}
    cps[0]["signature"] = base64.b64encode(
        Ed25519PrivateKey.generate().sign(canonical_json(body))
    ).decode()
    path.write_bytes(b"".join(canonical_json(c) + b"\n" for c in cps))
    result = verify(ledger_dir, pem)
    assert not result.ok and any("checkpoint #1: forged" in p for p in result.problems)


def test_wrong_public_key_fails_every_checkpoint(filled, tmp_path):
    from tests.audit.helpers import write_signing_key

    ledger_dir, _ = filled
    with Ledger(tmp_path / "other", write_signing_key(tmp_path / "other.key")) as other:
        other_pem = other.public_key_path.read_bytes()
    result = verify(ledger_dir, other_pem)
    assert not result.ok
    assert sum("forged" in p for p in result.problems) == N // EVERY


def test_deleted_checkpoints_file_is_caught(filled):
    ledger_dir, pem = filled
    (ledger_dir / "checkpoints.jsonl").unlink()
    result = verify(ledger_dir, pem)
    assert not result.ok and any("checkpoints missing" in p for p in result.problems)


def test_verify_flags_a_stored_event_that_carries_a_raw_identifier(filled):
    ledger_dir, pem = filled
    lines = lines_of(ledger_dir)
    record = decode_record(lines[3])
    lines[3] = encode_record(3, {**record.event, "note": "AB123456C"})[0]
    write_lines(ledger_dir, lines)
    result = verify(ledger_dir, pem)
    assert any("privacy" in n and "National Insurance" in n for n in result.notices)


# --- against the governance board's witness ---------------------------------------------------
# The ledger is written as a deployment writes it: default checkpoint settings, several
# commands (each opens the ledger, appends, closes), a witness directory. Every kind of
# tampering below is caught by `verify` given the witness; the nastiest ones (the directory
# cut back to a self-consistent state) are caught only with it.

WITNESSED_ENTRIES = 737


@pytest.fixture
def witnessed(tmp_path: Path, signing_key: Path) -> tuple[Path, bytes, Path]:
    ledger_dir, witness = tmp_path / "ledger", tmp_path / "board-witness"
    done = 0
    for batch in (100, 250, 1, 200, 150, 36):  # six commands
        with Ledger(ledger_dir, signing_key, witness=witness) as led:
            for lo in range(done, done + batch, 50):
                led.append_many([sample_event(i) for i in range(lo, min(done + batch, lo + 50))])
            done += batch
            pem = led.public_key_path.read_bytes()
    assert done == WITNESSED_ENTRIES
    return ledger_dir, pem, witness


def cut_checkpoints_to(ledger_dir: Path, entries: int) -> None:
    """What an attacker does after cutting the log: drop the checkpoints beyond the cut."""
    path = ledger_dir / "checkpoints.jsonl"
    kept = [line for line in path.read_bytes().splitlines(keepends=True)
            if json.loads(line)["tree_size"] <= entries]
    path.write_bytes(b"".join(kept))


def _modify(ledger_dir: Path) -> None:
    lines = lines_of(ledger_dir)
    record = decode_record(lines[650])
    lines[650] = encode_record(650, {**record.event, "purpose": "marketing"})[0]  # leaf and CRC too
    write_lines(ledger_dir, lines)


def _delete(ledger_dir: Path) -> None:
    lines = lines_of(ledger_dir)
    del lines[300]
    write_lines(ledger_dir, lines)


def _insert(ledger_dir: Path) -> None:
    lines = lines_of(ledger_dir)
    record = decode_record(lines[400])
    lines.insert(401, encode_record(401, {**record.event, "purpose": "marketing"})[0])
    write_lines(ledger_dir, lines)


def _reorder(ledger_dir: Path) -> None:
    lines = lines_of(ledger_dir)
    lines[500], lines[501] = lines[501], lines[500]
    write_lines(ledger_dir, lines)


def _truncate(by: int):
    def cut(ledger_dir: Path) -> None:
        write_lines(ledger_dir, lines_of(ledger_dir)[:-by])
        cut_checkpoints_to(ledger_dir, WITNESSED_ENTRIES - by)  # and hide it in the directory

    return cut


def _forge_checkpoint(ledger_dir: Path) -> None:
    path = ledger_dir / "checkpoints.jsonl"
    cps = [json.loads(line) for line in path.read_bytes().splitlines()]
    cps[-1] = {**cps[-1], "root_hash": "ab" * 32}
    path.write_bytes(b"".join(canonical_json(c) + b"\n" for c in cps))


def _delete_checkpoints_file(ledger_dir: Path) -> None:
    (ledger_dir / "checkpoints.jsonl").unlink()


@pytest.mark.parametrize(
    "tamper,expected",
    [
        (_modify, "root does not match"),
        (_delete, "deleted"),
        (_insert, "inserted"),
        (_reorder, "holds index"),
        (_truncate(1), "witness checkpoint #"),
        (_truncate(500), "witness checkpoint #"),
        (_forge_checkpoint, "forged"),
        (_delete_checkpoints_file, "lacks"),
    ],
    ids=["modify", "delete", "insert", "reorder", "truncate-1", "truncate-500", "forged-checkpoint",
         "deleted-checkpoints-file"],
)
def test_each_tampering_is_caught_against_the_witness(witnessed, tamper, expected):
    ledger_dir, pem, witness = witnessed
    assert verify_ledger(ledger_dir, pem, witness=witness).ok
    tamper(ledger_dir)
    result = verify_ledger(ledger_dir, pem, witness=witness)
    assert not result.ok
    assert any(expected in p for p in result.problems), result.problems


@pytest.mark.parametrize("by", [1, 2, 37, 500, WITNESSED_ENTRIES])
def test_a_cut_of_any_length_hidden_in_the_directory_shows_only_against_the_witness(witnessed, by):
    ledger_dir, pem, witness = witnessed
    _truncate(by)(ledger_dir)
    alone = verify_ledger(ledger_dir, pem, checkpoint_every=None)
    assert alone.ok, alone.problems  # self-consistent: the directory alone cannot show it
    result = verify_ledger(ledger_dir, pem, witness=witness)
    assert not result.ok and result.first_bad == WITNESSED_ENTRIES - by
    assert any(f"covers {WITNESSED_ENTRIES} entries but the log holds {WITNESSED_ENTRIES - by}" in p
               for p in result.problems)


def test_a_forged_checkpoint_at_the_witness_is_caught(witnessed):
    ledger_dir, pem, witness = witnessed
    path = witness / "checkpoints.jsonl"
    last = json.loads(path.read_bytes().splitlines()[-1])
    with open(path, "ab") as fh:  # claims a longer ledger, with a signature it cannot make
        fh.write(canonical_json({**last, "tree_size": last["tree_size"] + 10}) + b"\n")
    result = verify_ledger(ledger_dir, pem, witness=witness)
    assert not result.ok and any("witness checkpoint #" in p and "forged" in p for p in result.problems)


def test_a_deleted_witness_file_is_reported(witnessed):
    ledger_dir, pem, witness = witnessed
    (witness / "checkpoints.jsonl").unlink()
    result = verify_ledger(ledger_dir, pem, witness=witness)
    assert not result.ok and any("holds no checkpoint" in p for p in result.problems)


def test_audit_verify_uses_the_configured_witness_by_default(tmp_path):
    from click.testing import CliRunner

    from joinedup.cli import cli
    from joinedup.home import init_home

    home = init_home(tmp_path / "home", project_id="t", witness=Path("board"))
    with home.open_ledger() as led:
        led.append_many([sample_event(i) for i in range(30)])
    runner = CliRunner()
    result = runner.invoke(cli, ["audit", "verify", "--home", str(home.root)])
    assert result.exit_code == 0 and "1 at the witness" in result.output, result.output
    write_lines(home.ledger_dir, lines_of(home.ledger_dir)[:-1])
    cut_checkpoints_to(home.ledger_dir, 29)
    result = runner.invoke(cli, ["audit", "verify", "--home", str(home.root)])
    assert result.exit_code == 1
    assert "witness checkpoint #1 covers 30 entries but the log holds 29" in result.output
