"""Which plaintext attributes each deterministic column of each encoding is a function of.

The attacker knows this (the encoding is public, only the keys are secret), so a
frequency attack aligns a column's value counts with the public counts of exactly these
attributes taken together.
"""

from __future__ import annotations

from connectors.pseudonymise import ALL_MATCH_KEYS

_V2_PART_ATTRIBUTE = {
    "g_canon": "given_canon", "fam": "family", "g_phon": "given_phon", "f_phon": "family_phon",
    "dob": "dob", "year": "year", "month": "month", "day": "day", "dm": "dm", "middle": "middle",
    "pc": "postcode", "sector": "sector", "district": "district", "locality": "locality", "names": "names",
}

V1_COLUMNS: dict[str, tuple[str, ...]] = {
    "tk_nhs": ("nhs",), "tk_nino": ("nino",), "tk_given": ("given",), "tk_given_canon": ("given_canon",),
    "tk_given_phon": ("given_phon",), "tk_middle": ("middle",), "tk_family": ("family",),
    "tk_family_phon": ("family_phon",), "tk_dob": ("dob",), "tk_dob_year": ("year",),
    "tk_dob_month": ("month",), "tk_dob_day": ("day",), "tk_sex": ("sex",), "tk_postcode": ("postcode",),
    "tk_pc_sector": ("sector",), "tk_pc_district": ("district",), "tk_locality": ("locality",),
    "bk_fam_yob": ("family_phon", "year"), "bk_given_dob": ("given_canon", "dob"),
    "bk_pc_given": ("postcode", "given_phon"), "bk_fam_dob_md": ("family_phon", "month", "day"),
}
V2_COLUMNS: dict[str, tuple[str, ...]] = {
    "tk_nhs": ("nhs",), "tk_nino": ("nino",),
    **{c: tuple(_V2_PART_ATTRIBUTE[p] for p in parts) for c, parts in ALL_MATCH_KEYS.items()},
}
# What each filter encodes (the attribute a decoded filter reveals).
V1_FILTERS = {"clk_given": "given", "clk_family": "family", "clk_name": None, "clk_address": "address"}
V2_FILTERS = {"clk_given": "given", "clk_family": "family", "clk_address": "address",
              "clk_given_pc": "given", "clk_family_pc": "family", "clk_address_dob": "address"}


def deterministic_columns(scheme: str) -> dict[str, tuple[str, ...]]:
    return V1_COLUMNS if scheme == "v1" else V2_COLUMNS


def filter_columns(scheme: str) -> dict[str, str | None]:
    return V1_FILTERS if scheme == "v1" else V2_FILTERS
