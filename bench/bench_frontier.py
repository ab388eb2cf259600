"""The privacy / quality frontier of the default encoding's published filters (issue 12).

    .venv/bin/python bench/bench_frontier.py --people 50000 [--work DIR]

Issue 12 asks every attack to re-identify at most 1% and the default encoding to keep
linkage quality; when both cannot hold, the frontier between them is to be measured. The
knob is `[encoding] filters`: which of the six salted filters a deployment publishes (the
match keys and identifier tokens are always published). For each choice, in one run:

1. The synthetic sources (`joinedup synth`, seeded) extracted under project p1, and DWP
   again under p2, with that `filters` setting (`connectors.extract`, as the command does).
2. The attacks that exceed 1% on the default encoding (bench/RESULTS-privacy.md): linking
   the two projects' DWP extracts row by row by each row's signature (layout; repeat counts
   of exact filters; of exact filters and fingerprints; of near-duplicate filters). Every
   other attack of the suite is at most 1% on the default, and an extract with fewer filters
   is the default extract with columns left out (same keys), which an attacker of the
   default could also make: those attacks cannot do better on it.
3. Linkage quality with the default linkage settings: entity pairs on the synthetic sources
   (`linkage.run.link_extracts`, what `joinedup link` runs) and FEBRL4 A x B through the CLI
   (`init`, `extract`, `ingest`, `link`).

Prints one markdown table: per choice, the worst of these attacks and F1 on both data sets.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_privacy import INPUTS, synthetic_quality  # noqa: E402 (after the path insert)

# (label, the filters published). The first row is the default (all six).
CHOICES: list[tuple[str, tuple[str, ...]]] = [
    ("all six filters (default)", ("clk_given", "clk_family", "clk_address",
                                   "clk_given_pc", "clk_family_pc", "clk_address_dob")),
    ("first views: names by date of birth, address by postcode",
     ("clk_given", "clk_family", "clk_address")),
    ("names by date of birth and by postcode, no address",
     ("clk_given", "clk_family", "clk_given_pc", "clk_family_pc")),
    ("names by date of birth only", ("clk_given", "clk_family")),
    ("no filters (match keys and identifier tokens only)", ()),
]


def say(text: str = "") -> None:
    print(text, flush=True)


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def extract(src: Path, out: Path, filters: tuple[str, ...], master: bytes, project: str,
            kinds: tuple[str, ...]) -> None:
    from connectors.extract import pseudonymise_extract
    from connectors.keys import KeyRing
    from connectors.pseudonymise import EncodingSettings

    keyring = KeyRing(master, project)
    settings = EncodingSettings(filters=filters)
    for kind in kinds:
        pseudonymise_extract(keyring, kind, kind, str(src / INPUTS[kind]), None, out / kind, settings=settings)


def cross_project_rates(src: Path, p1: Path, p2: Path) -> dict[str, float]:
    from attacks import load_world
    from attacks.layout import cross_project
    from attacks.views import cross_project_views

    a = load_world(src, {"dwp": p1 / "dwp"}, {"dwp": INPUTS["dwp"]}).extracts[0]
    b = load_world(src, {"dwp": p2 / "dwp"}, {"dwp": INPUTS["dwp"]}).extracts[0]
    return {r.attack: r.rate for r in cross_project(a, b) + cross_project_views(a, b)}


def febrl4_f1(work: Path, filters: tuple[str, ...]) -> tuple[float, float, float]:
    from bench_linkage import _febrl_sets, _prf, bench_ours_cli

    for name, frames, truth in _febrl_sets():
        if name == "FEBRL4":
            _s, found, _summary = bench_ours_cli(frames, work, encoding={"filters": list(filters)})
            return _prf(found, truth)
    raise RuntimeError("FEBRL4 not found")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()

    from connectors.keys import new_master_secret
    from connectors.synth import write_synthetic_sources

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-frontier-"))
    say(f"machine: {os.cpu_count()} cores; {_uptime()}")
    src = work / "src"
    if not (src / "ground_truth.csv").exists():
        write_synthetic_sources(src, args.people, args.seed)
    say(f"synthetic sources: {args.people} people (seed {args.seed}) in {src}\n")
    master = new_master_secret()
    rows = []
    for i, (label, filters) in enumerate(CHOICES):
        started = time.perf_counter()
        base = work / f"choice-{i}"
        extract(src, base / "p1", filters, master, "p1", tuple(INPUTS))
        extract(src, base / "p2", filters, master, "p2", ("dwp",))
        rates = cross_project_rates(src, base / "p1", base / "p2")
        syn = synthetic_quality(src, base / "p1", "v2", base)
        feb = febrl4_f1(base / "febrl4", filters)
        worst = max(rates.items(), key=lambda kv: kv[1])
        rows.append((label, filters, rates, worst, syn, feb))
        say(f"  {label}: worst cross-project {100 * worst[1]:.2f}% ({worst[0]}); synthetic F1 "
            f"{syn[2]:.4f}; FEBRL4 F1 {feb[2]:.4f} ({time.perf_counter() - started:.0f} s)")
    say(f"\nuptime after: {_uptime()}\n")
    attacks = list(rows[0][2])
    say("| filters published | " + " | ".join(attacks) + " | synthetic P / R / F1 | FEBRL4 P / R / F1 |")
    say("|---|" + "---|" * (len(attacks) + 2))
    for label, _filters, rates, _worst, syn, feb in rows:
        cells = " | ".join(f"{100 * rates[a]:.2f}%" for a in attacks)
        say(f"| {label} | {cells} | {syn[0]:.4f} / {syn[1]:.4f} / **{syn[2]:.4f}** "
            f"| {feb[0]:.4f} / {feb[1]:.4f} / **{feb[2]:.4f}** |")
    best = [r for r in rows if r[3][1] <= 0.01]
    if best:
        label, _f, _r, worst, syn, feb = best[0]
        say(f"\nFirst choice with every one of these attacks at most 1%: {label} "
            f"(worst {100 * worst[1]:.2f}%): F1 synthetic {syn[2]:.4f}, FEBRL4 {feb[2]:.4f}; "
            f"the default: synthetic {rows[0][4][2]:.4f}, FEBRL4 {rows[0][5][2]:.4f}.")
    else:
        say("\nNo choice brings every one of these attacks to at most 1%.")


if __name__ == "__main__":
    main()
