"""Linkage settings: one plain JSON document, saved with every run, reloadable and diffable.

    {"schema_version": 1,
     "thresholds": {"cluster_match_probability": 0.95, "report_match_probability": 0.5},
     "clustering": {"one_record_per_source": false,    # optional
                    "identifier_guard": "within_source" | "across_sources"},
     "training": {...},          # how u, m and lambda are estimated
     "splink": {...}}            # a Splink 5 settings dictionary over the encoded columns

The Splink part compares encodings only (docs/CONTRACTS.md "The split extract"): exact
agreement on keyed tokens (term-frequency adjusted), partial levels on token parts and
phonetic / canonical forms, and Dice similarity of the Bloom filters computed in DuckDB.
Every record of every extract is stacked into one table, so one `dedupe_only` model finds
both cross-source links and duplicates inside a source.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

from connectors.files import read_document
from linkage.clk import DICE_FUNCTION

SCHEMA_VERSION = 1

# Which records' NHS numbers and NINOs must agree for a merge (linkage.clustering):
# "within_source" compares them only between records of one source (a settings file
# without the key keeps this, the first behaviour); "across_sources" between any two.
IDENTIFIER_GUARDS = ("within_source", "across_sources")

# The encoded columns a linkage.parquet carries (besides `ref`), encoding "v2" (the default;
# connectors.pseudonymise): identifier tokens, match keys (combinations of fields, also the
# blocking keys) and Bloom filters salted by the date of birth (a Dice level between two
# records is meaningful only when their dates of birth agree or are transposed).
MATCH_KEY_COLUMNS = (
    "mk_name_dob", "mk_names_dobt", "mk_given_dob", "mk_family_dob", "mk_names_yob",
    "mk_names_ym", "mk_names_md", "mk_names_yd", "mk_names_pc", "mk_names_locality",
    "mk_dob_pc", "mk_dob_sector",
)
# Written only when the connectors' encoding has `extra_match_keys` (see
# connectors.pseudonymise); a linkage file without them reads them as nulls.
OPTIONAL_KEY_COLUMNS = (
    "mk_names", "mk_given_pc", "mk_family_pc", "mk_dob_locality", "mk_given_locality", "mk_family_locality",
)
TOKEN_COLUMNS = ("tk_nhs", "tk_nino") + MATCH_KEY_COLUMNS + OPTIONAL_KEY_COLUMNS
CLK_COLUMNS = ("clk_given", "clk_family", "clk_address", "clk_given_pc", "clk_family_pc", "clk_address_dob")
BLOCKING_COLUMNS: tuple[str, ...] = ()  # the match keys are the blocking keys
ENCODED_COLUMNS = TOKEN_COLUMNS + CLK_COLUMNS
# Columns whose equality means "the same identity values" (stable entity ids across runs).
FINGERPRINT_COLUMNS = ("tk_nhs", "tk_nino", "mk_name_dob", "mk_dob_pc", "mk_names_locality")

# The previous encoding ("v1", connectors.legacy_v1), kept so that bench/bench_privacy.py can
# link it beside the default one in the same run (`v1_settings()`).
V1_TOKEN_COLUMNS = (
    "tk_nhs", "tk_nino", "tk_given", "tk_given_canon", "tk_given_phon", "tk_middle",
    "tk_family", "tk_family_phon", "tk_dob", "tk_dob_swap", "tk_dob_year", "tk_dob_month",
    "tk_dob_day", "tk_sex", "tk_postcode", "tk_pc_sector", "tk_pc_district", "tk_locality",
)
V1_CLK_COLUMNS = ("clk_name", "clk_given", "clk_family", "clk_address")
V1_BLOCKING_COLUMNS = ("bk_fam_yob", "bk_given_dob", "bk_pc_given", "bk_fam_dob_md")
V1_FINGERPRINT_COLUMNS = (
    "tk_nhs", "tk_nino", "tk_given", "tk_middle", "tk_family", "tk_dob", "tk_sex",
    "tk_postcode", "tk_locality",
)


class SettingsError(Exception):
    """A linkage settings document is unreadable or invalid."""


def dice_sql(column: str) -> str:
    """Dice coefficient of a pair's two CLKs.

    `jup_dice` is a DuckDB macro over the CLK word structs of the stacked records table
    (`linkage.clk`): integer popcounts of 128-bit words, with each CLK's own popcount
    computed once per record rather than once per pair.
    """
    return f"{DICE_FUNCTION}({column}_l, {column}_r)"


def _null(*columns: str) -> dict[str, Any]:
    cond = " OR ".join(f"{c}_l IS NULL OR {c}_r IS NULL" for c in columns)
    return {"sql_condition": cond, "label_for_charts": "missing", "is_null_level": True}


def _exact(column: str, label: str, tf: bool = False) -> dict[str, Any]:
    level: dict[str, Any] = {"sql_condition": f"{column}_l = {column}_r", "label_for_charts": label}
    if tf:
        level["tf_adjustment_column"] = column
        level["tf_adjustment_weight"] = 1.0
    return level


def _dice(column: str, at_least: float) -> dict[str, Any]:
    return {
        "sql_condition": f"{dice_sql(column)} >= {at_least}",
        "label_for_charts": f"Dice >= {at_least}",
    }


def _name_swapped() -> dict[str, Any]:
    # Given and family names transposed: the full-name CLK still agrees (same bigrams
    # but the ones at the join), while the per-field ones do not.
    return {
        "sql_condition": f"{dice_sql('clk_name')} >= 0.8",
        "label_for_charts": "full name Dice >= 0.8 (swapped?)",
    }


_ELSE = {"sql_condition": "ELSE", "label_for_charts": "all other"}


def _comparison(name: str, description: str, levels: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "output_column_name": name,
        "comparison_description": description,
        "comparison_levels": [*levels, dict(_ELSE)],
    }


def _v1_comparisons() -> list[dict[str, Any]]:
    return [
        _comparison("nhs_number", "NHS number token", [_null("tk_nhs"), _exact("tk_nhs", "exact")]),
        _comparison("nino", "NI number token", [_null("tk_nino"), _exact("tk_nino", "exact")]),
        _comparison(
            "given_name",
            "given name: token, nickname form, CLK Dice, phonetic code",
            [
                _null("clk_given"),
                _exact("tk_given", "exact", tf=True),
                _exact("tk_given_canon", "same canonical (nickname) form"),
                _dice("clk_given", 0.8),
                _exact("tk_given_phon", "same phonetic code"),
                _name_swapped(),
                _dice("clk_given", 0.6),
            ],
        ),
        _comparison(
            "middle_names", "middle names token", [_null("tk_middle"), _exact("tk_middle", "exact")]
        ),
        _comparison(
            "family_name",
            "family name: token, CLK Dice, phonetic code",
            [
                _null("clk_family"),
                _exact("tk_family", "exact", tf=True),
                _dice("clk_family", 0.8),
                _exact("tk_family_phon", "same phonetic code"),
                _name_swapped(),
                _dice("clk_family", 0.6),
            ],
        ),
        _comparison(
            "date_of_birth",
            "date of birth: token, day/month swap, parts",
            [
                _null("tk_dob"),
                _exact("tk_dob", "exact"),
                {"sql_condition": "tk_dob_l = tk_dob_swap_r", "label_for_charts": "day and month swapped"},
                {
                    "sql_condition": (
                        "(tk_dob_year_l = tk_dob_year_r AND tk_dob_month_l = tk_dob_month_r) OR "
                        "(tk_dob_year_l = tk_dob_year_r AND tk_dob_day_l = tk_dob_day_r) OR "
                        "(tk_dob_month_l = tk_dob_month_r AND tk_dob_day_l = tk_dob_day_r)"
                    ),
                    "label_for_charts": "two of year, month, day",
                },
                _exact("tk_dob_year", "same year"),
            ],
        ),
        _comparison("sex", "sex token", [_null("tk_sex"), _exact("tk_sex", "exact")]),
        # Postcode, address and locality in one comparison: they move together (a whole
        # household shares them), so scoring them separately would count one fact thrice.
        _comparison(
            "address",
            "where they live: postcode token and parts, address CLK Dice, locality",
            [
                {
                    "sql_condition": "(clk_address_l IS NULL OR clk_address_r IS NULL) AND "
                    "(tk_postcode_l IS NULL OR tk_postcode_r IS NULL)",
                    "label_for_charts": "missing",
                    "is_null_level": True,
                },
                {
                    "sql_condition": f"tk_postcode_l = tk_postcode_r AND {dice_sql('clk_address')} >= 0.9",
                    "label_for_charts": "same postcode, address Dice >= 0.9",
                    "tf_adjustment_column": "tk_postcode",
                    "tf_adjustment_weight": 0.5,
                },
                {
                    "sql_condition": f"tk_postcode_l = tk_postcode_r AND {dice_sql('clk_address')} >= 0.75",
                    "label_for_charts": "same postcode, address Dice >= 0.75",
                },
                {
                    "sql_condition": f"{dice_sql('clk_address')} >= 0.9 AND tk_locality_l = tk_locality_r",
                    "label_for_charts": "address Dice >= 0.9, same locality",
                },
                {
                    "sql_condition": "tk_postcode_l = tk_postcode_r AND tk_locality_l = tk_locality_r",
                    "label_for_charts": "same postcode and locality, other address",
                },
                _dice("clk_address", 0.9),
                _exact("tk_postcode", "same postcode, other address"),
                {
                    "sql_condition": f"{dice_sql('clk_address')} >= 0.75 AND tk_locality_l = tk_locality_r",
                    "label_for_charts": "address Dice >= 0.75, same locality",
                },
                _dice("clk_address", 0.75),
                _exact("tk_pc_sector", "same sector"),
                {
                    "sql_condition": f"tk_pc_district_l = tk_pc_district_r OR {dice_sql('clk_address')} >= 0.55",
                    "label_for_charts": "same district or address Dice >= 0.55",
                },
                _exact("tk_locality", "same locality"),
            ],
        ),
    ]


def _v1_blocking_candidates() -> list[str]:
    # Candidates, not rules: each run counts them on its own records and keeps those that
    # fit the budget (linkage.blocking). Single fields come in when their blocks are small
    # (FEBRL: date of birth alone, postcode alone) and drop out as the population grows,
    # when combinations of a near-unique field with a second one keep the count linear.
    # Swap-aware rules pair a given name with a family name (both ways round, and one name
    # found in the other field with a date of birth or postcode), for names entered in
    # the wrong fields. A candidate naming a column the encoding does not carry is skipped.
    swap = "l.tk_given = r.tk_family AND l.tk_family = r.tk_given"
    return [
        "l.tk_nhs = r.tk_nhs",
        "l.tk_nino = r.tk_nino",
        "l.tk_dob = r.tk_dob",
        "l.tk_postcode = r.tk_postcode",
        "l.tk_given = r.tk_given AND l.tk_family = r.tk_family",
        swap,
        "l.tk_given_phon = r.tk_given_phon AND l.tk_family_phon = r.tk_family_phon",
        "l.tk_given_phon = r.tk_family_phon AND l.tk_family_phon = r.tk_given_phon",
        "l.tk_dob = r.tk_dob AND l.tk_family_phon = r.tk_family_phon",
        "l.tk_dob = r.tk_dob AND l.tk_given_phon = r.tk_given_phon",
        "l.tk_dob = r.tk_dob_swap AND l.tk_family_phon = r.tk_family_phon",
        "l.tk_postcode = r.tk_postcode AND l.tk_family_phon = r.tk_family_phon",
        "l.tk_postcode = r.tk_postcode AND l.tk_given_phon = r.tk_given_phon",
        "l.tk_given = r.tk_family AND l.tk_dob = r.tk_dob",
        "l.tk_family = r.tk_given AND l.tk_dob = r.tk_dob",
        "l.tk_given = r.tk_family AND l.tk_postcode = r.tk_postcode",
        "l.tk_family = r.tk_given AND l.tk_postcode = r.tk_postcode",
        "l.tk_dob = r.tk_dob AND l.tk_locality = r.tk_locality",
        "l.tk_dob = r.tk_dob AND l.tk_pc_sector = r.tk_pc_sector",
        "l.tk_postcode = r.tk_postcode AND l.tk_dob_year = r.tk_dob_year",
        "l.tk_family = r.tk_family AND l.tk_locality = r.tk_locality",
        "l.tk_given = r.tk_given AND l.tk_locality = r.tk_locality",
        "l.bk_given_dob = r.bk_given_dob",
        "l.bk_pc_given = r.bk_pc_given",
        "l.bk_fam_dob_md = r.bk_fam_dob_md",
        "l.bk_fam_yob = r.bk_fam_yob",
        "l.tk_given_phon = r.tk_given_phon AND l.tk_family_phon = r.tk_family_phon "
        "AND l.tk_dob_year = r.tk_dob_year",
        "l.tk_given_phon = r.tk_given_phon AND l.tk_family_phon = r.tk_family_phon "
        "AND l.tk_locality = r.tk_locality",
        "l.tk_locality = r.tk_locality AND l.tk_dob_year = r.tk_dob_year "
        "AND l.tk_dob_month = r.tk_dob_month",
        "l.tk_given = r.tk_given",
        "l.tk_family = r.tk_family",
    ]


def _any_equal(*columns: str) -> str:
    return " OR ".join(f"{c}_l = {c}_r" for c in columns)


def _all_null(*columns: str) -> str:
    return " AND ".join(f"({c}_l IS NULL OR {c}_r IS NULL)" for c in columns)


def _level(sql: str, label: str, null: bool = False) -> dict[str, Any]:
    level: dict[str, Any] = {"sql_condition": sql, "label_for_charts": label}
    if null:
        level["is_null_level"] = True
    return level


# Match keys that say "the same phonetic names" (in either order).
_NAMES_KEYS = ("mk_names", "mk_names_dobt", "mk_names_yob")
# Match keys that say "the same date of birth", each with another field.
_DOB_KEYS = ("mk_given_dob", "mk_family_dob")


def _best_dice(*columns: str) -> str:
    """The highest Dice over views of one field salted differently (a view whose salts
    differ gives a chance-level Dice, so the highest is the view whose salts agree)."""
    return f"greatest({', '.join(dice_sql(c) for c in columns)})"


def _default_comparisons() -> list[dict[str, Any]]:
    """Comparisons over the v2 encoding.

    Name filters are published twice, salted by the date of birth and by the postcode, and
    the address filter is salted by the postcode: a Dice level fires only for records whose
    salts agree, so a name level means "similar names, and the same date of birth or the
    same postcode". Dependence between comparisons (a name level implies an agreeing date
    or postcode; the date levels come through keys with names or a place) is measured, not
    removed: bench/RESULTS-privacy.md has the quality beside the previous encoding."""
    given = _best_dice("clk_given", "clk_given_pc")
    family = _best_dice("clk_family", "clk_family_pc")
    # One name alone counts only within one date of birth: the postcode views would count
    # the postcode a second time (the address comparison counts it), and one name plus a
    # postcode is what household members share.
    given_dob, family_dob = dice_sql("clk_given"), dice_sql("clk_family")
    address = _best_dice("clk_address", "clk_address_dob")
    return [
        _comparison("nhs_number", "NHS number token", [_null("tk_nhs"), _exact("tk_nhs", "exact")]),
        _comparison("nino", "NI number token", [_null("tk_nino"), _exact("tk_nino", "exact")]),
        _comparison(
            "name",
            "given and family name: salted CLK Dice (same date of birth or postcode), match keys otherwise",
            [
                _level(f"{_all_null('clk_given', 'clk_family', 'clk_given_pc', 'clk_family_pc', *_NAMES_KEYS)}",
                       "missing", null=True),
                _level(f"{given} >= 0.999 AND {family} >= 0.999", "both exact"),
                _level("mk_name_dob_l = mk_name_dob_r", "same canonical (nickname) given, same family"),
                _level(f"{given} >= 0.8 AND {family} >= 0.8", "both Dice >= 0.8"),
                # The names + place keys add no pair mk_names lacks; naming them keeps EM from
                # estimating this comparison on pairs blocked by them (linkage.em).
                _level(_any_equal(*_NAMES_KEYS, "mk_names_pc", "mk_names_locality"),
                       "same phonetic names, either order"),
                _level(f"({given} >= 0.999 AND {family} >= 0.6) OR ({family} >= 0.999 AND {given} >= 0.6)",
                       "one exact, the other Dice >= 0.6"),
                _level(f"{given_dob} >= 0.999", "given name exact, family name changed"),
                _level(f"{given} >= 0.6 AND {family} >= 0.6", "both Dice >= 0.6"),
                _level(f"{family_dob} >= 0.999", "family name exact, given name differs"),
            ],
        ),
        _comparison(
            "date_of_birth",
            "date of birth: through match keys with the names or a place",
            [
                _level(_all_null("mk_names_yob", "mk_dob_pc", "mk_dob_locality", *_DOB_KEYS), "missing", null=True),
                # Or through the filters salted by the date of birth: under different salts
                # their Dice is chance-level (FEBRL4: at most 0.29 over 18,633 random pairs
                # with different dates), under one salt it is high even with typos in the
                # names (0.999 of true pairs with one date reach 0.4).
                _level(f"{_any_equal(*_DOB_KEYS, 'mk_name_dob', 'mk_dob_pc', 'mk_dob_locality', 'mk_dob_sector')}"
                       f" OR {_best_dice('clk_given', 'clk_family', 'clk_address_dob')} >= 0.4",
                       "exact (seen with a name or a place, or through the salted filters)"),
                # The key sorts day and month, so it cannot tell a swap from the same date;
                # it is the only date evidence left when the names are swapped too.
                _level("mk_names_dobt_l = mk_names_dobt_r", "same date or day and month swapped"),
                _level(_any_equal("mk_names_ym", "mk_names_md", "mk_names_yd"), "two of year, month, day"),
                _level("mk_names_yob_l = mk_names_yob_r", "same year"),
            ],
        ),
        _comparison(
            "address",
            "address CLK Dice (salted by the postcode and by the date of birth)",
            [
                _level(_all_null("clk_address", "clk_address_dob"), "missing", null=True),
                _level(f"{address} >= 0.9", "Dice >= 0.9"),
                _level(f"{address} >= 0.75", "Dice >= 0.75"),
                _level(f"{dice_sql('clk_address')} >= 0.4", "same postcode, other address"),
            ],
        ),
    ]


JOIN_NAME_AND_DATE = ("auto", "always", "never")


def name_and_date_comparison(name: dict[str, Any], date: dict[str, Any]) -> dict[str, Any]:
    """One comparison whose levels are every (name level, date-of-birth level) of the two
    given ones: a pair's level is its name level and its date level, as the two
    comparisons would give them, so the m and u of each combination are fitted.

    Why: under the v2 encoding the two are not independent given match status. The names
    are compared through filters salted by the date of birth (and by the postcode), so
    when the date differs and there is no postcode, the names can only show the match-key
    level or "all other", and the date levels read the same salted filters. EM, which
    assumes independence, then explains the dependence by a latent class: on FEBRL3 with
    names, date of birth and town only, the blocked-pairs fit called 441 pairs with the
    same phonetic names and an inexact date non-matches, where the data hold 2
    (bench/RESULTS-linkage.md, session 10). Joined, F1 0.843 -> 0.902 there."""
    def split(c: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        levels = c["comparison_levels"]
        null = next(lv for lv in levels if lv.get("is_null_level"))
        return f"({null['sql_condition']})", [lv for lv in levels if not lv.get("is_null_level")]

    def states(null: str, levels: list[dict[str, Any]], missing: str) -> list[tuple[str, str]]:
        return [(missing, null)] + [
            (lv["label_for_charts"], "TRUE" if lv["sql_condition"].strip().upper() == "ELSE"
             else f"({lv['sql_condition']})") for lv in levels]

    # Splink gives a pair the first level whose condition holds. Listed name-major, in
    # each comparison's own order, the first joint level that holds is the pair's first
    # name level with its first date level, so no condition needs the earlier ones negated.
    name_null, name_levels = split(name)
    date_null, date_levels = split(date)
    names = states(name_null, name_levels, "name missing")
    dates = states(date_null, date_levels, "date missing")
    levels = [_level(f"{name_null} AND {date_null}", "names and date of birth missing", null=True)]
    for i, (name_label, name_sql) in enumerate(names):
        for j, (date_label, date_sql) in enumerate(dates):
            if i or j:
                levels.append(_level(f"({name_sql}) AND ({date_sql})",
                                     f"name: {name_label}; date of birth: {date_label}"))
    return {"output_column_name": "name_and_date",
            "comparison_description": "names and date of birth together (their levels depend on each other)",
            "comparison_levels": levels}


def with_name_and_date_joined(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of the settings with the "name" and "date_of_birth" comparisons replaced by
    their `name_and_date_comparison`, where the first of them stood (the settings unchanged
    when either is absent)."""
    comparisons = doc["splink"]["comparisons"]
    by_name = {c.get("output_column_name"): i for i, c in enumerate(comparisons)}
    if "name" not in by_name or "date_of_birth" not in by_name:
        return doc
    out = copy.deepcopy(doc)
    joint = name_and_date_comparison(comparisons[by_name["name"]], comparisons[by_name["date_of_birth"]])
    at = min(by_name["name"], by_name["date_of_birth"])
    kept = [c for c in out["splink"]["comparisons"] if c.get("output_column_name") not in ("name", "date_of_birth")]
    out["splink"]["comparisons"] = kept[:at] + [joint] + kept[at:]
    return out


def _default_blocking_candidates() -> list[str]:
    # Every candidate is one match key (a combination of fields) or an identifier: blocks
    # stay small as the population grows, and a pair with one or two fields wrong (typo,
    # nickname, swapped names, transposed date, new surname, move) is caught by another key.
    # Each run keeps those that fit its budget (linkage.blocking).
    return [
        "l.tk_nhs = r.tk_nhs",
        "l.tk_nino = r.tk_nino",
        "l.mk_names_dobt = r.mk_names_dobt",
        "l.mk_given_dob = r.mk_given_dob",
        "l.mk_family_dob = r.mk_family_dob",
        "l.mk_names_ym = r.mk_names_ym",
        "l.mk_names_md = r.mk_names_md",
        "l.mk_names_yd = r.mk_names_yd",
        "l.mk_names_pc = r.mk_names_pc",
        "l.mk_dob_pc = r.mk_dob_pc",
        "l.mk_dob_sector = r.mk_dob_sector",
        "l.mk_names_locality = r.mk_names_locality",
        "l.mk_names = r.mk_names",
        "l.mk_given_pc = r.mk_given_pc",
        "l.mk_family_pc = r.mk_family_pc",
        "l.mk_dob_locality = r.mk_dob_locality",
        "l.mk_given_locality = r.mk_given_locality",
        "l.mk_family_locality = r.mk_family_locality",
    ]
    # (Adding the other keys (names + year, names + sector, date of birth + district, middle
    # names + date of birth) as candidates made false within-source pairs on the synthetic
    # sources: the v2 comparisons overrate the pairs only those keys find.)


# Filters whose bands (equal 128-bit words, linkage.clk) are blocking candidates after every
# match key: the postcode-salted names and both address views. They reach pairs with one
# agreeing salt and fuzzy names or addresses that no key groups, and publish nothing (the
# linkage unit derives them from the filters it holds). The pairs only a band blocks are
# fitted as their own stratum (linkage.blocked_em), and left out of a run whose band pairs
# do not fit as matches and non-matches (on 50,000 synthetic people they are neighbours and
# household members: 13 expected matches among 31,877 pairs). Bands of the date-of-birth-
# salted names add no pair the name + date of birth keys miss (measured 0 on FEBRL4).
# After the 128-bit bands come the 64-bit ones (halves of the same words), which reach
# filters that are alike but differ somewhere in every word; their pairs are scored with the
# band stratum fitted on the 128-bit bands' pairs (blocked_em.fit). FEBRL4 F1 0.9859 ->
# 0.9887, FEBRL3 0.9761 -> 0.9797, FEBRL1 0.9827 -> 0.9848, FEBRL2 and the synthetic
# sources unchanged; national sizes count no band at all (linkage.blocking.BUDGET_FULL).
BAND_FILTERS = ("clk_given_pc", "clk_family_pc", "clk_address", "clk_address_dob")
BAND_WORDS = 8  # 1024-bit filters (the default clk_bits); bands of absent words are skipped


def filter_band_candidates() -> list[str]:
    return ([f"l.band_{clk}_{i} = r.band_{clk}_{i}" for clk in BAND_FILTERS for i in range(BAND_WORDS)]
            + [f"l.band64_{clk}_{i} = r.band64_{clk}_{i}" for clk in BAND_FILTERS for i in range(2 * BAND_WORDS)])


def default_settings() -> dict[str, Any]:
    """The default linkage settings (no file needed), over the default (v2) encoding."""
    doc = v1_settings()
    doc["training"]["prior_rules"] = [
        "l.tk_nhs = r.tk_nhs",
        "l.tk_nino = r.tk_nino",
        "l.mk_name_dob = r.mk_name_dob",
    ]
    # EM blocks on one match key and estimates m for the comparisons that do not use it:
    # the starting m of the blocked-pairs fit below. Phonetic names + locality trains the
    # date of birth, full name + date of birth the address, date of birth + postcode the
    # names; a key that blocks no pair (no locality in the data) is skipped.
    doc["training"]["em_blocking_rules"] = [
        "l.mk_names_locality = r.mk_names_locality",
        "l.mk_name_dob = r.mk_name_dob",
        "l.mk_dob_pc = r.mk_dob_pc",
    ]
    # The v2 comparisons are not independent over random pairs (salted filters and match keys
    # join fields): m, u and the prior are re-fitted on the blocked pairs (linkage.blocked_em).
    doc["training"]["em_on_blocked_pairs"] = True
    # Pairs only a filter band blocks get their own m when EM's match class there is set
    # apart by several fields (FEBRL: true matches with typos), the keyed pairs' m when it is
    # a household or a street (synthetic, 300,000 people); see blocked_em.fit_band_stratum.
    doc["training"]["band_stratum_m"] = "auto"
    doc["training"]["join_name_and_date"] = "auto"
    # Pairs whose NHS numbers (or NINOs) differ are held as non-matches while that fit runs,
    # so its classes follow the person, not the name (10M records; blocked_em).
    doc["training"]["identifier_comparisons"] = ["nhs_number", "nino"]
    # Probabilities within the blocked pairs are sharper than under random-pair u: keep the
    # uncertain pairs below the cluster threshold too, for clerical review (they do not link).
    doc["thresholds"]["report_match_probability"] = 0.1
    doc["splink"]["comparisons"] = _default_comparisons()
    doc["blocking"]["candidates"] = _default_blocking_candidates() + filter_band_candidates()
    # Match keys are combinations of fields, so their blocks are small: all of them take
    # 0.9 comparisons per record on 10,000 synthetic records, 1.76 on 100,000 (keys of a date
    # of birth and a district or sector grow with one area's population). 1.8 keeps the
    # count flat as the population grows (bench_linkage.py blocking; RESULTS-linkage.md).
    doc["blocking"]["max_comparisons_per_record"] = 1.8
    # One NHS number (or NINO) is one person whichever agency holds it: a merge that would
    # put two different ones in an entity is refused across sources too. A chain of
    # date-of-birth + postcode links otherwise joined two people, each known to the NHS
    # under their own number (2M synthetic records: within-source precision 0.9948 ->
    # 0.9963 at equal recall; RESULTS-linkage.md).
    doc["clustering"]["identifier_guard"] = "across_sources"
    return doc


def v1_settings() -> dict[str, Any]:
    """Linkage settings for the v1 encoding (the previous defaults; measured comparison only)."""
    return {
        "schema_version": SCHEMA_VERSION,
        # "auto": the threshold that maximises the expected F1 of the calibrated match
        # probabilities (linkage.calibrate); pairs from report_match_probability up to it
        # are kept in links.parquet and go to clerical review.
        "thresholds": {"cluster_match_probability": "auto", "auto_beta": 1.0,
                       "report_match_probability": 0.5},
        # true only when every source is known to hold no duplicates (then no entity
        # gets two records of one source); agency sources do hold duplicates.
        # A link joining two groups of records must be this strong (a weaker one still
        # joins a lone record): FEBRL4 P 0.9920 -> 0.9984 at equal recall (RESULTS-linkage.md).
        "clustering": {"one_record_per_source": False, "join_groups_match_probability": 0.95},
        # Blocking rules chosen per run from these candidates (linkage.blocking): every
        # rule under one budget of comparisons per record, counted before anything runs.
        # v1 (single-field tokens), 6 per record: FEBRL4/FEBRL3 blocking recall 0.998/0.991
        # (date of birth alone and postcode alone admitted), synthetic 50,000 people 1.000.
        "blocking": {
            "candidates": _v1_blocking_candidates(),
            "max_comparisons_per_record": 6.0,
            # a candidate is counted exactly (a join of its blocks) only when its
            # group-size count is at most this multiple of the budget
            "max_count_per_rule": 2.0,
        },
        "training": {
            # 1e5 random pairs: FEBRL4 F1 0.9964-0.9966 over seeds 1/7/42/99 (3e5: 0.9965-0.9966)
            # at ~0.25 s less per run (RESULTS-linkage.md).
            "u_max_pairs": 1e5,
            "seed": 42,
            # Deterministic rules used to estimate the prior (lambda), with their recall.
            "prior_rules": [
                "l.tk_nhs = r.tk_nhs",
                "l.tk_nino = r.tk_nino",
                "l.tk_given = r.tk_given AND l.tk_family = r.tk_family AND l.tk_dob = r.tk_dob",
            ],
            "prior_recall": 0.8,
            # Each EM pass blocks on some fields and estimates m for the others. Not on
            # postcode or address: pairs sharing an address are mostly household members,
            # and EM would learn "same household" instead of "same person".
            "em_blocking_rules": [
                "l.tk_dob = r.tk_dob",
                "l.tk_given = r.tk_given AND l.tk_family = r.tk_family",
            ],
            "em_max_pairs": 2e6,
            # m of a comparison's "all other" level is at least this after EM, so no
            # single disagreeing field vetoes a match (EM gave "sex differs" m = 3e-13); 0.002
            # makes "sex differs" -8 bits: 0.01 (-5.6) let different-sex twins merge.
            "disagreement_m_floor": 0.002,
        },
        "splink": {
            "link_type": "dedupe_only",
            "unique_id_column_name": "unique_id",
            "additional_columns_to_retain": ["source", "ref"],
            "retain_matching_columns": False,
            "retain_intermediate_calculation_columns": False,
            "probability_two_random_records_match": 1e-4,
            "em_convergence": 1e-4,
            "max_iterations": 25,
            "comparisons": _v1_comparisons(),
            # chosen by each run from blocking.candidates (the run's settings.json holds them)
            "blocking_rules_to_generate_predictions": [],
        },
    }


_EQUALITY_TERM = re.compile(r'^\s*l\."?(\w+)"?\s*=\s*r\."?(\w+)"?\s*$', re.IGNORECASE)


def equality_terms(rule_sql: str) -> list[tuple[str, str]] | None:
    """`l.a = r.b AND l.c = r.d` -> [(a, b), (c, d)]; None for a rule of any other form.
    (Such rules are indexed by scoring, counted without a join by EM, described without
    Splink's SQL parser in the report.)"""
    terms = []
    for part in re.split(r"\s+AND\s+", rule_sql.strip(), flags=re.IGNORECASE):
        m = _EQUALITY_TERM.match(part)
        if not m:
            return None
        terms.append((m.group(1), m.group(2)))
    return terms


def _require(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise SettingsError(f"{where}: {message}")


def validate_settings(doc: Any, where: str = "settings") -> dict[str, Any]:
    """Check the document's shape; return it. Splink validates its own part on use."""
    _require(isinstance(doc, dict), where, "must be a JSON object")
    _require(
        doc.get("schema_version") == SCHEMA_VERSION,
        where,
        f"schema_version must be {SCHEMA_VERSION}, got {doc.get('schema_version')!r}",
    )
    unknown = sorted(set(doc) - {"schema_version", "thresholds", "training", "splink", "clustering",
                                 "blocking"})
    _require(not unknown, where, f"unknown key(s): {', '.join(unknown)}")
    thresholds = doc.get("thresholds")
    _require(isinstance(thresholds, dict), where, "thresholds must be an object")
    for name in ("cluster_match_probability", "report_match_probability"):
        value = thresholds.get(name)
        if name == "cluster_match_probability" and value == "auto":
            continue
        _require(
            isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1,
            where,
            f"thresholds.{name} must be a number strictly between 0 and 1"
            + (' or "auto"' if name == "cluster_match_probability" else "") + f", got {value!r}",
        )
    beta = thresholds.get("auto_beta", 1.0)
    _require(isinstance(beta, int | float) and not isinstance(beta, bool) and beta > 0, where,
             f"thresholds.auto_beta must be a positive number, got {beta!r}")
    clustering = doc.get("clustering", {})
    _require(
        isinstance(clustering, dict)
        and set(clustering) <= {"one_record_per_source", "join_groups_match_probability",
                                "identifier_guard"}
        and isinstance(clustering.get("one_record_per_source", False), bool),
        where,
        'clustering must be an object with at most "one_record_per_source": true|false, '
        '"join_groups_match_probability" and "identifier_guard"',
    )
    guard = clustering.get("identifier_guard", "within_source")
    _require(guard in IDENTIFIER_GUARDS, where,
             f"clustering.identifier_guard must be one of {', '.join(IDENTIFIER_GUARDS)}, "
             f"got {guard!r}")
    join = clustering.get("join_groups_match_probability")
    _require(join is None or (isinstance(join, int | float) and 0 < join < 1), where,
             "clustering.join_groups_match_probability must be a number strictly between 0 and 1")
    training = doc.get("training")
    _require(isinstance(training, dict), where, "training must be an object")
    for name in ("u_max_pairs", "em_max_pairs"):
        _require(
            isinstance(training.get(name), int | float) and training[name] > 0,
            where,
            f"training.{name} must be a positive number",
        )
    for name in ("prior_rules", "em_blocking_rules"):
        rules = training.get(name)
        _require(
            isinstance(rules, list) and rules and all(isinstance(r, str) for r in rules),
            where,
            f"training.{name} must be a non-empty list of SQL strings",
        )
    _require(isinstance(training.get("prior_from_scored_pairs", True), bool), where,
             "training.prior_from_scored_pairs must be true or false")
    _require(isinstance(training.get("em_on_blocked_pairs", False), bool), where,
             "training.em_on_blocked_pairs must be true or false")
    _require(training.get("band_stratum_m", "keyed") in ("keyed", "fitted", "auto"), where,
             'training.band_stratum_m must be "keyed" (m of the pairs a match key blocks), '
             '"fitted" (m fitted on the band-only pairs too) or "auto" (fitted when its match '
             'class is set apart by several fields, keyed otherwise)')
    _require(training.get("join_name_and_date", "never") in JOIN_NAME_AND_DATE, where,
             'training.join_name_and_date must be "auto" (when most records have no postcode), '
             '"always" or "never"')
    identifiers = training.get("identifier_comparisons", [])
    names = {c.get("output_column_name") for c in (doc.get("splink") or {}).get("comparisons", [])
             if isinstance(c, dict)}
    _require(isinstance(identifiers, list) and all(isinstance(n, str) and n in names for n in identifiers),
             where, "training.identifier_comparisons must be a list of comparison names "
             f"(output_column_name: {', '.join(sorted(n for n in names if n))})")
    floor = training.get("disagreement_m_floor", 0.0)
    _require(
        isinstance(floor, int | float) and 0 <= floor < 0.5,
        where,
        "training.disagreement_m_floor must be a number in [0, 0.5)",
    )
    _require(
        isinstance(training.get("prior_recall"), int | float) and 0 < training["prior_recall"] <= 1,
        where,
        "training.prior_recall must be in (0, 1]",
    )
    splink = doc.get("splink")
    _require(isinstance(splink, dict), where, "splink must be a Splink settings object")
    _require(
        splink.get("link_type", "dedupe_only") == "dedupe_only",
        where,
        "splink.link_type must be dedupe_only (a run stacks every extract into one table "
        "and links across and within sources at once)",
    )
    comparisons = splink.get("comparisons")
    _require(
        isinstance(comparisons, list) and comparisons,
        where,
        "splink.comparisons must be a non-empty list",
    )
    for i, comp in enumerate(comparisons):
        _require(
            isinstance(comp, dict) and isinstance(comp.get("comparison_levels"), list),
            where,
            f"splink.comparisons[{i}] must have comparison_levels",
        )
    blocking = doc.get("blocking")
    if blocking is not None:
        _validate_blocking(blocking, where)
    _require(
        isinstance(splink.get("blocking_rules_to_generate_predictions"), list)
        and (splink["blocking_rules_to_generate_predictions"] or blocking is not None),
        where,
        "splink.blocking_rules_to_generate_predictions must be a non-empty list "
        "(or give blocking.candidates to choose from)",
    )
    return doc


def _validate_blocking(blocking: Any, where: str) -> None:
    _require(isinstance(blocking, dict), where, "blocking must be an object")
    unknown = sorted(set(blocking) - {"candidates", "max_comparisons_per_record", "max_count_per_rule"})
    _require(not unknown, where, f"blocking: unknown key(s): {', '.join(unknown)}")
    candidates = blocking.get("candidates")
    _require(isinstance(candidates, list) and candidates, where,
             "blocking.candidates must be a non-empty list of rules")
    for i, rule in enumerate(candidates):
        _require(isinstance(rule, str) and equality_terms(rule) is not None, where,
                 f"blocking.candidates[{i}] must be a conjunction of l.column = r.column terms, "
                 f"got {rule!r}")
    for name, default in (("max_comparisons_per_record", None), ("max_count_per_rule", 2.0)):
        value = blocking.get(name, default)
        _require(isinstance(value, int | float) and not isinstance(value, bool) and value > 0,
                 where, f"blocking.{name} must be a positive number, got {value!r}")


def load_settings(path: Path | None) -> dict[str, Any]:
    """Load and validate a settings document; None gives the defaults."""
    if path is None:
        return default_settings()
    path = Path(path)
    doc = read_document(path, "json", SettingsError)
    return validate_settings(doc, str(path))


def save_settings(doc: dict[str, Any], path: Path) -> None:
    """Write a settings document (sorted keys, so two runs' settings diff cleanly)."""
    validate_settings(doc)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def splink_settings(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of the Splink part, safe to hand to a Linker (which mutates what it gets)."""
    return copy.deepcopy(doc["splink"])
