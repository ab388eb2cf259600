"""Attacks on the layout of what travels: ciphertext lengths, row order, and linking two
extracts of one source made under different project keys.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np
from scipy.spatial import cKDTree

from attacks.columns import deterministic_columns
from attacks.result import AttackResult
from attacks.world import Extract


def ciphertext_length(extract: Extract, known: set[str]) -> AttackResult:
    """Infer each content row's indicator codes from its ciphertext length.

    Trained on the known people's rows (length -> most common code set), scored on the
    others against the baseline of always guessing the most common code set. The gain over
    the baseline is what length leaks; no identity is carried by a length, so nothing is
    counted as re-identified. Also the code the lengths reveal best: its precision among
    rows predicted to have it, against its base rate.
    """
    truth = extract.truth.set_index("ref")
    refs = extract.content.column("ref").to_pylist()
    lengths = [len(c) for c in extract.content.column("ciphertext").to_pylist()]
    codes = [truth.at[r, "codes"] for r in refs]
    persons = [truth.at[r, "person"] for r in refs]
    train = [i for i, p in enumerate(persons) if p in known]
    test = [i for i, p in enumerate(persons) if p not in known]
    by_length: dict[int, Counter] = defaultdict(Counter)
    for i in train:
        by_length[lengths[i]][codes[i]] += 1
    overall = Counter(codes[i] for i in train).most_common(1)[0][0] if train else frozenset()
    predict = {length: c.most_common(1)[0][0] for length, c in by_length.items()}
    guessed = [predict.get(lengths[i], overall) for i in test]
    accuracy = sum(g == codes[i] for g, i in zip(guessed, test, strict=True)) / max(1, len(test))
    baseline = sum(overall == codes[i] for i in test) / max(1, len(test))
    best = {"code": None, "precision": 0.0, "base_rate": 0.0}
    all_codes = Counter(c for i in test for c in codes[i])
    for code, count in all_codes.most_common(40):
        base = count / len(test)
        flagged = [i for g, i in zip(guessed, test, strict=True) if code in g]
        if len(flagged) >= 20:
            precision = sum(code in codes[i] for i in flagged) / len(flagged)
            if precision - base > best["precision"] - best["base_rate"]:
                best = {"code": code, "precision": precision, "base_rate": base}
    return AttackResult("ciphertext length -> indicators", extract.name, len(test), 0.0, {
        "distinct_lengths": len(set(lengths)), "code_set_accuracy": accuracy, "baseline_accuracy": baseline,
        "best_code": best["code"], "best_code_precision": best["precision"], "best_code_base_rate": best["base_rate"],
    })


def row_order(extract: Extract) -> AttackResult:
    """Rebuild the keymap from row order: the attacker, knowing the source's local ids (in
    source order), gives the i-th linkage row the i-th id. A right local id names the
    person at the source, so it counts as re-identified. Also whether the manifest carries
    the keymap's hash, which would confirm such a guess."""
    truth = extract.truth
    order = truth.sort_values("source_row")["local_id"].tolist()
    right = sum(a == b for a, b in zip(order, truth["local_id"].tolist(), strict=True))
    n = len(truth)
    rank_corr = float(np.corrcoef(np.arange(n), truth["source_row"].to_numpy())[0, 1]) if n > 1 else 0.0
    return AttackResult("row order -> keymap", extract.name, n, float(right), {
        "order_correlation": rank_corr,
        "manifest_confirms_keymap": "keymap.parquet" in extract.manifest.get("files", {}),
    })


def _signatures(extract: Extract) -> tuple[list[tuple], np.ndarray]:
    """Per row: how often each deterministic column's value occurs (0 when null), and the
    popcount of each filter (-1 when null): what survives a change of key."""
    columns = [c for c in deterministic_columns(extract.scheme) if c in extract.linkage.column_names]
    counts = []
    for c in columns:
        values = extract.column(c)
        freq = Counter(v for v in values if v is not None)
        counts.append([freq[v] if v is not None else 0 for v in values])
    sig = list(zip(*counts, strict=True)) if counts else [()] * len(extract.truth)
    pops = []
    for c in (c for c in extract.linkage.column_names if c.startswith("clk_")):
        bits, present = extract.filters(c)
        pops.append(np.where(present, bits.sum(axis=1), -1))
    return sig, np.stack(pops, axis=1).astype(np.float32) if pops else np.zeros((len(sig), 0))


def match_signatures(la: list, lb: list, sig_a: list[tuple], pop_a: np.ndarray, sig_b: list[tuple],
                     pop_b: np.ndarray) -> float:
    """Rows of a tied to the right row of b (same local id): within rows of equal count
    signature, the unique nearest popcount vector (a lone candidate counts 1/rows tied)."""
    groups_b: dict[tuple, list[int]] = defaultdict(list)
    for j, s in enumerate(sig_b):
        groups_b[s].append(j)
    groups_a: dict[tuple, list[int]] = defaultdict(list)
    for i, s in enumerate(sig_a):
        groups_a[s].append(i)
    right = 0.0
    for s, rows_a in groups_a.items():
        rows_b = groups_b.get(s)
        if not rows_b:
            continue
        if len(rows_b) == 1:
            right += sum(la[i] == lb[rows_b[0]] for i in rows_a) / len(rows_a)
            continue
        tree = cKDTree(pop_b[rows_b])
        dist, idx = tree.query(pop_a[rows_a], k=2)
        for r, i in enumerate(rows_a):
            if dist[r][0] < dist[r][1]:  # a unique nearest row
                right += la[i] == lb[rows_b[idx[r][0]]]
    return float(right)


def cross_project(a: Extract, b: Extract) -> list[AttackResult]:
    """Link two extracts of one source made under different project keys, row by row:
    by position, and by each row's signature (value counts per column, filter popcounts),
    nearest popcounts within rows of the same count signature."""
    la, lb = a.truth["local_id"].tolist(), b.truth["local_id"].tolist()
    n = len(la)
    by_position = sum(x == y for x, y in zip(la, lb, strict=False))
    sig_a, pop_a = _signatures(a)
    sig_b, pop_b = _signatures(b)
    right = match_signatures(la, lb, sig_a, pop_a, sig_b, pop_b)
    return [
        AttackResult("cross-project: by row position", a.name, n, float(by_position)),
        AttackResult("cross-project: by value-count and popcount signature", a.name, n, right),
    ]


def manifest_summary(extract: Extract) -> str:
    return json.dumps({k: extract.manifest.get(k) for k in ("layout", "files")}, sort_keys=True)
