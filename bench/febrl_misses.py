"""Where a FEBRL set's missed links are: one run of the defaults through the CLI, then each
true pair that the run did not link, sorted into what could have found it.

    .venv/bin/python bench/febrl_misses.py FEBRL4 /tmp/misses-febrl4

The work directory is kept (extracts, keymaps, the home and its run), so any pair can then
be explained with `joinedup review explain --home WORK/home SOURCE/REF SOURCE/REF`. Classes:
- "rejected": a record was rejected by the connector;
- "compared, scored under the threshold": a blocking rule of the run brings the pair
  together (`linkage.review.blocking_rules_of_pair`), and links.parquet holds its
  probability, under the cluster threshold;
- "compared, scored under the links floor": blocked, scored below what links.parquet keeps;
- "never compared": no match key and no filter band of the two records is equal. These
  are split by how alike their filters are against random pairs that share no key: a pair
  whose best filter Dice is reached by at least 1% of random pairs ("no more alike than
  random pairs") cannot be linked without accepting that 1% of all pairs, so it bounds
  what any blocking and scoring of this encoding can find. The script prints that ceiling
  (recall and F1 with every other pair found and precision 1).
The keymaps are the connectors' (the benchmark ran them); the linkage unit never sees them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_linkage import _febrl_sets, _prf, bench_ours_cli  # noqa: E402

from connectors.pseudonymise import CLK_COLUMNS  # noqa: E402
from linkage.review import blocking_rules_of_pair  # noqa: E402

RANDOM_PAIRS = 20_000
CHANCE_SHARE = 0.01  # a pair no more alike than this share of random pairs is at chance


def _keymap(work: Path) -> dict[str, tuple[str, str]]:
    """local id -> (source, ref), from every extract the run wrote."""
    out = {}
    for extract in work.glob("x-*"):
        table = pq.read_table(extract / "keymap.parquet").to_pydict()
        source = extract.name.removeprefix("x-")
        out.update({lid: (source, ref) for lid, ref in zip(table["local_id"], table["ref"], strict=True)})
    return out


def _best_dice(left: dict, right: dict) -> float:
    """The highest Dice over the filters both records publish (0 when none)."""
    best = 0.0
    for column in CLK_COLUMNS:
        a, b = left.get(column), right.get(column)
        if a is None or b is None:
            continue
        x, y = np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8)
        total = int(np.unpackbits(x).sum() + np.unpackbits(y).sum())
        if total:
            best = max(best, 2.0 * int(np.unpackbits(x & y).sum()) / total)
    return best


def _shared_keys(left: dict, right: dict) -> list[str]:
    return [c for c in left if c.startswith(("mk_", "tk_")) and left[c] is not None and left[c] == right[c]]


def random_pair_dice(records: dict, truth_refs: set, seed: int = 0) -> np.ndarray:
    """Best filter Dice of random record pairs that share no key and are not true pairs,
    across sources when there are two (A x B), within the one source otherwise."""
    rng = np.random.default_rng(seed)
    by_source: dict[str, list] = {}
    for key in records:
        by_source.setdefault(key[0], []).append(key)
    sides = list(by_source.values())
    left_side, right_side = (sides[0], sides[1]) if len(sides) > 1 else (sides[0], sides[0])
    out: list[float] = []
    for _ in range(50 * RANDOM_PAIRS):  # bounded: a tiny or all-keyed set gives up
        if len(out) == RANDOM_PAIRS:
            break
        a = left_side[rng.integers(len(left_side))]
        b = right_side[rng.integers(len(right_side))]
        if a == b or frozenset([a, b]) in truth_refs or _shared_keys(records[a], records[b]):
            continue
        out.append(_best_dice(records[a], records[b]))
    if not out:
        raise SystemExit("no random pair without a shared key: no chance level to compare with")
    return np.sort(np.array(out))


def classify(work: Path, truth: set, found: set) -> tuple[Counter, list[dict]]:
    run = work / "home" / "runs" / "run"
    records = {(r["source"], r["ref"]): r for r in pq.read_table(run / "records.parquet").to_pylist()}
    links = pq.read_table(run / "links.parquet").to_pylist()
    scored = {frozenset([(x["source_l"], x["ref_l"]), (x["source_r"], x["ref_r"])]): x["match_probability"]
              for x in links}
    keymap = _keymap(work)
    truth_refs = {frozenset([keymap[a], keymap[b]]) for a, b in truth if a in keymap and b in keymap}
    chance = random_pair_dice(records, truth_refs)
    threshold = json.loads((run / "summary.json").read_text())["thresholds"]["cluster_match_probability"]
    classes, rows = Counter(), []
    for a, b in sorted(truth - found):
        if a not in keymap or b not in keymap:
            classes["rejected"] += 1
            continue
        left, right = records[keymap[a]], records[keymap[b]]
        keys = _shared_keys(left, right)
        probability = scored.get(frozenset([keymap[a], keymap[b]]))
        best = _best_dice(left, right)
        # share of random no-key pairs at least as alike as this pair
        as_alike = float(len(chance) - np.searchsorted(chance, best, side="left")) / len(chance)
        rules = blocking_rules_of_pair(run, keymap[a], keymap[b])
        if not rules:
            what = ("never compared, no more alike than random pairs" if as_alike >= CHANCE_SHARE
                    else "never compared, filters more alike than random pairs")
        elif probability is None:
            what = "compared, scored under the links floor"
        elif probability < threshold:
            what = "compared, scored under the threshold"
        else:
            what = "compared, scored above the threshold, kept apart by clustering"
        classes[what] += 1
        rows.append({"pair": [a, b], "class": what, "keys": keys, "blocked_by": rules, "probability": probability,
                     "best_filter_dice": round(best, 4), "random_pairs_as_alike": as_alike})
    return classes, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["FEBRL4", "FEBRL3", "FEBRL2", "FEBRL1"])
    parser.add_argument("work", type=Path, help="work directory (replaced, then kept)")
    args = parser.parse_args()
    name, frames, truth = next(s for s in _febrl_sets() if s[0] == args.dataset)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    _seconds, found, summary = bench_ours_cli(frames, args.work)
    precision, recall, f1 = _prf(found, truth)
    print(f"{name} defaults (CLI): P {precision:.4f} R {recall:.4f} F1 {f1:.4f}; "
          f"cluster threshold {summary['thresholds']['cluster_match_probability']:.3f}")
    classes, rows = classify(args.work, truth, found)
    print(f"missed {len(truth - found)} of {len(truth)} true pairs:")
    for what, n in classes.most_common():
        print(f"  {n:5d}  {what}")
    at_chance = classes["never compared, no more alike than random pairs"] + classes["rejected"]
    ceiling_recall = 1 - at_chance / len(truth)
    print(f"ceiling of this encoding: {at_chance} true pairs are rejected or no more alike than "
          f"{CHANCE_SHARE:.0%} of {RANDOM_PAIRS:,} random no-key pairs; with every other pair found "
          f"and precision 1: R {ceiling_recall:.4f} F1 {2 * ceiling_recall / (1 + ceiling_recall):.4f}")
    keyed = Counter(tuple(r["keys"]) for r in rows if r["keys"])
    for keys, n in keyed.most_common(10):
        print(f"  {n:5d}  share exactly {', '.join(keys)}")
    (args.work / "misses.json").write_text(json.dumps(rows, indent=1))
    print(f"each missed pair: {args.work / 'misses.json'}")


if __name__ == "__main__":
    main()
