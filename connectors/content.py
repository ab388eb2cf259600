"""Content rows: AES-GCM encryption of each accepted record's coded indicators.

One ciphertext per record, so the collation engine can decrypt exactly the rows of the
refs a permitted request needs. The associated data `f"{extract_id}|{ref}"` binds a
ciphertext to its extract and row: a row moved to another ref or extract fails to decrypt.

Padding: a plaintext is padded with trailing spaces (valid JSON whitespace) up to the
smallest of `SIZE_CLASSES` that holds it (then to a multiple of the largest class), so a
ciphertext's length tells only its size class, not how many indicators a row has or which
(bench/bench_privacy.py measures what a length-based attacker still learns). The class
bounds are chosen so that nearly every row of every agency fits the first class.

`decrypted_row_count()` counts every row decrypted in this process, so tests can show
that a request decrypted only the rows it needed.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
SIZE_CLASSES = (1024, 4096, 16384)


def padded(data: bytes, classes: tuple[int, ...] = SIZE_CLASSES) -> bytes:
    """`data` with trailing spaces up to its size class (no padding when `classes` is empty)."""
    if not classes:
        return data
    n = len(data)
    for size in classes:
        if n <= size:
            return data + b" " * (size - n)
    top = classes[-1]
    return data + b" " * (-n % top)


class ContentError(Exception):
    """A content row cannot be decrypted (wrong key, extract, ref, or tampered)."""


_lock = threading.Lock()
_decrypted = 0


def decrypted_row_count() -> int:
    """Rows decrypted by `decrypt_rows` in this process since the last reset."""
    return _decrypted


def reset_decrypted_row_count() -> None:
    global _decrypted
    with _lock:
        _decrypted = 0


def _aad(extract_id: str, ref: str) -> bytes:
    return f"{extract_id}|{ref}".encode()


def content_plaintext(
    ref: str,
    source: str,
    kind: str,
    area: Mapping[str, str | None],
    indicators: Iterable[Mapping[str, Any]],
) -> dict[str, Any]:
    """The plaintext document of one content row (see docs/CONTRACTS.md)."""
    return {
        "ref": ref,
        "source": source,
        "kind": kind,
        "area": {
            "postcode_sector": area.get("postcode_sector"),
            "postcode_district": area.get("postcode_district"),
        },
        "indicators": [
            {"code": i["code"], "value": i.get("value"), "date": i.get("date")} for i in indicators
        ],
    }


def encrypt_rows(
    key: bytes, extract_id: str, documents: Iterable[Mapping[str, Any]], classes: tuple[int, ...] = SIZE_CLASSES,
) -> list[dict[str, Any]]:
    """Encrypt plaintext documents (each with a `ref`) into {ref, nonce, ciphertext} rows."""
    aes = AESGCM(key)
    rows = []
    for doc in documents:
        ref = doc["ref"]
        nonce = os.urandom(NONCE_BYTES)
        data = padded(json.dumps(doc, separators=(",", ":"), sort_keys=True).encode(), classes)
        rows.append({"ref": ref, "nonce": nonce, "ciphertext": aes.encrypt(nonce, data, _aad(extract_id, ref))})
    return rows


_FRAGMENTS: dict[tuple[Any, ...], str] = {}
_FRAGMENT_LIMIT = 200_000


class _IndicatorParts:
    """What `_fragment` reads of an indicator (code, value, date)."""

    __slots__ = ("code", "value", "date")

    def __init__(self, code: str, value: Any, date: Any):
        self.code, self.value, self.date = code, value, date


def _fragment(i: Any) -> str:
    return json.dumps(
        {"code": i.code, "date": i.date.isoformat() if i.date is not None else None, "value": i.value},
        separators=(",", ":"), sort_keys=True)


def indicators_json(indicators: Iterable[Any]) -> str:
    """The plaintext's "indicators" list as compact sorted JSON, from `Indicator`s.

    Each distinct indicator's JSON is made once (indicators repeat across rows) and the
    list joined from them, which is what one `json.dumps` of the list gives. Floats are
    not cached: 0.0 and -0.0 are equal keys but print differently."""
    frags = []
    for i in indicators:
        value = i.value
        if value.__class__ is float:
            # Amounts rarely repeat: the cached (code, date) prefix and the float's repr,
            # which is how json.dumps writes a finite float (NaN and infinities it spells).
            if value - value != 0.0:
                frags.append(_fragment(i))
                continue
            key = (i.code, i.date, float)
            prefix = _FRAGMENTS.get(key)
            if prefix is None:
                if len(_FRAGMENTS) >= _FRAGMENT_LIMIT:
                    _FRAGMENTS.clear()
                whole = _fragment(_IndicatorParts(i.code, 0.0, i.date))
                prefix = _FRAGMENTS[key] = whole[: -len("0.0}")]
            frags.append(f"{prefix}{value!r}}}")
            continue
        key = (i.code, i.date, value.__class__, value)  # the class keeps True apart from 1
        frag = _FRAGMENTS.get(key)
        if frag is None:
            if len(_FRAGMENTS) >= _FRAGMENT_LIMIT:
                _FRAGMENTS.clear()
            frag = _FRAGMENTS[key] = _fragment(i)
        frags.append(frag)
    return f"[{','.join(frags)}]"


def encrypt_batch(
    key: bytes,
    extract_id: str,
    source: str,
    kind: str,
    refs: list[str],
    area_json: list[str],
    indicator_json: list[str] | None,
    classes: tuple[int, ...] = SIZE_CLASSES,
) -> tuple[list[bytes], list[bytes]]:
    """Nonces and ciphertexts of a batch of content rows (the fast path of `encrypt_rows`).

    The plaintext is assembled from pre-serialised parts and is byte for byte what
    `json.dumps(content_plaintext(...), separators=(",", ":"), sort_keys=True)` gives
    (keys in sorted order: area, indicators, kind, ref, source), then padded to its size
    class; refs are hex.
    """
    aes = AESGCM(key)
    n = len(refs)
    pool = os.urandom(NONCE_BYTES * n)
    nonces = [pool[NONCE_BYTES * j : NONCE_BYTES * (j + 1)] for j in range(n)]
    tail = f',"source":{json.dumps(source)}}}'
    kind_js = json.dumps(kind)
    inds = indicator_json or ["[]"] * n
    aad_prefix = f"{extract_id}|"
    encrypt = aes.encrypt
    pad = padded
    ciphertexts = [
        encrypt(
            nonce,
            pad(f'{{"area":{area},"indicators":{ind},"kind":{kind_js},"ref":"{ref}"{tail}'.encode(), classes),
            (aad_prefix + ref).encode(),
        )
        for nonce, ref, area, ind in zip(nonces, refs, area_json, inds, strict=True)
    ]
    return nonces, ciphertexts


def decrypt_rows(key: bytes, extract_id: str, rows: Iterable[Mapping[str, Any]] | Any) -> list[dict[str, Any]]:
    """Decrypt content rows ({ref, nonce, ciphertext}, or a pyarrow table of them)."""
    global _decrypted
    if hasattr(rows, "to_pylist"):
        rows = rows.to_pylist()
    aes = AESGCM(key)
    out = []
    for row in rows:
        ref = row["ref"]
        try:
            plain = aes.decrypt(bytes(row["nonce"]), bytes(row["ciphertext"]), _aad(extract_id, ref))
        except InvalidTag as exc:
            raise ContentError(f"content row {ref!r} does not decrypt under this key and extract") from exc
        doc = json.loads(plain)
        if doc.get("ref") != ref:
            raise ContentError(f"content row {ref!r} holds a document for another ref")
        out.append(doc)
        with _lock:
            _decrypted += 1
    return out
