"""Benchmark of the audit ledger: durable append throughput and proofs in a big ledger.

    .venv/bin/python bench/bench_audit.py [--events 20000] [--big 1000000] [--dir DIR]

Prints figures; bench/RESULTS-audit.md records a run. Every append is fsynced before it
returns (group commit across threads, one fsync per append_many batch). Appends are
measured with the DEFAULT checkpointing (every 100 entries and 60 s, each checkpoint also
written to a witness directory) against a named baseline in the same run: no automatic
checkpoints and no witness.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import Ledger, LedgerSettings
from audit.verifier import load_public_key, verify_checkpoint, verify_inclusion_proof


def event(i: int) -> dict:
    return {
        "type": "summary.disclosed",
        "time": "2026-11-22T10:00:00Z",
        "actor": {"id": f"u{i % 50}", "role": "adviser", "organisation": f"csc-{i % 4}"},
        "person_key": f"{i * 2654435761 % 2**256:064x}",
        "entity_id": f"e-{i:08x}",
        "purpose": "employment_support",
        "categories": ["MH", "HOU", "FIN"],
        "decision_id": f"d-{i:012x}",
    }


def new_key(path: Path) -> Path:
    path.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def rate(label: str, n: int, seconds: float) -> float:
    print(f"{label:<44} {n:>9} events {seconds:8.2f} s {n / seconds:>10,.0f} appends/s")
    return n / seconds


CONFIGS = {
    "baseline (no checkpoints)": {"checkpoint_every": 0, "checkpoint_seconds": 0},
    "default (every 100 / 60 s, witness)": None,  # LedgerSettings() + a witness
}


def open_ledger(root: Path, key: Path, config: str, name: str) -> Ledger:
    settings = CONFIGS[config]
    if settings is None:
        return LedgerSettings.from_table({"witness": str(root / "witness" / name)}).open(root / name, key)
    return Ledger(root / name, key, **settings)


def bench_appends(root: Path, key: Path, n: int) -> None:
    results: dict[tuple[str, str], float] = {}
    for config in CONFIGS:
        print(f"-- {config}")
        for label, rate_ in _append_rates(root / config.split()[0], key, n, config).items():
            results[(label, config)] = rate_
    base, default = list(CONFIGS)
    print("-- default / baseline (appends/s ratio; < 1 is the cost of checkpointing)")
    for label in dict.fromkeys(label for label, _ in results):
        print(f"{label:<44} {results[(label, default)] / results[(label, base)]:6.3f}")


def _append_rates(root: Path, key: Path, n: int, config: str) -> dict[str, float]:
    out = {}
    with open_ledger(root, key, config, "seq") as led:
        t = time.perf_counter()
        for i in range(n // 4):
            led.append(event(i))
        out["append(), 1 thread (fsync each)"] = rate("append(), 1 thread (fsync each)", n // 4, time.perf_counter() - t)

    for threads in (4, 8):
        with open_ledger(root, key, config, f"threads{threads}") as led:
            per = n // threads

            def work(w: int, led=led, per=per) -> None:
                for i in range(per):
                    led.append(event(w * per + i))

            pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
            t = time.perf_counter()
            for th in pool:
                th.start()
            for th in pool:
                th.join()
            label = f"append(), {threads} threads (group commit)"
            out[label] = rate(label, per * threads, time.perf_counter() - t)

    with open_ledger(root, key, config, "batch") as led:
        t = time.perf_counter()
        for lo in range(0, n, 100):
            led.append_many([event(i) for i in range(lo, lo + 100)])
        label = "append_many(100 events) (fsync per batch)"
        out[label] = rate(label, n, time.perf_counter() - t)
    return out


def bench_big(root: Path, key: Path, big: int) -> None:
    directory = root / "big"
    with Ledger(directory, key, checkpoint_every=10_000) as led:
        have = len(led)
        t = time.perf_counter()
        for lo in range(have, big, 10_000):
            led.append_many([event(i) for i in range(lo, min(big, lo + 10_000))])
        if big > have:
            rate("build: append_many(10,000)", big - have, time.perf_counter() - t)
        public = load_public_key(led.public_key_path.read_bytes())
        checkpoint = led.checkpoint()
        verify_checkpoint(checkpoint, public)
        size = checkpoint["tree_size"]
        produce, verify, sizes = [], [], []
        step = max(1, size // 200)
        for index in range(0, size, step):
            event_id = next(led.events(index, index + 1))["event_id"]
            t = time.perf_counter()
            proof = led.inclusion_proof(event_id, size)
            produce.append(time.perf_counter() - t)
            doc = json.dumps(proof, separators=(",", ":")).encode()
            sizes.append(len(doc))
            t = time.perf_counter()
            verify_inclusion_proof(json.loads(doc), checkpoint, public)
            verify.append(time.perf_counter() - t)
        cons_t = time.perf_counter()
        cons = led.consistency_proof(size // 3, size)
        cons_t = time.perf_counter() - cons_t
    ms = lambda xs: f"median {statistics.median(xs) * 1e3:.3f} ms, max {max(xs) * 1e3:.3f} ms"  # noqa: E731
    print(f"ledger of {size:,} events, {len(produce)} inclusion proofs:")
    print(f"  produce: {ms(produce)}")
    print(f"  verify (incl. Ed25519 checkpoint check): {ms(verify)}")
    print(f"  proof size (compact JSON): median {statistics.median(sizes):.0f} B, max {max(sizes)} B")
    print(f"  consistency proof {size // 3:,} -> {size:,}: {len(cons['proof'])} hashes, {cons_t * 1e3:.3f} ms")
    log_size = (directory / "log.jsonl").stat().st_size
    print(f"  log {log_size / 1e6:.0f} MB ({log_size / size:.0f} B/event)")
    from audit import verify_ledger

    t = time.perf_counter()
    result = verify_ledger(directory, led.public_key_path.read_bytes(), checkpoint_every=10_000)
    seconds = time.perf_counter() - t
    privacy = sum("privacy" in n for n in result.notices)
    print(f"  verify_ledger (full recompute): ok={result.ok}, {seconds:.1f} s "
          f"({size / seconds:,.0f} entries/s), privacy notices: {privacy}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=None, help="keep the ledgers here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        key = new_key(root / "audit-signing.key")
        bench_appends(root, key, args.events)
        if args.big:
            bench_big(root, key, args.big)


if __name__ == "__main__":
    main()
