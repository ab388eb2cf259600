"""Where a FEBRL set's missed links are: one run of the defaults through the CLI, then each
true pair that the run did not link, sorted into what could have found it.

    .venv/bin/python bench/febrl_misses.py FEBRL4 /tmp/misses-febrl4

The work directory is kept (extracts, keymaps, the home and its run), so any pair can then
be explained with `joinedup review explain --home WORK/home PAIR_ID`. Classes:
- "rejected": a record was rejected by the connector;
- "shares a match key, scored": the pair shares a key, so it was blocked and scored, and
  links.parquet holds its probability (under the cluster threshold);
- "shares a match key, under the links floor": blocked, scored below what links.parquet keeps;
- "shares no match key": only a filter band could have blocked it.
The keymaps are the connectors' (the benchmark ran them); the linkage unit never sees them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_linkage import _febrl_sets, _prf, bench_ours_cli  # noqa: E402


def _keymap(work: Path) -> dict[str, tuple[str, str]]:
    """local id -> (source, ref), from every extract the run wrote."""
    out = {}
    for extract in work.glob("x-*"):
        table = pq.read_table(extract / "keymap.parquet").to_pydict()
        source = extract.name.removeprefix("x-")
        out.update({lid: (source, ref) for lid, ref in zip(table["local_id"], table["ref"], strict=True)})
    return out


def classify(work: Path, truth: set, found: set) -> tuple[Counter, list[dict]]:
    run = work / "home" / "runs" / "run"
    records = {(r["source"], r["ref"]): r for r in pq.read_table(run / "records.parquet").to_pylist()}
    links = pq.read_table(run / "links.parquet").to_pylist()
    scored = {frozenset([(x["source_l"], x["ref_l"]), (x["source_r"], x["ref_r"])]): x["match_probability"]
              for x in links}
    keymap = _keymap(work)
    classes, rows = Counter(), []
    for a, b in sorted(truth - found):
        if a not in keymap or b not in keymap:
            classes["rejected"] += 1
            continue
        left, right = records[keymap[a]], records[keymap[b]]
        keys = [c for c in left if c.startswith(("mk_", "tk_")) and left[c] is not None and left[c] == right[c]]
        probability = scored.get(frozenset([keymap[a], keymap[b]]))
        if not keys:
            what = "shares no match key"
        elif probability is None:
            what = "shares a match key, under the links floor"
        else:
            what = "shares a match key, scored"
        classes[what] += 1
        rows.append({"pair": [a, b], "class": what, "keys": keys, "probability": probability})
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
    keyed = Counter(tuple(r["keys"]) for r in rows if r["keys"])
    for keys, n in keyed.most_common(10):
        print(f"  {n:5d}  share exactly {', '.join(keys)}")
    (args.work / "misses.json").write_text(json.dumps(rows, indent=1))
    print(f"each missed pair: {args.work / 'misses.json'}")


if __name__ == "__main__":
    main()
