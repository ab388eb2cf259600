"""Benchmark: pseudonymisation throughput, end-to-end extract throughput, BLIP separation.

    .venv/bin/python bench/bench_extract.py --records 1000000            # pseudonymise (in memory)
    .venv/bin/python bench/bench_extract.py --records 200000 --extract   # CSV -> split extract
    .venv/bin/python bench/bench_extract.py --separation                 # Dice: true vs false pairs
    .venv/bin/python bench/bench_extract.py --records 1000000 --reader   # strict CSV reader vs lenient

Records are synthetic UK-style identities (names from connectors.synth_names with
Zipf-like weights, unique NHS numbers and NINOs, ~20k postcodes, near-unique addresses),
generated per batch outside the timed section. The timed section is what a connector does
per record: standardise + validate, then tokens, CLKs and blocking keys (IdentityEncoder).
Peak memory is the process's maximum resident set size.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors import synth_names as names  # noqa: E402
from connectors.columnar import ColumnarEncoder, records_to_columns  # noqa: E402
from connectors.keys import KeyRing  # noqa: E402
from connectors.parallel import encode_in_order  # noqa: E402
from connectors.pseudonymise import EncodingSettings, IdentityEncoder, dice  # noqa: E402
from connectors.standardise import standardise_identity  # noqa: E402

BATCH = 20_000


def zipf_weights(n: int) -> np.ndarray:
    w = 1.0 / (np.arange(n) + 3.0) ** 0.9
    return w / w.sum()


def nhs_with_check(stems: np.ndarray) -> list[str]:
    out = []
    weights = np.arange(10, 1, -1)
    digits = (stems[:, None] // 10 ** np.arange(8, -1, -1)) % 10
    checks = 11 - (digits * weights).sum(axis=1) % 11
    checks[checks == 11] = 0
    for stem, check in zip(stems, checks, strict=True):
        out.append(f"{stem:09d}{check if check != 10 else 0}")  # ~9% fail the check: realistic noise
    return out


class Generator:
    """Deterministic batches of raw identity dicts."""

    def __init__(self, seed: int = 1):
        self.rng = np.random.default_rng(seed)
        self.given = np.array(names.MALE_GIVEN + names.FEMALE_GIVEN)
        self.family = np.array(names.FAMILY)
        self.streets = np.array([f"{s} {t}" for s in names.STREET_STEMS for t in names.STREET_TYPES])
        self.towns = np.array([t[0] for t in names.LOCALITIES])
        letters = np.array(list("ABDEFGHJLNPQRSTUWXYZ"))
        self.postcodes = np.array([
            f"CT{d} {s}{a}{b}"
            for d, s, a, b in zip(self.rng.integers(1, 21, 20_000), self.rng.integers(0, 10, 20_000),
                                  self.rng.choice(letters, 20_000), self.rng.choice(letters, 20_000), strict=True)
        ])
        self.n = 0

    def batch(self, n: int) -> list[dict[str, str | None]]:
        rng = self.rng
        given = rng.choice(self.given, n, p=zipf_weights(len(self.given)))
        family = rng.choice(self.family, n, p=zipf_weights(len(self.family)))
        dob_days = rng.integers(0, 365 * 60, n)
        dobs = (np.datetime64("1945-01-01") + dob_days).astype(str)
        fmt = rng.integers(0, 3, n)
        nhs = nhs_with_check(rng.integers(400_000_000, 999_999_999, n))
        pcs = rng.choice(self.postcodes, n)
        house = rng.integers(1, 300, n)
        streets = rng.choice(self.streets, n)
        towns = rng.choice(self.towns, n)
        sex = rng.choice(np.array(["M", "F"]), n)
        out = []
        for i in range(n):
            iso = dobs[i]
            dob = iso if fmt[i] == 0 else (f"{iso[8:]}/{iso[5:7]}/{iso[:4]}" if fmt[i] == 1 else iso.replace("-", ""))
            k = self.n + i
            out.append({
                "local_id": f"L{k}",
                "nhs_number": nhs[i],
                "nino": f"{'ABCEGHJKLMNPRSTWXYZ'[k % 19]}{'ABCEGHJKLMNPRSTWXYZ'[(k // 19) % 19]}{k % 1_000_000:06d}A",
                "given_name": given[i],
                "middle_names": None,
                "family_name": family[i],
                "date_of_birth": dob,
                "sex": sex[i],
                "postcode": pcs[i],
                "address": f"{house[i]} {streets[i]}",
                "locality": towns[i],
            })
        self.n += n
        return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_pseudonymise_per_record(records: int, hardening: str) -> None:
    """The per-record path (standardise_identity + IdentityEncoder.encode_batch): the old figure."""
    keyring = KeyRing(os.urandom(32), "bench")
    encoder = IdentityEncoder(keyring, EncodingSettings(hardening=hardening))
    gen = Generator()
    done = 0
    t_std = t_enc = 0.0
    cpu0 = time.process_time()
    while done < records:
        raws = gen.batch(min(BATCH, records - done))
        t0 = time.perf_counter()
        idents = []
        for raw in raws:
            ident, problems = standardise_identity(raw)
            if not problems or not any(p.fatal for p in problems):
                idents.append(ident)
        t1 = time.perf_counter()
        encoder.encode_batch(idents)
        t2 = time.perf_counter()
        t_std += t1 - t0
        t_enc += t2 - t1
        done += len(raws)
    total = t_std + t_enc
    print(f"pseudonymise (per record)  records={records:,} hardening={hardening}  batch={BATCH:,}")
    print(f"  standardise {t_std:7.2f} s   encode {t_enc:7.2f} s   total {total:7.2f} s")
    print(f"  throughput  {records / total:,.0f} records/s   peak RSS {peak_rss_mb():,.0f} MB"
          f"   (process CPU incl. generation {time.process_time() - cpu0:.1f} s)")


def bench_pseudonymise(records: int, hardening: str, workers: int) -> None:
    """The batch path the extract uses: raw rows -> columns -> ColumnarEncoder (per distinct value).

    The raw batches are generated lazily in the main process; the time spent generating
    is measured and reported apart. With one worker, everything is sequential, so
    wall - generation is exactly the connector's time. With workers, generation competes
    with them for the 2 cores: both wall (pessimistic) and wall - generation are shown.
    """
    keyring = KeyRing(os.urandom(32), "bench")
    settings = EncodingSettings(hardening=hardening)
    gen = Generator()
    t_gen = 0.0

    def batches():
        nonlocal t_gen
        done = 0
        while done < records:
            g0 = time.perf_counter()
            raws = gen.batch(min(BATCH, records - done))
            t_gen += time.perf_counter() - g0
            done += len(raws)
            yield None, records_to_columns(raws)

    t0, c0 = time.perf_counter(), time.process_time()
    accepted = 0
    for _, batch in encode_in_order(batches(), lambda: ColumnarEncoder(IdentityEncoder(keyring, settings)),
                                    workers):
        accepted += int(batch.accepted.sum())
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"pseudonymise (columnar)  records={records:,} accepted={accepted:,} hardening={hardening}"
          f"  batch={BATCH:,}  workers={workers}")
    print(f"  wall {elapsed:7.2f} s ({records / elapsed:,.0f} records/s), of which generating input "
          f"{t_gen:.2f} s;  without it {elapsed - t_gen:.2f} s ({records / (elapsed - t_gen):,.0f} records/s)")
    print(f"  CPU main {cpu:.2f} s (incl. generation) + workers {children.ru_utime + children.ru_stime:.2f} s")
    print(f"  peak RSS main {peak_rss_mb():,.0f} MB, "
          f"largest worker {children.ru_maxrss / 1024:,.0f} MB;  load average {os.getloadavg()[0]:.1f}")


def bench_extract(records: int, workers: int) -> None:
    from connectors.extract import pseudonymise_extract

    keyring = KeyRing(os.urandom(32), "bench")
    gen = Generator()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.csv"
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(gen.batch(1)[0]))
            w.writeheader()
            done = 0
            while done < records:
                rows = gen.batch(min(BATCH, records - done))
                w.writerows(rows)
                done += len(rows)
        t0 = time.perf_counter()
        manifest = pseudonymise_extract(keyring, "csv", "bench", str(path), None, Path(tmp) / "out",
                                        workers=workers)
        elapsed = time.perf_counter() - t0
        sizes = {p.name: p.stat().st_size for p in (Path(tmp) / "out").iterdir()}
    print(f"extract (csv -> split extract)  records={records:,}  workers={workers}  "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"  {elapsed:.2f} s   {records / elapsed:,.0f} records/s   counts {manifest['counts']}")
    print(f"  file sizes {sizes}   peak RSS {peak_rss_mb():,.0f} MB")


def _lenient_batches(path: Path, size: int):
    """Baseline: the csv kind's reader before strict parsing (csv.reader, short rows padded,
    no header, width, encoding or duplicate-id checks), cutting the same column batches."""
    from connectors.sources.generic_csv import _column_picker, _identity_named

    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader)]
        mapping = _identity_named(header)
        pickers = {name: _column_picker(spec, header) for name, spec in mapping.identity.items()}
        width = len(header)
        rows: list[list[str]] = []
        for values in reader:
            if not values or (len(values) == 1 and not values[0].strip()):
                continue
            if len(values) < width:
                values = values + [""] * (width - len(values))
            rows.append(values)
            if len(rows) >= size:
                yield {name: pick(rows) for name, pick in pickers.items()}
                rows = []
        if rows:
            yield {name: pick(rows) for name, pick in pickers.items()}


def bench_reader(records: int) -> None:
    """Reading only (no encoding): the strict csv reader that the extract uses, against the
    lenient one it replaced, on the same file, in the same run."""
    from connectors.mapping import Mapping
    from connectors.sources import read_batches

    gen = Generator()
    rejects: list = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.csv"
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(gen.batch(1)[0]))
            w.writeheader()
            done = 0
            while done < records:
                rows = gen.batch(min(BATCH, records - done))
                w.writerows(rows)
                done += len(rows)
        runs = {
            "lenient (baseline)": lambda: _lenient_batches(path, BATCH),
            "strict": lambda: (c for _, c, _ in read_batches("csv", str(path), Mapping(), BATCH, rejects.append)),
        }
        wall: dict[str, list[float]] = {name: [] for name in runs}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(3):  # alternating, best of three: the machine is shared
            for name, batches in runs.items():
                t0, c0 = time.perf_counter(), time.process_time()
                n = sum(len(cols["local_id"]) for cols in batches())
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
                assert n == records, (name, n)
    print(f"csv reader only  records={records:,}  load average {os.getloadavg()[0]:.1f}  rejects {len(rejects)}")
    for name in runs:
        print(f"  {name:20s} best wall {min(wall[name]):6.2f} s ({records / min(wall[name]):10,.0f} records/s)"
              f"   best CPU {min(cpu[name]):6.2f} s ({records / min(cpu[name]):10,.0f} records/CPU-s)")
    base = "lenient (baseline)"
    print(f"  strict / lenient: wall {min(wall['strict']) / min(wall[base]):.2f}, "
          f"CPU {min(cpu['strict']) / min(cpu[base]):.2f}")


def _typo(rng: np.random.Generator, s: str) -> str:
    i = int(rng.integers(0, len(s)))
    op = int(rng.integers(0, 3))
    if op == 0:
        return s[:i] + s[i + 1:] if len(s) > 3 else s + "e"
    if op == 1:
        return s[:i] + "abcdefghijklmnopqrstuvwxyz"[int(rng.integers(0, 26))] + s[i + 1:]
    return s[:i] + s[i:i + 2][::-1] + s[i + 2:]


def bench_separation(pairs: int = 3000) -> None:
    """Dice of clk_name for true pairs (one typo or a nickname) vs random false pairs."""
    rng = np.random.default_rng(5)
    given = names.MALE_GIVEN + names.FEMALE_GIVEN
    nick = {c.lower(): [n.lower() for n in ns] for c, ns in names.NICKNAMES.items()}
    keyring = KeyRing(os.urandom(32), "bench")
    print(f"separation of clk_name Dice, {pairs:,} true pairs (typo or nickname) and {pairs:,} false pairs")
    print("  hardening      mean_true  mean_false  true<0.7  false>=0.7  overlap*")
    for label, settings in (("none", EncodingSettings()),
                            ("blip f=0.02", EncodingSettings(hardening="blip", blip_f=0.02)),
                            ("blip f=0.05", EncodingSettings(hardening="blip", blip_f=0.05)),
                            ("blip f=0.10", EncodingSettings(hardening="blip", blip_f=0.10))):
        enc = IdentityEncoder(keyring, settings, rng=np.random.default_rng(9))
        true_d, false_d = [], []
        for _ in range(pairs):
            g, f = str(rng.choice(given)), str(rng.choice(names.FAMILY))
            if g.lower() in nick and rng.random() < 0.3:
                g2, f2 = str(rng.choice(nick[g.lower()])), f
            else:
                g2, f2 = (_typo(rng, g), f) if rng.random() < 0.5 else (g, _typo(rng, f))
            a = enc.encode_identity({"given_name": g, "family_name": f})["clk_name"]
            b = enc.encode_identity({"given_name": g2, "family_name": f2})["clk_name"]
            true_d.append(dice(a, b))
            g3, f3 = str(rng.choice(given)), str(rng.choice(names.FAMILY))
            c = enc.encode_identity({"given_name": g3, "family_name": f3})["clk_name"]
            false_d.append(dice(a, c))
        t, f = np.array(true_d), np.array(false_d)
        overlap = float((t <= np.quantile(f, 0.99)).mean())
        print(f"  {label:13s} {t.mean():9.3f} {f.mean():11.3f} {(t < 0.7).mean():9.3f} {(f >= 0.7).mean():11.3f} {overlap:9.3f}")
    print("  * share of true pairs at or below the 99th percentile of false-pair Dice")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--hardening", choices=["none", "blip"], default="none")
    ap.add_argument("--extract", action="store_true", help="end-to-end CSV -> extract instead")
    ap.add_argument("--per-record", action="store_true", help="the old per-record path, for comparison")
    ap.add_argument("--workers", type=int, default=1, help="encoding processes (extract and columnar)")
    ap.add_argument("--separation", action="store_true", help="BLIP cost: Dice separation")
    ap.add_argument("--reader", action="store_true", help="strict CSV reader against the lenient one")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    if args.separation:
        bench_separation()
    elif args.reader:
        bench_reader(args.records)
    elif args.extract:
        bench_extract(args.records, args.workers)
    elif args.per_record:
        bench_pseudonymise_per_record(args.records, args.hardening)
    else:
        bench_pseudonymise(args.records, args.hardening, args.workers)


if __name__ == "__main__":
    main()
