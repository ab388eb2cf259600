"""Person resolution: score one encoded identity against a finished run, no re-linking.

The run's records (RUN_DIR/records.parquet: encodings + entity id) are loaded once per
process into an in-memory DuckDB, with the CLKs cast to BIT and term frequencies joined
on. A query then picks candidates with the run's blocking rules (simple `l.a = r.b`
conjunctions, bound to the probe's values) and scores them with the trained model's
match weights, computed exactly as Splink does (Bayes factors m/u per level, plus
term-frequency adjustments), so the probabilities agree with links.parquet.
"""

from __future__ import annotations

import json
import math
import re
import threading
from pathlib import Path
from typing import Any

import duckdb

from linkage.clk import WORD_BYTES, clk_struct_sql, create_dice_macro, words_for_bits
from linkage.settings import BLOCKING_COLUMNS, CLK_COLUMNS, TOKEN_COLUMNS

_RULE_TERM = re.compile(r"^\s*l\.(\w+)\s*=\s*r\.(\w+)\s*$", re.IGNORECASE)


class ScoringError(Exception):
    """The run cannot be scored against (missing or unreadable files)."""


def _parse_rule(rule: str) -> list[tuple[str, str]] | None:
    """`l.a = r.b AND l.c = r.d` -> [(a, b), (c, d)]; None for any other form."""
    terms = []
    for part in re.split(r"\s+AND\s+", rule, flags=re.IGNORECASE):
        m = _RULE_TERM.match(part)
        if not m:
            return None
        terms.append((m.group(1), m.group(2)))
    return terms


def _weight_sql(model: dict[str, Any]) -> str:
    """SQL for the total match weight of a pair (columns named <col>_l / <col>_r)."""
    prior = model["probability_two_random_records_match"]
    parts = [repr(math.log2(prior / (1 - prior)))]
    for comp in model["comparisons"]:
        levels = comp["comparison_levels"]
        exact_u = {
            lv["tf_adjustment_column"]: _exact_u(levels, lv["tf_adjustment_column"])
            for lv in levels if lv.get("tf_adjustment_column")
        }
        cases = []
        for lv in levels:
            cond = lv["sql_condition"]
            if lv.get("is_null_level"):
                weight = "0.0"
            else:
                m, u = lv.get("m_probability"), lv.get("u_probability")
                if m is None or u is None:
                    weight = "0.0"
                elif m == 0:
                    weight = "-1e9"  # Splink: a Bayes factor of 0, i.e. never a match
                elif u == 0:
                    weight = "1e9"
                else:
                    weight = repr(math.log2(m / u))
                col = lv.get("tf_adjustment_column")
                w = lv.get("tf_adjustment_weight", 1.0)
                if col and w and exact_u.get(col):
                    tf = f"greatest(coalesce(tf_{col}_l, tf_{col}_r), coalesce(tf_{col}_r, tf_{col}_l))"
                    weight += (
                        f" + coalesce({w!r} * ({math.log2(exact_u[col])!r} - log2({tf})), 0.0)"
                    )
            if cond.strip().upper() == "ELSE":
                cases.append(f"ELSE {weight}")
            else:
                cases.append(f"WHEN {cond} THEN {weight}")
        if not any(c.startswith("ELSE") for c in cases):
            cases.append("ELSE 0.0")
        parts.append("(CASE " + " ".join(cases) + " END)")
    return " + ".join(parts)


def _exact_u(levels: list[dict[str, Any]], column: str) -> float | None:
    """u of the level that is exactly `column_l = column_r` (Splink's tf base)."""
    pattern = re.compile(rf'^\s*"?{column}_l"?\s*=\s*"?{column}_r"?\s*$', re.IGNORECASE)
    for lv in levels:
        if pattern.match(lv["sql_condition"]) and lv.get("u_probability"):
            return lv["u_probability"]
    return None


class RunScorer:
    """A run's records and model, ready to score identities (thread-safe)."""

    def __init__(self, run_dir: Path):
        run_dir = Path(run_dir)
        try:
            model = json.loads((run_dir / "model.json").read_text())
            settings = json.loads((run_dir / "settings.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ScoringError(f"{run_dir}: cannot read the run's model: {exc}") from exc
        records = run_dir / "records.parquet"
        if not records.is_file():
            raise ScoringError(f"{run_dir}: no records.parquet (not a link run?)")
        self._lock = threading.Lock()
        self.con = duckdb.connect()
        self.tf_columns = sorted(
            {
                lv["tf_adjustment_column"]
                for comp in model["comparisons"]
                for lv in comp["comparison_levels"]
                if lv.get("tf_adjustment_column")
            }
        )
        source = f"read_parquet('{_q(str(records))}')"
        clk_bytes = self.con.execute(
            f"SELECT max(greatest({', '.join(f'octet_length({c})' for c in CLK_COLUMNS)})) "
            f"FROM {source}"
        ).fetchall()[0][0]
        self.words = words_for_bits(8 * (clk_bytes or WORD_BYTES))
        create_dice_macro(self.con, self.words)
        clks = ", ".join(f"{clk_struct_sql(c, self.words)} AS {c}" for c in CLK_COLUMNS)
        plain = ", ".join(("source", "ref", "entity_id") + TOKEN_COLUMNS + BLOCKING_COLUMNS)
        self.con.execute(f"CREATE TABLE base AS SELECT {plain}, {clks} FROM {source}")
        self.tf: dict[str, dict[int, float]] = {}
        select_tf, joins = [], []
        for col in self.tf_columns:
            self.con.execute(
                f"CREATE TABLE tf_{col} AS SELECT {col} AS value, "
                f"count(*)::DOUBLE / sum(count(*)) OVER () AS tf FROM base "
                f"WHERE {col} IS NOT NULL GROUP BY {col}"
            )
            self.tf[col] = dict(self.con.execute(f"SELECT value, tf FROM tf_{col}").fetchall())
            select_tf.append(f"tf_{col}.tf AS tf_{col}")
            joins.append(f"LEFT JOIN tf_{col} ON tf_{col}.value = base.{col}")
        self.con.execute(
            f"CREATE TABLE records AS SELECT base.*{''.join(', ' + s for s in select_tf)} "
            f"FROM base {' '.join(joins)}"
        )
        self.con.execute("DROP TABLE base")
        self.rules = [
            r for r in (_parse_rule(x) for x in settings["splink"]["blocking_rules_to_generate_predictions"])
            if r
        ]
        self.weight_sql = _weight_sql(model)
        self.columns = (
            list(TOKEN_COLUMNS + BLOCKING_COLUMNS + CLK_COLUMNS)
            + [f"tf_{c}" for c in self.tf_columns]
        )

    def score(self, identity: dict[str, Any]) -> list[dict[str, Any]]:
        probe = self._probe(identity)
        conds, params = [], []
        for rule in self.rules:
            values = [probe.get(a) for a, _b in rule]
            if any(v is None for v in values):
                continue
            conds.append("(" + " AND ".join(f"r.{b} = ?" for _a, b in rule) + ")")
            params.extend(values)
        if not conds:
            return []
        probe_cols = []
        for col in TOKEN_COLUMNS + BLOCKING_COLUMNS:
            probe_cols.append(f"?::BIGINT AS {col}")
            params.append(probe.get(col))
        for col in CLK_COLUMNS:
            probe_cols.append(f"?::BLOB AS {col}")
            params.append(probe.get(col))
        for col in self.tf_columns:
            probe_cols.append(f"?::DOUBLE AS tf_{col}")
            params.append(self.tf[col].get(probe.get(col)))
        # Positional parameters bind in text order: the rule values (cand), then the probe.
        pair_cols = ", ".join(f"l.{c} AS {c}_l, r.{c} AS {c}_r" for c in self.columns)
        clk_structs = ", ".join(f"{clk_struct_sql(c, self.words)} AS {c}" for c in CLK_COLUMNS)
        sql = f"""
            WITH cand AS (SELECT * FROM records r WHERE {' OR '.join(conds)}),
                 l0 AS (SELECT {', '.join(probe_cols)}),
                 l AS (SELECT * REPLACE ({clk_structs}) FROM l0),
                 pairs AS (SELECT r.source, r.ref, r.entity_id, {pair_cols} FROM l, cand r)
            SELECT source, ref, entity_id, {self.weight_sql} AS match_weight FROM pairs
        """
        with self._lock:
            rows = self.con.execute(sql, params).fetchall()
        out = []
        for source, ref, entity_id, weight in rows:
            weight = max(min(weight, 1000.0), -1000.0)
            prob = 2**weight / (1 + 2**weight)
            out.append(
                {"entity_id": entity_id, "source": source, "ref": ref,
                 "match_weight": weight, "match_probability": prob}
            )
        out.sort(key=lambda c: (-c["match_probability"], c["entity_id"], c["source"], c["ref"]))
        return out

    @staticmethod
    def _probe(identity: dict[str, Any]) -> dict[str, Any]:
        unknown = set(identity) - set(TOKEN_COLUMNS + BLOCKING_COLUMNS + CLK_COLUMNS) - {"ref"}
        if unknown:
            raise ScoringError(f"identity row has unknown column(s): {', '.join(sorted(unknown))}")
        return dict(identity)


_cache: dict[tuple[str, float], RunScorer] = {}
_cache_lock = threading.Lock()


def _scorer_for(run_dir: Path) -> RunScorer:
    run_dir = Path(run_dir).resolve()
    try:
        stamp = (run_dir / "model.json").stat().st_mtime
    except OSError as exc:
        raise ScoringError(f"{run_dir}: not a link run (no model.json)") from exc
    key = (str(run_dir), stamp)
    with _cache_lock:
        scorer = _cache.get(key)
        if scorer is None:
            for old in [k for k in _cache if k[0] == key[0]]:
                _cache.pop(old).con.close()
            scorer = _cache[key] = RunScorer(run_dir)
    return scorer


def score_identity_against_run(run_dir: Path, identity: dict[str, Any]) -> list[dict[str, Any]]:
    """Score one encoded identity (a linkage row without `ref`, as
    `connectors.pseudonymise.IdentityEncoder.encode_identity` returns) against the
    records of a finished link run.

    Returns the candidate records found by the run's blocking rules, best first, each
    `{"entity_id", "source", "ref", "match_weight", "match_probability"}`; several may
    belong to one entity. The first call for a run loads it (seconds for millions of
    records); later calls reuse it.
    """
    return _scorer_for(Path(run_dir)).score(identity)


def _q(value: str) -> str:
    return value.replace("'", "''")
