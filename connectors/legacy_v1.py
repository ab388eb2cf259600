"""The first ("v1") encoding, kept only so the privacy benchmark and the attack suite can
measure it beside the default one in the same run (`EncodingSettings(scheme="v1")`).

Do not use it for new extracts: docs/PRIVACY.md and bench/RESULTS-privacy.md show how it is
broken (per-field deterministic tokens of low-entropy fields, unsalted Bloom filters whose
bigram positions are shared by every record, a swap token whose null pattern labels the day
and month). Its columns: ref, 18 `tk_*` tokens, 4 `clk_*` filters, 4 `bk_*` blocking keys.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa

from connectors.columnar import (
    _AREA_NONE,
    _CACHE_LIMIT,
    _PROBLEM_ORDER,
    EncodedBatch,
    _Distinct,
    _int64,
    _obj,
    gc_paused,
)
from connectors.keys import KeyRing
from connectors.mapping import Mapping
from connectors.pseudonymise import (
    _UNCACHED_GROUPS,
    EncodingSettings,
    KeyedHash,
    _binary_column,
    _ClkField,
    _mix64,
    blip,
    hmac_int64,
)
from connectors.records import IDENTITY_FIELDS
from connectors.standardise import (
    Problem,
    StandardIdentity,
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
    standardise_identity,
    swap_day_month,
)

# (column, key group, how to get the standardised value)
TOKEN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("tk_nhs", "nhs_number"),
    ("tk_nino", "nino"),
    ("tk_given", "name"),
    ("tk_given_canon", "name"),
    ("tk_given_phon", "name_phon"),
    ("tk_middle", "name"),
    ("tk_family", "name"),
    ("tk_family_phon", "name_phon"),
    ("tk_dob", "dob"),
    ("tk_dob_swap", "dob"),
    ("tk_dob_year", "dob_year"),
    ("tk_dob_month", "dob_month"),
    ("tk_dob_day", "dob_day"),
    ("tk_sex", "sex"),
    ("tk_postcode", "postcode"),
    ("tk_pc_sector", "pc_sector"),
    ("tk_pc_district", "pc_district"),
    ("tk_locality", "locality"),
)
CLK_COLUMNS = ("clk_name", "clk_given", "clk_family", "clk_address")
BLOCKING_COLUMNS = ("bk_fam_yob", "bk_given_dob", "bk_pc_given", "bk_fam_dob_md")
LINKAGE_COLUMNS = ("ref",) + tuple(c for c, _ in TOKEN_COLUMNS) + CLK_COLUMNS + BLOCKING_COLUMNS


def _dob_iso(i: StandardIdentity) -> str | None:
    return i.dob.isoformat() if i.dob else None


def _dob_swap(i: StandardIdentity) -> str | None:
    swapped = swap_day_month(i.dob) if i.dob else None
    return swapped.isoformat() if swapped else None


# How each token column's value is read from a StandardIdentity.
_TOKEN_VALUE = {
    "tk_nhs": lambda i: i.nhs_number,
    "tk_nino": lambda i: i.nino,
    "tk_given": lambda i: i.given,
    "tk_given_canon": lambda i: i.given_canon,
    "tk_given_phon": lambda i: i.given_phon,
    "tk_middle": lambda i: i.middle,
    "tk_family": lambda i: i.family,
    "tk_family_phon": lambda i: i.family_phon,
    "tk_dob": _dob_iso,
    "tk_dob_swap": _dob_swap,
    "tk_dob_year": lambda i: f"{i.dob.year:04d}" if i.dob else None,
    "tk_dob_month": lambda i: f"{i.dob.month:02d}" if i.dob else None,
    "tk_dob_day": lambda i: f"{i.dob.day:02d}" if i.dob else None,
    "tk_sex": lambda i: i.sex,
    "tk_postcode": lambda i: i.postcode,
    "tk_pc_sector": lambda i: i.pc_sector,
    "tk_pc_district": lambda i: i.pc_district,
    "tk_locality": lambda i: i.locality,
}


# Each blocking key mixes tokens the row already carries (see the module docstring).
BLOCKING_PARTS: dict[str, tuple[str, ...]] = {
    "bk_fam_yob": ("tk_family_phon", "tk_dob_year"),
    "bk_given_dob": ("tk_given_canon", "tk_dob"),
    "bk_pc_given": ("tk_postcode", "tk_given_phon"),
    "bk_fam_dob_md": ("tk_family_phon", "tk_dob_month", "tk_dob_day"),
}



# Width of each cached field's result tuple (for an empty batch).
_WIDTH = {"given_name": 6, "middle_names": 2, "family_name": 4, "date_of_birth": 6, "postcode": 5,
          "sex": 2, "locality": 1}


class V1IdentityEncoder:
    """Encodes standardised identities into linkage rows (tokens, CLKs, blocking keys)."""

    def __init__(
        self,
        keyring: KeyRing,
        settings: EncodingSettings | None = None,
        rng: np.random.Generator | None = None,
    ):
        self.keyring = keyring
        self.settings = settings or EncodingSettings()
        self._token_keys = {group: keyring.token_key(group) for _, group in TOKEN_COLUMNS}
        self.hashers = {group: KeyedHash(key) for group, key in self._token_keys.items()}
        self._token_cache: dict[str, dict[str, int]] = {g: {} for g in self._token_keys}
        blocking_key = keyring.blocking_key()
        self._blocking_seeds = {
            c: np.uint64(hmac_int64(blocking_key, f"blocking-rule|{c}") & (2**64 - 1))
            for c in BLOCKING_COLUMNS
        }
        bits = self.settings.clk_bits
        self._clk = {
            f: _ClkField(keyring.clk_key(f), bits, self.settings.k_for(f))
            for f in ("name", "given", "family", "address")
        }
        # BLIP must not be reproducible by anyone: seed from the OS unless a test injects one.
        self._rng = rng or np.random.default_rng(secrets.randbits(128))

    # -------------------------------------------------------------- tokens

    def _tokens(self, group: str, values: list[str | None]) -> list[int | None]:
        cache, hasher = self._token_cache[group], self.hashers[group]
        if group in _UNCACHED_GROUPS:
            return [None if v is None else hasher(v) for v in values]
        out: list[int | None] = []
        append = out.append
        for v in values:
            if v is None:
                append(None)
                continue
            t = cache.get(v)
            if t is None:
                t = hasher(v)
                if len(cache) > _CACHE_LIMIT:
                    cache.clear()
                cache[v] = t
            append(t)
        return out

    def _blocking(self, column: str, tokens: dict[str, pa.Array]) -> pa.Array:
        """A keyed blocking key: the rule's secret seed mixed with the row's part tokens."""
        seed = self._blocking_seeds[column]
        x = np.full(len(tokens["tk_dob"]), seed, dtype=np.uint64)
        valid = np.ones(len(x), dtype=bool)
        for part in BLOCKING_PARTS[column]:
            arr = tokens[part]
            valid &= arr.is_valid().to_numpy(zero_copy_only=False)
            x = _mix64(x ^ arr.fill_null(0).to_numpy().view(np.uint64))
        return pa.array(x.view(np.int64), pa.int64(), mask=~valid)

    # -------------------------------------------------------------- CLKs

    def _clks(self, idents: Sequence[StandardIdentity]) -> dict[str, pa.Array]:
        givens = [i.given for i in idents]
        families = [i.family for i in idents]
        name_f = self._clk["name"]
        results = {
            # clk_name: the union of given- and family-name bigrams (survives a swap).
            "clk_name": name_f.gather(name_f.value_index(givens), name_f.value_index(families)),
            "clk_given": self._clk["given"].gather(self._clk["given"].value_index(givens)),
            "clk_family": self._clk["family"].gather(self._clk["family"].value_index(families)),
            "clk_address": self._clk["address"].encode_words([i.address for i in idents]),
        }
        out = {}
        for column, (filters, present) in results.items():
            if self.settings.hardening == "blip":
                blip(filters, present, self.settings.blip_f, self._rng)
            out[column] = _binary_column(filters, present)
        return out

    # -------------------------------------------------------------- public

    def encode_batch(self, idents: Sequence[StandardIdentity]) -> dict[str, pa.Array]:
        """Linkage columns (all but `ref`) for a batch of standardised identities."""
        columns: dict[str, pa.Array] = {}
        for column, group in TOKEN_COLUMNS:
            getter = _TOKEN_VALUE[column]
            columns[column] = pa.array(self._tokens(group, [getter(i) for i in idents]), pa.int64())
        columns.update(self._clks(idents))
        for column in BLOCKING_COLUMNS:
            columns[column] = self._blocking(column, columns)
        return columns

    def encode_standardised(self, ident: StandardIdentity) -> dict[str, Any]:
        """One linkage row: the batch path's values, without building a column per field
        (person resolution encodes one identity per request)."""
        row: dict[str, Any] = {}
        for column, group in TOKEN_COLUMNS:
            row[column] = self._tokens(group, [_TOKEN_VALUE[column](ident)])[0]
        for column, arr in self._clks([ident]).items():
            row[column] = arr[0].as_py()
        for column in BLOCKING_COLUMNS:
            row[column] = self._blocking_one(column, row)
        return row

    def _blocking_one(self, column: str, row: dict[str, Any]) -> int | None:
        """`_blocking` for a single row: null when any part token is null."""
        x = np.array([self._blocking_seeds[column]], dtype=np.uint64)
        for part in BLOCKING_PARTS[column]:
            token = row[part]
            if token is None:
                return None
            x = _mix64(x ^ np.array([token], dtype=np.int64).view(np.uint64))
        return int(x.view(np.int64)[0])

    def encode_identity(self, raw: dict[str, str | None], mapping: Mapping | None = None) -> dict[str, Any]:
        """One linkage row without `ref`, from a raw identity (fields that fail are left null)."""
        ident, _problems = standardise_identity(raw, mapping)
        return self.encode_standardised(ident)



class V1ColumnarEncoder:
    """Standardise + encode batches of raw identities column-wise, per distinct value.

    Each repeating field keeps a cache from raw value to its finished result (the problem
    if the value is refused, else the standardised value's tokens), so after the first
    batches most values cost one dict lookup. The nearly unique fields (NHS number, NINO,
    address) are computed per distinct value of the batch without a cache.
    """

    def __init__(self, encoder: V1IdentityEncoder, mapping: Mapping | None = None, today: date | None = None):
        self.enc = encoder
        self.mapping = mapping
        self.today = today
        self.h = encoder.hashers
        spec = self._spec("date_of_birth")
        self._dob_format = spec.format if spec else None
        spec = self._spec("postcode")
        self._pc_validate = spec.validate if spec else True
        self._caches: dict[str, dict[str, tuple]] = {}
        self._dob_tokens: dict[date, tuple] = {}

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
            return (Problem("given_name", "no letters after cleaning", False), None, None, None, None, None)
        g, name = w[0], self.h["name"]
        extra = " ".join(w[1:]) if len(w) > 1 else None
        return (None, g, name(g), name(canonical_given(g)), self.h["name_phon"](phonetic(g)), extra)

    def _middle(self, v: str) -> tuple:
        m = " ".join(name_words(v)) or None
        return (m, self.h["name"](m) if m else None)

    def _family(self, v: str) -> tuple:
        w = name_words(v)
        if not w:
            return (Problem("family_name", "no letters after cleaning", False), None, None, None)
        f = " ".join(w)
        return (None, f, self.h["name"](f), self.h["name_phon"](phonetic(f)))

    def _tk(self, group: str, value: str) -> int:
        """Token of a standardised value through the encoder's per-group cache (small groups)."""
        cache = self.enc._token_cache[group]
        t = cache.get(value)
        if t is None:
            t = cache[value] = self.h[group](value)
        return t

    def _dob(self, v: str) -> tuple:
        try:
            d = parse_birth_date(v, self._dob_format, self.today)
        except ValueError as exc:
            return (Problem("date_of_birth", str(exc), False), None, None, None, None, None)
        # The same date in another format: reuse its tokens.
        done = self._dob_tokens.get(d)
        if done is None:
            swap = swap_day_month(d)
            done = self._dob_tokens[d] = (
                None, self.h["dob"](d.isoformat()), self.h["dob"](swap.isoformat()) if swap else None,
                self._tk("dob_year", f"{d.year:04d}"), self._tk("dob_month", f"{d.month:02d}"),
                self._tk("dob_day", f"{d.day:02d}"))
            if len(self._dob_tokens) > _CACHE_LIMIT:
                self._dob_tokens.clear()
        return done

    def _postcode(self, v: str) -> tuple:
        try:
            pc, sector, district = standard_postcode(v, self._pc_validate)
        except ValueError as exc:
            return (Problem("postcode", str(exc), False), None, None, None, _AREA_NONE)
        area = json.dumps({"postcode_district": district, "postcode_sector": sector}, separators=(",", ":"))
        return (None, self.h["postcode"](pc), self._tk("pc_sector", sector) if sector else None,
                self._tk("pc_district", district) if district else None, area)

    def _sex(self, v: str) -> tuple:
        try:
            sex = standard_sex(v)
        except ValueError as exc:
            return (Problem("sex", str(exc), False), None)
        return (None, self.h["sex"](sex) if sex else None)

    def _locality(self, v: str) -> tuple:
        text = standard_text(v)
        return (self.h["locality"](text) if text else None,)

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
        tok: dict[str, tuple[np.ndarray, np.ndarray]] = {}
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
        g_problem, givens, t_given, t_canon, t_phon, extra = self._results("given_name", dg, self._given)
        add_problems("given_name", dg, g_problem)
        tok["tk_given"], tok["tk_given_canon"], tok["tk_given_phon"] = spread(dg, t_given, t_canon, t_phon)

        dm = _Distinct(col["middle_names"])
        middles, t_middle = self._results("middle_names", dm, self._middle)
        (mid_vals, mid_valid), = spread(dm, t_middle)
        extra_rows = dg.gather(_obj(extra), None)
        for i in np.flatnonzero(extra_rows != None):  # noqa: E711 (object array compare)
            j = dm.index[i]
            joined = extra_rows[i] + (" " + middles[j] if j >= 0 and middles[j] else "")
            mid_vals[i] = self.h["name"](joined)
            mid_valid[i] = True
        tok["tk_middle"] = (mid_vals, mid_valid)

        df = _Distinct(col["family_name"])
        f_problem, families, t_family, t_fphon = self._results("family_name", df, self._family)
        add_problems("family_name", df, f_problem)
        tok["tk_family"], tok["tk_family_phon"] = spread(df, t_family, t_fphon)

        dd = _Distinct(col["date_of_birth"])
        d_problem, *t_dob = self._results("date_of_birth", dd, self._dob)
        add_problems("date_of_birth", dd, d_problem)
        (tok["tk_dob"], tok["tk_dob_swap"], tok["tk_dob_year"], tok["tk_dob_month"],
         tok["tk_dob_day"]) = spread(dd, *t_dob)

        # postcode (+ sector and district, which are also the content's area code)
        dp = _Distinct(col["postcode"])
        p_problem, t_pc, t_sector, t_district, area = self._results("postcode", dp, self._postcode)
        add_problems("postcode", dp, p_problem)
        tok["tk_postcode"], tok["tk_pc_sector"], tok["tk_pc_district"] = spread(dp, t_pc, t_sector, t_district)
        area_rows = dp.gather(_obj(area), _AREA_NONE)

        for field, fn, fast, column in (("nino", standard_nino, ninos_fast, "tk_nino"),
                                        ("nhs_number", standard_nhs_number, nhs_numbers_fast, "tk_nhs")):
            d = _Distinct(col[field])
            problems, tok[column] = self._identifier(field, d, fn, fast)
            add_problems(field, d, problems)

        ds = _Distinct(col["sex"])
        s_problem, t_sex = self._results("sex", ds, self._sex)
        add_problems("sex", ds, s_problem)
        tok["tk_sex"], = spread(ds, t_sex)

        dl = _Distinct(col["locality"])
        (t_locality,) = self._results("locality", dl, self._locality)
        tok["tk_locality"], = spread(dl, t_locality)

        # address: only its CLK is linked on; standardised per distinct value (lru-cached)
        da = _Distinct(col["address"])
        addresses = list(map(standard_text, da.values))
        has_address = da.gather(np.fromiter(map(bool, addresses), dtype=bool, count=da.n), False)

        # ------------------------------------------------ the usable-row rule (vectorised)
        has_name = tok["tk_given"][1] | tok["tk_family"][1]
        has_other = (tok["tk_dob"][1] | tok["tk_nhs"][1] | tok["tk_nino"][1]
                     | tok["tk_postcode"][1] | has_address)
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
        columns: dict[str, pa.Array] = {}
        for name, (values, valid) in tok.items():
            columns[name] = pa.array(values[keep], pa.int64(), mask=~valid[keep])
        columns.update(self._clks(dg, list(givens), df, list(families), da, addresses, keep))
        for name in BLOCKING_COLUMNS:
            columns[name] = self.enc._blocking(name, columns)
        kept_ids = [local_ids[i] for i in keep]
        return EncodedBatch(accepted, problems, columns, kept_ids, area_rows[keep].tolist())

    # ---------------------------------------------------------------- CLKs

    def _clks(self, dg: _Distinct, givens: list, df: _Distinct, families: list,
              da: _Distinct, addresses: list, keep: np.ndarray) -> dict[str, pa.Array]:
        clk = self.enc._clk
        # One value_index call per field, so a cache reset cannot split a batch's indexes.
        name_idx = clk["name"].value_index(givens + families)
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {
            "clk_name": clk["name"].gather(
                dg.gather(name_idx[: dg.n], -1)[keep], df.gather(name_idx[dg.n:], -1)[keep]),
            "clk_given": clk["given"].gather(dg.gather(clk["given"].value_index(givens), -1)[keep]),
            "clk_family": clk["family"].gather(df.gather(clk["family"].value_index(families), -1)[keep]),
        }
        # Addresses are nearly unique: encode the batch's distinct addresses, then gather rows.
        filters, present = clk["address"].encode_words(addresses)
        rows = da.index[keep]
        ext_f = np.vstack([filters, np.zeros((1, filters.shape[1]), dtype=np.uint8)])
        ext_p = np.append(present, False)
        out["clk_address"] = (ext_f[rows], ext_p[rows])
        settings = self.enc.settings
        result = {}
        for column in ("clk_name", "clk_given", "clk_family", "clk_address"):
            filt, pres = out[column]
            if settings.hardening == "blip":
                blip(filt, pres, settings.blip_f, self.enc._rng)
            result[column] = _binary_column(filt, pres)
        return result


