"""Keyed tokens, CLKs, blocking keys, BLIP hardening and the person key."""

from __future__ import annotations

import hashlib
import hmac
import re

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from connectors.keys import KeyRing
from connectors.pseudonymise import (
    ALL_MATCH_KEYS,
    CLK_COLUMNS,
    LINKAGE_COLUMNS,
    MATCH_KEYS,
    EncodingSettings,
    IdentityEncoder,
    dice,
    person_key,
)
from connectors.standardise import StandardisationError, standardise_identity

MASTER = bytes(range(32))


def keyring(project: str = "proj-a") -> KeyRing:
    return KeyRing(MASTER, project)


def person(**over):
    raw = {
        "local_id": "1",
        "nhs_number": "9434765919",
        "nino": "AB123456C",
        "given_name": "William",
        "middle_names": "John",
        "family_name": "Smith",
        "date_of_birth": "1990-03-05",
        "sex": "M",
        "postcode": "CT9 1AB",
        "address": "12 High Street",
        "locality": "Margate",
    }
    raw.update(over)
    return raw


def popcount(b: bytes) -> int:
    return int(np.unpackbits(np.frombuffer(b, dtype=np.uint8)).sum())


def test_row_has_every_linkage_column_but_ref():
    row = IdentityEncoder(keyring()).encode_identity(person())
    assert set(row) == set(LINKAGE_COLUMNS) - {"ref"}
    assert all(row[c] is not None for c in row)


def test_identifier_token_is_hmac_of_standardised_value_as_signed_int64():
    kr = keyring()
    row = IdentityEncoder(kr).encode_identity(person(nino="ab 12 34 56 c", postcode="ct91ab"))
    def expect(group, value):
        d = hmac.new(kr.token_key(group), value.encode(), hashlib.sha256).digest()
        return int.from_bytes(d[:8], "big", signed=True)
    assert row["tk_nino"] == expect("nino", "AB123456")
    assert row["tk_nhs"] == expect("nhs_number", "9434765919")


@pytest.mark.parametrize("extra", [False, True])
def test_no_column_depends_on_one_low_entropy_field_alone(extra):
    """Change one field: every match key naming another field must change too (a key of
    sex, day, month, year or a single name on its own would not)."""
    enc = IdentityEncoder(keyring(), EncodingSettings(extra_match_keys=extra))
    keys = enc.match_keys
    assert set(keys) == (set(ALL_MATCH_KEYS) if extra else set(MATCH_KEYS))
    base = enc.encode_identity(person())
    assert set(base) - {"tk_nhs", "tk_nino"} == set(keys) | set(CLK_COLUMNS)
    # "names" is itself two fields (both phonetic names, in sorted order).
    assert all(len(parts) >= 2 or parts == ("names",) for parts in keys.values())
    for column, parts in keys.items():
        assert parts != ("sex",) and "sex" not in parts, column
    # The same name and year of birth with a different day: only keys that skip the day agree.
    other_day = enc.encode_identity(person(date_of_birth="1990-03-06"))
    same = {c for c in keys if base[c] == other_day[c]}
    expected = {"mk_names_yob", "mk_names_ym", "mk_names_pc", "mk_names_locality"}
    if extra:
        expected |= {"mk_names", "mk_given_pc", "mk_family_pc", "mk_given_locality", "mk_family_locality"}
    assert same == expected
    # A different given name: no key holding the given name may agree.
    other_given = enc.encode_identity(person(given_name="Oliver"))
    given_keys = {c for c, parts in keys.items() if {"g_phon", "g_canon", "names"} & set(parts)}
    assert given_keys and not {c for c in given_keys if base[c] == other_given[c]}


def test_same_person_different_formats_same_encoding():
    enc = IdentityEncoder(keyring())
    a = enc.encode_identity(person())
    b = IdentityEncoder(keyring()).encode_identity(
        person(given_name="WILLIAM", date_of_birth="05/03/1990", postcode="ct91ab",
               nino="AB 12 34 56", nhs_number="943-476-5919")
    )
    assert a == b


def test_swap_and_transposition_tolerant_keys():
    enc = IdentityEncoder(keyring())
    a = enc.encode_identity(person())
    swapped = enc.encode_identity(person(given_name="Smith", family_name="William"))
    transposed = enc.encode_identity(person(date_of_birth="1990-05-03"))
    nickname = enc.encode_identity(person(given_name="Bill"))
    for other in (swapped, transposed):
        assert other["mk_names_dobt"] == a["mk_names_dobt"]
    assert swapped["mk_names_yob"] == a["mk_names_yob"] and swapped["mk_name_dob"] != a["mk_name_dob"]
    assert transposed["mk_given_dob"] != a["mk_given_dob"]
    assert nickname["mk_name_dob"] == a["mk_name_dob"]  # canonical given name
    # A transposed date keeps the filters' salt: Dice is computed as if nothing changed.
    assert transposed["clk_given"] == a["clk_given"]


def test_missing_fields_give_nulls_and_match_keys_need_all_parts():
    row = IdentityEncoder(keyring()).encode_identity(person(postcode=None, address=None))
    assert row["mk_dob_pc"] is None and row["mk_names_pc"] is None and row["clk_address"] is None
    assert row["mk_names_yob"] is not None
    no_dob = IdentityEncoder(keyring()).encode_identity(person(date_of_birth=None))
    assert no_dob["clk_given"] is None and no_dob["clk_family"] is None  # no salt, no filter
    assert no_dob["mk_names_pc"] is not None


def test_batch_path_equals_single_path():
    enc = IdentityEncoder(keyring())
    raws = [person(), person(given_name="Anne", family_name="Jones", address=None),
            person(given_name=None, nino=None, postcode="XX")]
    idents = [standardise_identity(r)[0] for r in raws]
    batch = enc.encode_batch(idents)
    single = [IdentityEncoder(keyring()).encode_identity(r) for r in raws]
    for i, row in enumerate(single):
        for col, value in row.items():
            assert batch[col][i].as_py() == value, (i, col)


def _unsalted(kr, settings, given):
    """clk_given rebuilt independently from the documented construction (before salting):
    each distinct bigram's positions from counter-mode HMAC blocks; k x 7 positions shared
    out over the value's distinct bigrams in order of appearance (length hiding)."""
    bits = settings.clk_bits
    expected = np.zeros(bits, dtype=np.uint8)
    padded = f"_{given}_"
    grams = list(dict.fromkeys(padded[j:j + 2] for j in range(len(padded) - 1)))
    target = settings.clk_k * 7
    for rank, bigram in enumerate(grams):
        k = min(64, max(1, target // len(grams) + (rank < target % len(grams))))
        stream = b"".join(hmac.digest(kr.clk_key("given"), bytes([c]) + bigram.encode(), "sha256")
                          for c in range(8))
        for i in range(k):
            expected[int.from_bytes(stream[4 * i: 4 * i + 4], "big") % bits] = 1
    return expected


def test_filters_hide_the_length_of_the_value():
    enc = IdentityEncoder(keyring())
    counts = [popcount(enc.encode_identity(person(given_name=g))["clk_given"])
              for g in ("Al", "John", "Katherine", "Maximilian-Alexander")]
    assert max(counts) - min(counts) <= 15, counts  # about k x 7 bits whatever the length


def test_clk_is_a_keyed_bigram_bloom_filter_moved_by_a_salted_permutation():
    kr = keyring()
    settings = EncodingSettings(clk_bits=512, clk_k=7)
    enc = IdentityEncoder(kr, settings)
    row = enc.encode_identity(person(given_name="Ann"))
    expected = _unsalted(kr, settings, "ann")
    got = np.unpackbits(np.frombuffer(row["clk_given"], dtype=np.uint8))
    assert len(row["clk_given"]) == 64
    assert got.sum() == expected.sum()  # a permutation of the filter's bits
    assert not np.array_equal(got, expected)
    # Another date of birth: another permutation of the same bits, Dice near chance.
    other_dob = enc.encode_identity(person(given_name="Ann", date_of_birth="1971-08-22"))
    assert popcount(other_dob["clk_given"]) == expected.sum()
    assert dice(row["clk_given"], other_dob["clk_given"]) < 0.5
    other = IdentityEncoder(keyring("proj-b"), settings).encode_identity(person(given_name="Ann"))
    assert other["clk_given"] != row["clk_given"]


def test_salting_keeps_dice_within_a_date_of_birth():
    kr = keyring()
    settings = EncodingSettings()
    enc = IdentityEncoder(kr, settings)
    a = enc.encode_identity(person(given_name="Katherine"))
    b = enc.encode_identity(person(given_name="Catherine"))
    ua, ub = _unsalted(kr, settings, "katherine"), _unsalted(kr, settings, "catherine")
    unsalted = 2.0 * (ua & ub).sum() / (ua.sum() + ub.sum())
    assert dice(a["clk_given"], b["clk_given"]) == pytest.approx(unsalted)
    assert unsalted > 0.6


def test_clk_size_and_k_configurable():
    small = IdentityEncoder(keyring(), EncodingSettings(clk_bits=256, clk_k=5)).encode_identity(person())
    big = IdentityEncoder(keyring(), EncodingSettings(clk_bits=2048, clk_k=30)).encode_identity(person())
    assert len(small["clk_given"]) == 32 and len(big["clk_given"]) == 256
    assert popcount(small["clk_family"]) <= 5 * 7 < popcount(big["clk_family"])


def test_dice_orders_similar_names_above_different_ones_and_matches_duckdb():
    enc = IdentityEncoder(keyring())
    base = enc.encode_identity(person(family_name="Thompson"))
    typo = enc.encode_identity(person(family_name="Thomson"))
    other = enc.encode_identity(person(family_name="Patel"))
    assert dice(base["clk_family"], typo["clk_family"]) > 0.75  # one letter dropped
    assert dice(base["clk_family"], other["clk_family"]) < 0.4
    pair = pa.table({"a": [base["clk_family"]], "b": [typo["clk_family"]]})  # noqa: F841
    got = duckdb.sql(
        "select 2.0 * bit_count(a::BIT & b::BIT) / (bit_count(a::BIT) + bit_count(b::BIT)) from pair"
    ).fetchall()[0][0]
    assert got == pytest.approx(dice(base["clk_family"], typo["clk_family"]))


def test_given_and_family_use_separate_keys():
    enc = IdentityEncoder(keyring())
    a = enc.encode_identity(person(given_name="Mark", family_name="Owen"))
    b = enc.encode_identity(person(given_name="Owen", family_name="Mark"))
    # The swap is found by the order-free match keys, not by comparing given with family.
    assert a["mk_names_dobt"] == b["mk_names_dobt"]
    assert dice(a["clk_given"], b["clk_family"]) < 0.5


def test_blip_flips_bits_at_about_the_rate_and_is_not_deterministic():
    settings = EncodingSettings(hardening="blip", blip_f=0.05)
    plain = IdentityEncoder(keyring()).encode_identity(person())
    hardened = IdentityEncoder(keyring(), settings, rng=np.random.default_rng(1))
    rows = [hardened.encode_identity(person()) for _ in range(50)]
    flipped = [popcount(bytes(a ^ b for a, b in zip(r["clk_given"], plain["clk_given"], strict=True)))
               for r in rows]
    assert 0.03 * 1024 < np.mean(flipped) < 0.06 * 1024
    assert len({r["clk_given"] for r in rows}) == 50
    assert all(r["mk_name_dob"] == plain["mk_name_dob"] for r in rows)  # match keys unaffected


def test_another_project_shares_no_token():
    a = IdentityEncoder(keyring("proj-a")).encode_identity(person())
    b = IdentityEncoder(keyring("proj-b")).encode_identity(person())
    for col, value in a.items():
        if value is not None:
            assert value != b[col], col


def test_person_key_stable_across_nicknames_and_formats_and_per_project():
    kr = keyring()
    k = person_key(kr, person())
    assert len(k) == 64 and int(k, 16) >= 0
    assert person_key(kr, person(given_name="Bill", date_of_birth="05/03/1990")) == k
    assert person_key(kr, person(nhs_number=None, postcode=None)) == k
    assert person_key(kr, person(family_name="Smyth")) != k
    assert person_key(keyring("proj-b"), person()) != k


def test_person_key_needs_name_and_dob():
    with pytest.raises(StandardisationError, match="date_of_birth"):
        person_key(keyring(), person(date_of_birth="31/02/1990"))
    with pytest.raises(StandardisationError, match="family_name"):
        person_key(keyring(), person(family_name=None))


@pytest.mark.parametrize(
    "doc", [{"clk_bits": 1000}, {"clk_k": 0}, {"hardening": "xor"}, {"blip_f": 0.7},
            {"clk_k_fields": {"dob": 3}}, {"bogus": 1}]
)
def test_bad_encoding_settings_refused(doc):
    with pytest.raises(ValueError):
        EncodingSettings.from_dict(doc)


def test_settings_recorded_for_the_manifest():
    m = EncodingSettings(hardening="blip", blip_f=0.03).manifest()
    assert m["clk_bits"] == 1024 and m["clk_k"] == 20 and m["token_bytes"] == 8
    assert m["hardening"] == "blip" and m["blip_f"] == 0.03
    assert EncodingSettings.from_dict(m) == EncodingSettings(hardening="blip", blip_f=0.03)


@pytest.mark.parametrize("first_views", [("clk_given", "clk_family", "clk_address"),
                                         ("clk_given_pc", "clk_address_dob")])
def test_a_deployment_may_publish_fewer_filters(first_views):
    """`[encoding] filters`: the salted filters not listed are written as nulls (the same
    columns, nothing in them), the listed ones are unchanged (also when the first filter of
    their salt is not published), and the manifest says which."""
    full = IdentityEncoder(keyring()).encode_identity(person())
    settings = EncodingSettings.from_dict({"filters": list(first_views)})
    fewer = IdentityEncoder(keyring(), settings).encode_identity(person())
    assert set(fewer) == set(full)
    for column in CLK_COLUMNS:
        if column in first_views:
            assert fewer[column] is not None and fewer[column] == full[column], column
        else:
            assert fewer[column] is None and full[column] is not None, column
    assert {c: v for c, v in fewer.items() if not c.startswith("clk_")} == \
        {c: v for c, v in full.items() if not c.startswith("clk_")}
    assert settings.manifest()["filters"] == list(first_views)
    assert "filters" not in EncodingSettings().manifest()  # the default publishes all six
    assert EncodingSettings.from_dict(settings.manifest()) == settings


@pytest.mark.parametrize("filters, says", [
    (["clk_nope"], "unknown filter(s) ['clk_nope']"),
    (["clk_given", "clk_given"], "distinct names"),
    ("clk_given", "must be a list"),
])
def test_filters_setting_is_validated(filters, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        EncodingSettings.from_dict({"filters": filters})


def test_name_postcode_salt_other_name_splits_a_postcode_into_households():
    """`name_postcode_salt = "postcode+other-name"`: the postcode view of a given name is
    salted by the postcode and the family name's phonetic code (and the other way round), so
    two people at one postcode with the same given name and different family names no
    longer share a frame (attacks/salt_graph.py reads a frame's Dice graph); one person's
    records still do."""
    william_smith = person()
    william_jones = person(family_name="Jones", date_of_birth="1971-08-19", nhs_number="", nino="")
    default = IdentityEncoder(keyring())
    assert default.encode_identity(william_smith)["clk_given_pc"] == default.encode_identity(william_jones)["clk_given_pc"]
    settings = EncodingSettings(name_postcode_salt="postcode+other-name")
    split = IdentityEncoder(keyring(), settings)
    a, b = split.encode_identity(william_smith), split.encode_identity(william_jones)
    assert a["clk_given_pc"] != b["clk_given_pc"]
    assert dice(a["clk_given_pc"], b["clk_given_pc"]) < 0.4  # another frame: chance-level Dice
    assert a["clk_given_pc"] == split.encode_identity(person(address="12 High St"))["clk_given_pc"]
    # The other views keep their salts: the address by the postcode, names by the date.
    assert a["clk_address"] == default.encode_identity(william_smith)["clk_address"]
    assert a["clk_given"] == default.encode_identity(william_smith)["clk_given"]
    assert settings.manifest()["name_postcode_salt"] == "postcode+other-name"
    assert EncodingSettings.from_dict(settings.manifest()) == settings
    with pytest.raises(ValueError, match="name_postcode_salt"):
        EncodingSettings(name_postcode_salt="street")
