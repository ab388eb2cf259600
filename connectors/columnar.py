"""The batch path: standardise and encode a whole batch column by column, per distinct value.

`standardise_identity` + `IdentityEncoder.encode_batch` handle one record at a time, which
costs ~40 µs a record in Python. In a real source most identity values repeat heavily
(given names, family names, dates of birth, postcodes, localities), so this module
standardises and tokenises each *distinct* raw value of a batch once (pyarrow
dictionary-encodes each column), then spreads the per-value results back to the rows with
numpy gathers. Only the nearly unique fields (NHS number, NINO, address) cost Python work
per row, and that is one standardise + one HMAC per value.

The results are the same as the per-record path (`IdentityEncoder.encode_batch`), value for value: the same standardise
functions, the same keys, the same caches of the `IdentityEncoder` it wraps, the same
problems in the same order and the same usable-row rule (tests/connectors/
test_columnar.py compares both paths on messy input).
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors.mapping import Mapping
from connectors.pseudonymise import IdentityEncoder, Parts, _dm
from connectors.records import IDENTITY_FIELDS
from connectors.standardise import (
    EARLIEST_BIRTH_YEAR,
    Problem,
    canonical_given,
    name_words,
    nhs_numbers_fast,
    ninos_fast,
    parse_birth_date,
    phonetic,
    standard_nhs_number,
    standard_nino,
    standard_postcode,
    standard_sex,
    standard_text,
)

# Width of each cached field's result tuple (for an empty batch).
_WIDTH = {"given_name": 5, "middle_names": 2, "family_name": 4, "date_of_birth": 7, "postcode": 5,
          "sex": 1, "locality": 1}
# Order in which standardise_identity reports a row's dropped fields.
_PROBLEM_ORDER = ("given_name", "family_name", "date_of_birth", "postcode", "nino", "nhs_number", "sex")


@dataclass
class EncodedBatch:
    """A standardised and encoded batch: linkage columns of the accepted rows, and the rest."""

    accepted: np.ndarray  # bool per input row
    problems: dict[int, list[Problem]]  # input row index -> problems (dropped fields, then fatal)
    columns: dict[str, pa.Array]  # linkage columns (all but `ref`), accepted rows only
    local_ids: list[str]  # accepted rows
    area_json: list[str]  # accepted rows: the content's "area" object as compact sorted JSON


class _Distinct:
    """One column dictionary-encoded: distinct non-blank values and each row's index (-1 = none)."""

    def __init__(self, values: Sequence[str | None]):
        arr = pc.dictionary_encode(pa.array(values, pa.string()))
        self.dictionary: pa.StringArray = arr.dictionary
        self.values: list[str] = self.dictionary.to_pylist()
        self.index = arr.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        self.n = len(self.values)
        # Blank values ("", "  ") count as missing, as in standardise_identity: `not v.strip()`
        # is `v == "" or v.isspace()` (the same whitespace table), and map() keeps it in C.
        blank = np.fromiter(map(str.isspace, self.values), dtype=bool, count=self.n)
        if "" in self.values:
            blank[self.values.index("")] = True
        if blank.any():
            self.index[blank[np.maximum(self.index, 0)] & (self.index >= 0)] = -1

    def gather(self, per_value: np.ndarray, missing: Any) -> np.ndarray:
        """Per-row array from a per-distinct-value array (rows without a value get `missing`)."""
        ext = np.empty(self.n + 1, dtype=per_value.dtype)
        ext[: self.n] = per_value
        ext[self.n] = missing
        return ext[self.index]


def _int64(tokens: Sequence[int | None]) -> tuple[np.ndarray, np.ndarray]:
    """(values with 0 for None, validity) of a list of tokens."""
    arr = pa.array(tokens, pa.int64())
    return arr.fill_null(0).to_numpy(), arr.is_valid().to_numpy(zero_copy_only=False)


def _obj(values: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


# Per-raw-value results kept across batches (per field) before a cache is cleared.
_CACHE_LIMIT = 300_000
_AREA_NONE = '{"postcode_district":null,"postcode_sector":null}'


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic GC off for one batch, back on after (if it was on).

    A batch allocates many short-lived containers and makes no reference cycles, while the
    caches hold hundreds of thousands of long-lived ones; the full collections those
    allocations trigger re-walk the caches each time (measured: ~20% of a batch's time).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class ColumnarEncoder:
    """Standardise + encode batches of raw identities column-wise, per distinct value.

    Each repeating field keeps a cache from raw value to its finished result (the problem
    if the value is refused, else the standardised value's part tokens), so after the first
    batches most values cost one dict lookup. The nearly unique fields (NHS number, NINO,
    address) are computed per distinct value of the batch without a cache. Match keys and
    salted filters are then made for the whole batch by `IdentityEncoder.finish`.
    """

    def __init__(self, encoder: IdentityEncoder, mapping: Mapping | None = None, today: date | None = None):
        self.enc = encoder
        self.mapping = mapping
        self.today = today
        self.h = encoder.hashers
        self.part = encoder.part_token
        spec = self._spec("date_of_birth")
        self._dob_format = spec.format if spec else None
        spec = self._spec("postcode")
        self._pc_validate = spec.validate if spec else True
        self._caches: dict[str, dict[str, tuple]] = {}
        self._dob_parts: dict[date, tuple] = {}
        self._dob_by_key: dict[int, tuple] = {}  # yyyymmdd -> the date's finished result

    def _spec(self, name: str) -> Any:
        return self.mapping.identity.get(name) if self.mapping is not None else None

    def _results(self, field: str, d: _Distinct, compute: Callable[[str], tuple]) -> list[tuple]:
        """compute(v) for each distinct value, through the field's cross-batch cache; transposed."""
        cache = self._caches.setdefault(field, {})
        if len(cache) + d.n > _CACHE_LIMIT:
            cache.clear()
        out = list(map(cache.get, d.values))  # in C: most values are cached after the first batches
        if None in out:
            for j, r in enumerate(out):
                if r is None:
                    v = d.values[j]
                    out[j] = cache[v] = compute(v)
        return list(zip(*out, strict=True)) if out else [()] * _WIDTH[field]

    # ------------------------------------------------------- per raw value (cached)

    def _given(self, v: str) -> tuple:
        w = name_words(v)
        if not w:
            return (Problem("given_name", "no letters after cleaning", False), None, None, None, None)
        g = w[0]
        extra = " ".join(w[1:]) if len(w) > 1 else None
        return (None, g, self.part("given_canon", canonical_given(g)), self.part("name_phon", phonetic(g)), extra)

    def _middle(self, v: str) -> tuple:
        m = " ".join(name_words(v)) or None
        return (m, self.part("middle", m) if m else None)

    def _family(self, v: str) -> tuple:
        w = name_words(v)
        if not w:
            return (Problem("family_name", "no letters after cleaning", False), None, None, None)
        f = " ".join(w)
        return (None, f, self.part("family", f), self.part("name_phon", phonetic(f)))

    def _dob(self, v: str) -> tuple:
        try:
            d = parse_birth_date(v, self._dob_format, self.today)
        except ValueError as exc:
            return (Problem("date_of_birth", str(exc), False), None, None, None, None, None, None)
        # The same date in another format: reuse its parts.
        return self._dob_parts_of(d)

    def _dob_parts_of(self, d: date) -> tuple:
        """(None, dob, year, month, day, daymonth tokens, d): the finished result of a valid date."""
        done = self._dob_parts.get(d)
        if done is None:
            part = self.part
            done = self._dob_parts[d] = (
                None, part("dob", d.isoformat()), part("year", f"{d.year:04d}"),
                part("month", f"{d.month:02d}"), part("day", f"{d.day:02d}"), part("daymonth", _dm(d)), d)
            if len(self._dob_parts) > _CACHE_LIMIT:
                self._dob_parts.clear()
        return done

    def _dob_results(self, d: _Distinct) -> list[tuple]:
        """`_results("date_of_birth", d, self._dob)`, with the clean values parsed for the
        whole column at once: exactly 10 ASCII characters in the mapping's format
        (YYYY-MM-DD or DD/MM/YYYY; either when the mapping names none), a real date, not
        before EARLIEST_BIRTH_YEAR and not in the future. strptime and the default patterns
        read such a value as the same date; every other value goes through `_dob`."""
        shapes = _DOB_SHAPES.get(self._dob_format)
        if shapes is None or d.n == 0:
            return self._results("date_of_birth", d, self._dob)
        ymd, ok = _parse_dates(d.dictionary, shapes, self.today or date.today())
        if not ok.any():
            return self._results("date_of_birth", d, self._dob)
        out: list[tuple | None] = [None] * d.n
        keys = ymd[ok]
        distinct, inverse = np.unique(keys, return_inverse=True)
        found = list(map(self._dob_by_key.get, distinct.tolist()))
        new = [j for j, r in enumerate(found) if r is None]
        if new:
            if len(self._dob_by_key) + len(new) > _CACHE_LIMIT:
                self._dob_by_key.clear()
            for j, r in zip(new, self._new_dates(distinct[new]), strict=True):
                found[j] = self._dob_by_key[int(distinct[j])] = r
        for j, k in zip(np.flatnonzero(ok).tolist(), inverse.ravel().tolist(), strict=True):
            out[j] = found[k]
        rest = np.flatnonzero(~ok).tolist()
        if rest:
            cache = self._caches.setdefault("date_of_birth", {})
            if len(cache) + len(rest) > _CACHE_LIMIT:
                cache.clear()
            for j in rest:
                v = d.values[j]
                r = cache.get(v)
                out[j] = r if r is not None else cache.setdefault(v, self._dob(v))
        return list(zip(*out, strict=True))

    def _new_dates(self, keys: np.ndarray) -> list[tuple]:
        """`_dob_parts_of` of many dates given as yyyymmdd: the date-of-birth HMACs in one
        loop, the year, month, day and daymonth tokens once per distinct value."""
        y, m, d = (keys // 10000).tolist(), (keys // 100 % 100).tolist(), (keys % 100).tolist()
        dob = self.h["dob"].many([f"{a:04d}-{b:02d}-{c:02d}" for a, b, c in zip(y, m, d, strict=True)]).tolist()
        part = self.part
        years = {v: part("year", f"{v:04d}") for v in set(y)}
        months = {v: part("month", f"{v:02d}") for v in set(m)}
        days = {v: part("day", f"{v:02d}") for v in set(d)}
        dms = {}
        out = []
        for a, b, c, t in zip(y, m, d, dob, strict=True):
            lo, hi = (b, c) if b < c else (c, b)
            dm = dms.get(lo * 100 + hi)
            if dm is None:
                dm = dms[lo * 100 + hi] = part("daymonth", f"{lo:02d}{hi:02d}")
            out.append((None, t, years[a], months[b], days[c], dm, date(a, b, c)))
        return out

    def _postcode(self, v: str) -> tuple:
        try:
            pc, sector, district = standard_postcode(v, self._pc_validate)
        except ValueError as exc:
            return (Problem("postcode", str(exc), False), None, None, None, _AREA_NONE)
        area = json.dumps({"postcode_district": district, "postcode_sector": sector}, separators=(",", ":"))
        return (None, self.part("postcode", pc), self.part("sector", sector) if sector else None,
                self.part("district", district) if district else None, area)

    def _sex(self, v: str) -> tuple:
        # Validated (a bad value is reported as before) but not encoded: sex is low-entropy.
        try:
            standard_sex(v)
        except ValueError as exc:
            return (Problem("sex", str(exc), False),)
        return (None,)

    def _locality(self, v: str) -> tuple:
        text = standard_text(v)
        return (self.part("locality", text) if text else None,)

    def _identifier(
        self, field: str, d: _Distinct, fn: Callable[[str], str],
        fast: Callable[[pa.StringArray], tuple[np.ndarray, pa.Array]],
    ) -> tuple[list[Problem | None], tuple[np.ndarray, np.ndarray]]:
        """NHS number / NINO: nearly unique, so computed per distinct value without a cache.

        Returns the per-value problems and per-row (tokens, validity)."""
        spec = self._spec(field)
        problems: list[Problem | None] = [None] * d.n
        if spec is not None and not spec.validate:
            std = ["".join(v.split()).upper() for v in d.values]
            ok = np.ones(d.n, dtype=bool)
        else:
            # Clean values are checked for the whole column at once; the rest one by one.
            ok, fast_std = fast(d.dictionary)
            std_all: list[str | None] = fast_std.to_pylist()
            for j in np.flatnonzero(~ok).tolist():
                try:
                    std_all[j] = fn(d.values[j])
                    ok[j] = True
                except ValueError as exc:
                    problems[j] = Problem(field, str(exc), False)
            std = [v for v, good in zip(std_all, ok.tolist(), strict=True) if good]
        values = np.zeros(d.n, dtype=np.int64)
        values[ok] = self.h[field].many(std)
        return problems, (d.gather(values, 0), d.gather(ok, False))

    # ---------------------------------------------------------------- the batch

    def encode_columns(self, cols: dict[str, Sequence[str | None]]) -> EncodedBatch:
        """Standardise and encode a batch given as columns of raw strings (IDENTITY_FIELDS names)."""
        with gc_paused():
            return self._encode_columns(cols)

    def _encode_columns(self, cols: dict[str, Sequence[str | None]]) -> EncodedBatch:
        n = len(next(iter(cols.values()))) if cols else 0
        none = [None] * n
        col = {f: cols.get(f, none) for f in IDENTITY_FIELDS}
        parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        ids: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        row_problem: dict[str, np.ndarray] = {}  # field -> per-row Problem or None

        def spread(d: _Distinct, *columns: Sequence[int | None]) -> list[tuple[np.ndarray, np.ndarray]]:
            out = []
            for tokens in columns:
                values, valid = _int64(tokens)
                out.append((d.gather(values, 0), d.gather(valid, False)))
            return out

        def add_problems(field: str, d: _Distinct, problems: Sequence[Problem | None]) -> None:
            if any(p is not None for p in problems):
                row_problem[field] = d.gather(_obj(problems), None)

        # local id: stripped per row (unique per row, nothing to share)
        raw_ids = col["local_id"]
        has_id: np.ndarray | None = None
        if None not in raw_ids:  # the usual case: str.strip mapped in C, blanks patched after
            local_ids: list[str | None] = list(map(str.strip, raw_ids))
            if "" in local_ids:
                local_ids = [v or None for v in local_ids]
            else:
                has_id = np.ones(n, dtype=bool)
        else:
            local_ids = [v.strip() or None if v is not None else None for v in raw_ids]
        if has_id is None:
            has_id = np.fromiter((v is not None for v in local_ids), dtype=bool, count=n)

        # given name: the first word is `given`, further words join the middle names
        dg = _Distinct(col["given_name"])
        g_problem, givens, t_canon, t_phon, extra = self._results("given_name", dg, self._given)
        add_problems("given_name", dg, g_problem)
        parts["g_canon"], parts["g_phon"] = spread(dg, t_canon, t_phon)

        dm = _Distinct(col["middle_names"])
        middles, t_middle = self._results("middle_names", dm, self._middle)
        (mid_vals, mid_valid), = spread(dm, t_middle)
        extra_rows = dg.gather(_obj(extra), None)
        for i in np.flatnonzero(extra_rows != None):  # noqa: E711 (object array compare)
            j = dm.index[i]
            joined = extra_rows[i] + (" " + middles[j] if j >= 0 and middles[j] else "")
            mid_vals[i] = self.part("middle", joined)
            mid_valid[i] = True
        parts["middle"] = (mid_vals, mid_valid)

        df = _Distinct(col["family_name"])
        f_problem, families, t_family, t_fphon = self._results("family_name", df, self._family)
        add_problems("family_name", df, f_problem)
        parts["fam"], parts["f_phon"] = spread(df, t_family, t_fphon)

        dd = _Distinct(col["date_of_birth"])
        d_problem, *t_dob, _dates = self._dob_results(dd)
        add_problems("date_of_birth", dd, d_problem)
        parts["dob"], parts["year"], parts["month"], parts["day"], parts["dm"] = spread(dd, *t_dob)

        # postcode (+ sector and district, which are also the content's area code)
        dp = _Distinct(col["postcode"])
        p_problem, t_pc, t_sector, t_district, area = self._results("postcode", dp, self._postcode)
        add_problems("postcode", dp, p_problem)
        parts["pc"], parts["sector"], parts["district"] = spread(dp, t_pc, t_sector, t_district)
        area_rows = dp.gather(_obj(area), _AREA_NONE)

        for field, fn, fast, column in (("nino", standard_nino, ninos_fast, "tk_nino"),
                                        ("nhs_number", standard_nhs_number, nhs_numbers_fast, "tk_nhs")):
            d = _Distinct(col[field])
            problems, ids[column] = self._identifier(field, d, fn, fast)
            add_problems(field, d, problems)

        ds = _Distinct(col["sex"])
        (s_problem,) = self._results("sex", ds, self._sex)
        add_problems("sex", ds, s_problem)

        dl = _Distinct(col["locality"])
        (t_locality,) = self._results("locality", dl, self._locality)
        parts["locality"], = spread(dl, t_locality)

        # address: only its CLK is linked on; standardised per distinct value (lru-cached)
        da = _Distinct(col["address"])
        addresses = list(map(standard_text, da.values))
        has_address = da.gather(np.fromiter(map(bool, addresses), dtype=bool, count=da.n), False)

        # ------------------------------------------------ the usable-row rule (vectorised)
        has_name = parts["g_canon"][1] | parts["fam"][1]
        has_other = (parts["dob"][1] | ids["tk_nhs"][1] | ids["tk_nino"][1]
                     | parts["pc"][1] | has_address)
        accepted = has_id & has_name & has_other
        problems: dict[int, list[Problem]] = {}
        any_problem = ~accepted
        for arr in row_problem.values():
            any_problem = any_problem | (arr != None)  # noqa: E711
        for i in np.flatnonzero(any_problem):
            found = [p for f in _PROBLEM_ORDER if f in row_problem and (p := row_problem[f][i]) is not None]
            if not has_id[i]:
                found.append(Problem("local_id", "missing local id", True))
            elif not has_name[i]:
                found.append(Problem("name", "no given or family name", True))
            elif not has_other[i]:
                found.append(Problem(
                    "date_of_birth", "no valid date of birth, NHS number, NINO, postcode or address", True))
            problems[int(i)] = found

        # ------------------------------------------------ linkage columns of accepted rows
        keep = np.flatnonzero(accepted)
        kept_parts: Parts = {
            name: (values[keep].view(np.uint64), valid[keep]) for name, (values, valid) in parts.items()}
        kept_ids = {name: (values[keep], valid[keep]) for name, (values, valid) in ids.items()}
        filters = self._filters(dg, list(givens), df, list(families), da, addresses, keep)
        columns = self.enc.finish(kept_parts, kept_ids, filters)
        kept_local = [local_ids[i] for i in keep]
        return EncodedBatch(accepted, problems, columns, kept_local, area_rows[keep].tolist())

    # ---------------------------------------------------------------- CLKs (unsalted)

    def _filters(self, dg: _Distinct, givens: list, df: _Distinct, families: list,
                 da: _Distinct, addresses: list, keep: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        clk = self.enc._clk
        out = {
            "clk_given": clk["given"].gather(dg.gather(clk["given"].value_index(givens), -1)[keep]),
            "clk_family": clk["family"].gather(df.gather(clk["family"].value_index(families), -1)[keep]),
        }
        # Addresses are nearly unique: encode the batch's distinct addresses, then gather rows.
        filters, present = clk["address"].encode_words(addresses)
        rows = da.index[keep]
        ext_f = np.vstack([filters, np.zeros((1, filters.shape[1]), dtype=np.uint8)])
        ext_p = np.append(present, False)
        out["clk_address"] = (ext_f[rows], ext_p[rows])
        return out


# Date formats whose clean 10-character values are parsed for a whole column at once:
# mapping format -> the shapes accepted, each (year, month, day offsets, separator positions).
_ISO_SHAPE = ((0, 5, 8), (4, 7), ord("-"))
_UK_SHAPE = ((6, 3, 0), (2, 5), ord("/"))
_DOB_SHAPES: dict[str | None, tuple] = {"%Y-%m-%d": (_ISO_SHAPE,), "%d/%m/%Y": (_UK_SHAPE,), None: (_ISO_SHAPE, _UK_SHAPE)}
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _parse_dates(values: pa.StringArray, shapes: tuple, today: date) -> tuple[np.ndarray, np.ndarray]:
    """(yyyymmdd as int64, ok) per value: ok where the value is exactly one of `shapes` in
    ASCII digits and a real date from EARLIEST_BIRTH_YEAR to `today`."""
    n = len(values)
    ymd = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset : values.offset + n + 1]
    data = values.buffers()[2]
    ten = (np.diff(offsets) == 10) if data is not None else np.zeros(n, dtype=bool)
    if values.null_count:
        ten &= values.is_valid().to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(ten)
    if rows.size == 0:
        return ymd, ok
    raw = np.frombuffer(data, dtype=np.uint8)
    chars = raw[offsets[rows][:, None] + np.arange(10)].astype(np.int64)  # (m, 10)
    digit = (chars >= 48) & (chars <= 57)
    def number(at: int, width: int) -> np.ndarray:
        out = np.zeros(len(rows), dtype=np.int64)
        for k in range(at, at + width):
            out = out * 10 + (chars[:, k] - 48)
        return out

    for (y_at, m_at, d_at), seps, sep in shapes:
        shape_ok = np.ones(len(rows), dtype=bool)
        for k in range(10):
            shape_ok &= (chars[:, k] == sep) if k in seps else digit[:, k]
        y, m, d = number(y_at, 4), number(m_at, 2), number(d_at, 2)
        leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
        month_ok = (m >= 1) & (m <= 12)
        days = _DAYS_IN_MONTH[np.where(month_ok, m, 0)] + (leap & (m == 2))
        key = y * 10000 + m * 100 + d
        good = (shape_ok & month_ok & (d >= 1) & (d <= days) & (y >= EARLIEST_BIRTH_YEAR)
                & (key <= today.year * 10000 + today.month * 100 + today.day) & ~ok[rows])
        ymd[rows[good]] = key[good]
        ok[rows[good]] = True
    return ymd, ok


def records_to_columns(identities: Sequence[dict[str, str | None]]) -> dict[str, list[str | None]]:
    """Rows of raw identities (dicts) as columns under IDENTITY_FIELDS names."""
    return {f: [r.get(f) for r in identities] for f in IDENTITY_FIELDS}
