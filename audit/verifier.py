"""Standalone verifier for the joinedup audit ledger.

This one file is all a governance board (or a citizen) needs: it imports only the Python
standard library and `cryptography`, and checks

- a signed checkpoint (Ed25519 over the canonical JSON of the checkpoint body) against
  the audit party's public key;
- an inclusion proof (RFC 9162 section 2.1.3.2) that one event is in that checkpoint's tree;
- a consistency proof (RFC 9162 section 2.1.4.2) that a later checkpoint's tree extends an
  earlier one (nothing was edited, removed or reordered in between).

Hashing is RFC 6962: leaf = SHA-256(0x00 || canonical JSON of the event),
node = SHA-256(0x01 || left || right), empty tree = SHA-256(b"").
Canonical JSON = sorted keys, no whitespace, UTF-8.

Command line (see docs/AUDIT.md):

    python -m audit.verifier --public-key audit-public.pem --checkpoint cp.json \
        [--inclusion proof.json] [--consistency proof.json --old-checkpoint old.json]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

CHECKPOINT_VERSION = "joinedup-audit-checkpoint/v1"


class VerificationError(Exception):
    """A checkpoint or proof does not verify."""


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the one byte string an event hashes to."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def leaf_hash(event: dict) -> bytes:
    return hashlib.sha256(b"\x00" + canonical_json(event)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()


# --- keys and checkpoints -------------------------------------------------------------------


def public_key_id(public_raw: bytes) -> str:
    """The key id a checkpoint names: first 16 hex of SHA-256 of the raw public key."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def load_public_key(pem: bytes):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise VerificationError("public key is not an Ed25519 key")
    return key


def checkpoint_body(checkpoint: dict) -> dict:
    """The signed part of a checkpoint (everything except the signature)."""
    return {k: v for k, v in checkpoint.items() if k != "signature"}


def verify_checkpoint(checkpoint: dict, public_key) -> None:
    """Raise VerificationError unless the checkpoint is well formed and signed by the key."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization

    for field, kind in (("tree_size", int), ("root_hash", str), ("time", str), ("key_id", str)):
        if not isinstance(checkpoint.get(field), kind):
            raise VerificationError(f"checkpoint field {field!r} missing or not a {kind.__name__}")
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise VerificationError(f"checkpoint version must be {CHECKPOINT_VERSION!r}")
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if checkpoint["key_id"] != public_key_id(raw):
        raise VerificationError(
            f"checkpoint key_id {checkpoint['key_id']} is not this public key ({public_key_id(raw)})"
        )
    try:
        signature = base64.b64decode(checkpoint.get("signature", ""), validate=True)
        public_key.verify(signature, canonical_json(checkpoint_body(checkpoint)))
    except (InvalidSignature, ValueError) as exc:
        raise VerificationError(
            f"checkpoint of size {checkpoint['tree_size']}: signature does not verify"
        ) from exc


# --- proofs ---------------------------------------------------------------------------------


def _hex_list(items: Any, what: str) -> list[bytes]:
    if not isinstance(items, list):
        raise VerificationError(f"{what} must be a list of hex hashes")
    try:
        out = [bytes.fromhex(h) for h in items]
    except (TypeError, ValueError) as exc:
        raise VerificationError(f"{what} holds a value that is not hex") from exc
    if any(len(h) != 32 for h in out):
        raise VerificationError(f"{what} holds a hash that is not 32 bytes")
    return out


def root_from_inclusion(index: int, tree_size: int, leaf: bytes, path: list[bytes]) -> bytes:
    """RFC 9162 2.1.3.2: the root implied by a leaf and its audit path."""
    if not 0 <= index < tree_size:
        raise VerificationError(f"leaf index {index} is outside a tree of size {tree_size}")
    fn, sn, r = index, tree_size - 1, leaf
    for p in path:
        if sn == 0:
            raise VerificationError("audit path is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("audit path is shorter than the tree is deep")
    return r


def verify_inclusion(
    index: int, tree_size: int, leaf: bytes, path: list[bytes], root: bytes
) -> None:
    if root_from_inclusion(index, tree_size, leaf, path) != root:
        raise VerificationError("inclusion proof does not lead to the checkpoint's root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: list[bytes]
) -> None:
    """RFC 9162 2.1.4.2: the tree of size `second` extends the tree of size `first`."""
    if not 0 <= first <= second:
        raise VerificationError(f"consistency needs 0 <= first ({first}) <= second ({second})")
    if first == second:
        if proof or first_root != second_root:
            raise VerificationError("trees of equal size must have equal roots and no proof")
        return
    if first == 0:
        if proof or first_root != EMPTY_ROOT:
            raise VerificationError("consistency from the empty tree takes an empty proof")
        return
    if first & (first - 1) == 0:  # exact power of two: the old root is a node of the new tree
        proof = [first_root, *proof]
    if not proof:
        raise VerificationError("consistency proof is empty")
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            raise VerificationError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("consistency proof is too short")
    if fr != first_root:
        raise VerificationError("consistency proof does not lead to the old root")
    if sr != second_root:
        raise VerificationError("consistency proof does not lead to the new root")


def verify_inclusion_proof(proof: dict, checkpoint: dict, public_key) -> None:
    """Check a proof document from `joinedup audit prove` against a signed checkpoint."""
    verify_checkpoint(checkpoint, public_key)
    if proof.get("tree_size") != checkpoint["tree_size"]:
        raise VerificationError(
            f"proof is for a tree of size {proof.get('tree_size')}, "
            f"checkpoint is of size {checkpoint['tree_size']}"
        )
    leaf = _hex_list([proof.get("leaf_hash")], "leaf_hash")[0]
    if "event" in proof and leaf_hash(proof["event"]) != leaf:
        raise VerificationError("the event in the proof does not hash to its leaf_hash")
    index = proof.get("leaf_index")
    if not isinstance(index, int):
        raise VerificationError("proof field 'leaf_index' missing or not an integer")
    root = bytes.fromhex(checkpoint["root_hash"])
    verify_inclusion(index, proof["tree_size"], leaf, _hex_list(proof.get("audit_path"), "audit_path"), root)


def verify_consistency_proof(proof: dict, old: dict, new: dict, public_key) -> None:
    """Check a proof document from `joinedup audit consistency` between two checkpoints."""
    verify_checkpoint(old, public_key)
    verify_checkpoint(new, public_key)
    if (proof.get("first"), proof.get("second")) != (old["tree_size"], new["tree_size"]):
        raise VerificationError(
            f"proof is between sizes {proof.get('first')} and {proof.get('second')}, "
            f"checkpoints are {old['tree_size']} and {new['tree_size']}"
        )
    verify_consistency(
        old["tree_size"],
        new["tree_size"],
        bytes.fromhex(old["root_hash"]),
        bytes.fromhex(new["root_hash"]),
        _hex_list(proof.get("proof"), "proof"),
    )


# --- command line ---------------------------------------------------------------------------


def _load_json(path: str) -> dict:
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VerificationError(f"{path}: cannot read JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise VerificationError(f"{path}: expected a JSON object")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audit.verifier", description=__doc__.split("\n\n")[0])
    parser.add_argument("--public-key", required=True, help="the audit party's public key (PEM)")
    parser.add_argument("--checkpoint", required=True, help="a signed checkpoint (JSON)")
    parser.add_argument("--inclusion", help="an inclusion proof (JSON) to check against it")
    parser.add_argument("--consistency", help="a consistency proof (JSON) from an older checkpoint")
    parser.add_argument("--old-checkpoint", help="the older checkpoint the consistency proof starts from")
    args = parser.parse_args(argv)
    try:
        key = load_public_key(Path(args.public_key).read_bytes())
        checkpoint = _load_json(args.checkpoint)
        # A bundle from `audit prove` carries its checkpoint; the one given must be it.
        verify_checkpoint(checkpoint, key)
        print(f"checkpoint OK: size {checkpoint['tree_size']} root {checkpoint['root_hash']}")
        if args.inclusion:
            proof = _load_json(args.inclusion)
            verify_inclusion_proof(proof, checkpoint, key)
            print(f"inclusion OK: event {proof.get('event_id', '?')} at index {proof['leaf_index']}")
        if args.consistency:
            if not args.old_checkpoint:
                raise VerificationError("--consistency needs --old-checkpoint")
            old = _load_json(args.old_checkpoint)
            verify_consistency_proof(_load_json(args.consistency), old, checkpoint, key)
            print(f"consistency OK: size {old['tree_size']} -> {checkpoint['tree_size']}")
    except (VerificationError, OSError, ValueError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
