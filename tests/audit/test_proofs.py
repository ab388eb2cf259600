"""Inclusion and consistency proofs against a naive RFC 6962 tree; forged proofs fail."""

from __future__ import annotations

import json

import pytest

from audit import Ledger
from audit.verifier import (
    EMPTY_ROOT,
    VerificationError,
    leaf_hash,
    load_public_key,
    main,
    node_hash,
    verify_checkpoint,
    verify_consistency,
    verify_consistency_proof,
    verify_inclusion,
    verify_inclusion_proof,
)
from tests.audit.helpers import id_at, sample_event


def naive_root(leaves: list[bytes]) -> bytes:
    """MTH straight from RFC 6962 section 2.1, recursion and all."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(naive_root(leaves[:k]), naive_root(leaves[k:]))


def hexes(items: list[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in items]


@pytest.fixture
def filled(ledger: Ledger) -> Ledger:
    # Several batches so the node cache is built incrementally, not in one go.
    for lo in range(0, 70, 7):
        ledger.append_many([sample_event(i) for i in range(lo, lo + 7)])
    return ledger


def test_roots_match_the_naive_definition_for_every_size(filled):
    leaves = [leaf_hash(e) for e in filled.events()]
    for size in range(0, 71):
        assert filled.root(size) == naive_root(leaves[:size]), size


def test_inclusion_proofs_verify_for_every_leaf_and_size(filled):
    for size in (1, 2, 3, 5, 8, 13, 32, 33, 70):
        root = filled.root(size)
        for index in range(size):
            proof = filled.inclusion_proof(id_at(filled, index), size)
            assert len(proof["audit_path"]) <= max(1, (size - 1).bit_length())
            verify_inclusion(
                index, size, bytes.fromhex(proof["leaf_hash"]), hexes(proof["audit_path"]), root
            )


def test_consistency_proofs_verify_for_every_pair(filled):
    for second in (1, 2, 7, 8, 9, 31, 64, 70):
        for first in range(0, second + 1):
            proof = filled.consistency_proof(first, second)
            verify_consistency(
                first, second, filled.root(first), filled.root(second), hexes(proof["proof"])
            )


def test_forged_inclusion_proofs_fail(filled):
    root = filled.root()
    proof = filled.inclusion_proof(id_at(filled, 21))
    leaf, path = bytes.fromhex(proof["leaf_hash"]), hexes(proof["audit_path"])
    other_leaf = leaf_hash(filled.get(id_at(filled, 22)))
    bad_path = list(path)
    bad_path[2] = bytes(32)
    for args in [
        (21, 70, other_leaf, path),  # another event
        (22, 70, leaf, path),  # another position
        (21, 70, leaf, bad_path),  # a sibling changed
        (21, 70, leaf, path[:-1]),  # too short
        (21, 70, leaf, path + [bytes(32)]),  # too long
        (21, 200, leaf, path),  # a deeper tree (size is bound by the checkpoint)
    ]:
        with pytest.raises(VerificationError):
            verify_inclusion(*args, root)


def test_forged_consistency_proofs_fail(filled):
    proof = hexes(filled.consistency_proof(13, 70)["proof"])
    old, new = filled.root(13), filled.root(70)
    with pytest.raises(VerificationError):
        verify_consistency(13, 70, filled.root(12), new, proof)  # history rewritten
    with pytest.raises(VerificationError):
        verify_consistency(13, 70, old, filled.root(69), proof)
    with pytest.raises(VerificationError):
        verify_consistency(13, 70, old, new, proof[:-1])
    with pytest.raises(VerificationError):
        verify_consistency(13, 70, old, new, [bytes(32)] + proof[1:])


def test_proof_documents_against_signed_checkpoints(filled):
    key = load_public_key(filled.public_key_path.read_bytes())
    old = filled.checkpoint_for(30)
    new = filled.checkpoint()
    assert new["tree_size"] == 70 and old is not None
    verify_checkpoint(new, key)
    proof = filled.inclusion_proof(id_at(filled, 42), new["tree_size"])
    proof["event"] = filled.get(id_at(filled, 42))
    verify_inclusion_proof(proof, new, key)
    verify_consistency_proof(filled.consistency_proof(30, 70), old, new, key)

    tampered_event = {**proof, "event": {**proof["event"], "purpose": "marketing"}}
    with pytest.raises(VerificationError, match="does not hash"):
        verify_inclusion_proof(tampered_event, new, key)
    forged_cp = {**new, "tree_size": 71}
    with pytest.raises(VerificationError, match="signature"):
        verify_inclusion_proof(proof, forged_cp, key)
    with pytest.raises(VerificationError):
        verify_consistency_proof(filled.consistency_proof(20, 70), old, new, key)


def test_standalone_verifier_command(filled, tmp_path, capsys):
    cp = filled.checkpoint()
    old = filled.checkpoint_for(20)
    files = {
        "cp": cp,
        "old": old,
        "inc": filled.inclusion_proof(id_at(filled, 5), cp["tree_size"]),
        "cons": filled.consistency_proof(20, cp["tree_size"]),
    }
    for name, doc in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    args = ["--public-key", str(filled.public_key_path), "--checkpoint", str(tmp_path / "cp.json")]
    assert (
        main(
            args
            + [
                "--inclusion",
                str(tmp_path / "inc.json"),
                "--consistency",
                str(tmp_path / "cons.json"),
                "--old-checkpoint",
                str(tmp_path / "old.json"),
            ]
        )
        == 0
    )
    assert "inclusion OK" in capsys.readouterr().out
    files["inc"]["audit_path"][0] = "11" * 32
    (tmp_path / "inc.json").write_text(json.dumps(files["inc"]))
    assert main(args + ["--inclusion", str(tmp_path / "inc.json")]) == 1
    assert "FAILED" in capsys.readouterr().err
