"""Keyed tokens, CLKs, blocking keys, BLIP hardening and the person key."""

from __future__ import annotations

import hashlib
import hmac

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from connectors.keys import KeyRing
from connectors.pseudonymise import (
    LINKAGE_COLUMNS,
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
    assert all(row[c] is not None for c in row if c != "tk_dob_swap")


def test_token_is_hmac_of_standardised_value_as_signed_int64():
    kr = keyring()
    row = IdentityEncoder(kr).encode_identity(person(nino="ab 12 34 56 c", postcode="ct91ab"))
    def expect(group, value):
        d = hmac.new(kr.token_key(group), value.encode(), hashlib.sha256).digest()
        return int.from_bytes(d[:8], "big", signed=True)
    assert row["tk_nino"] == expect("nino", "AB123456")
    assert row["tk_postcode"] == expect("postcode", "CT9 1AB")
    assert row["tk_pc_sector"] == expect("pc_sector", "CT9 1")
    assert row["tk_dob"] == expect("dob", "1990-03-05")
    assert row["tk_given"] == expect("name", "william")


def test_same_person_different_formats_same_tokens():
    enc = IdentityEncoder(keyring())
    a = enc.encode_identity(person())
    b = IdentityEncoder(keyring()).encode_identity(
        person(given_name="WILLIAM", date_of_birth="05/03/1990", postcode="ct91ab",
               nino="AB 12 34 56", nhs_number="943-476-5919")
    )
    for col in ("tk_nhs", "tk_nino", "tk_given", "tk_dob", "tk_postcode", "bk_fam_yob", "bk_given_dob"):
        assert a[col] == b[col], col
    assert a["clk_name"] == b["clk_name"]


def test_day_month_swap_token_and_nickname_canonical_token():
    enc = IdentityEncoder(keyring())
    a = enc.encode_identity(person())
    swapped = enc.encode_identity(person(date_of_birth="1990-05-03", given_name="Bill"))
    assert a["tk_dob"] != swapped["tk_dob"]
    assert a["tk_dob"] == swapped["tk_dob_swap"]
    assert a["tk_given"] != swapped["tk_given"]
    assert a["tk_given_canon"] == swapped["tk_given_canon"]


def test_missing_fields_give_nulls_and_blocking_keys_need_all_parts():
    row = IdentityEncoder(keyring()).encode_identity(person(postcode=None, address=None))
    assert row["tk_postcode"] is None and row["clk_address"] is None
    assert row["bk_pc_given"] is None
    assert row["bk_fam_yob"] is not None


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


def test_clk_is_keyed_bigram_bloom_filter():
    kr = keyring()
    settings = EncodingSettings(clk_bits=512, clk_k=7)
    row = IdentityEncoder(kr, settings).encode_identity(person(given_name="Ann"))
    # Rebuild clk_given independently from the documented construction.
    expected = np.zeros(512, dtype=np.uint8)
    for bigram in ("_a", "an", "nn", "n_"):
        stream = hmac.digest(kr.clk_key("given"), b"\x00" + bigram.encode(), "sha256")
        for i in range(7):
            expected[int.from_bytes(stream[4 * i: 4 * i + 4], "big") % 512] = 1
    assert len(row["clk_given"]) == 64
    assert row["clk_given"] == np.packbits(expected).tobytes()
    other = IdentityEncoder(keyring("proj-b"), settings).encode_identity(person(given_name="Ann"))
    assert other["clk_given"] != row["clk_given"]


def test_clk_size_and_k_configurable():
    small = IdentityEncoder(keyring(), EncodingSettings(clk_bits=256, clk_k=5)).encode_identity(person())
    big = IdentityEncoder(keyring(), EncodingSettings(clk_bits=2048, clk_k=30)).encode_identity(person())
    assert len(small["clk_name"]) == 32 and len(big["clk_name"]) == 256
    assert popcount(small["clk_family"]) <= 5 * 7 < popcount(big["clk_family"])


def test_dice_orders_similar_names_above_different_ones_and_matches_duckdb():
    enc = IdentityEncoder(keyring())
    base = enc.encode_identity(person(family_name="Thompson"))
    typo = enc.encode_identity(person(family_name="Thomson"))
    other = enc.encode_identity(person(family_name="Patel"))
    assert dice(base["clk_family"], typo["clk_family"]) > 0.8
    assert dice(base["clk_family"], other["clk_family"]) < 0.4
    pair = pa.table({"a": [base["clk_family"]], "b": [typo["clk_family"]]})  # noqa: F841
    got = duckdb.sql(
        "select 2.0 * bit_count(a::BIT & b::BIT) / (bit_count(a::BIT) + bit_count(b::BIT)) from pair"
    ).fetchall()[0][0]
    assert got == pytest.approx(dice(base["clk_family"], typo["clk_family"]))


def test_clk_name_survives_given_family_swap():
    enc = IdentityEncoder(keyring())
    a = enc.encode_identity(person(given_name="Mark", family_name="Owen"))
    b = enc.encode_identity(person(given_name="Owen", family_name="Mark"))
    assert a["clk_name"] == b["clk_name"]
    assert a["tk_given"] == b["tk_family"]  # shared "name" key: a swap is visible by equality


def test_blip_flips_bits_at_about_the_rate_and_is_not_deterministic():
    settings = EncodingSettings(hardening="blip", blip_f=0.05)
    plain = IdentityEncoder(keyring()).encode_identity(person())
    hardened = IdentityEncoder(keyring(), settings, rng=np.random.default_rng(1))
    rows = [hardened.encode_identity(person()) for _ in range(50)]
    flipped = [popcount(bytes(a ^ b for a, b in zip(r["clk_name"], plain["clk_name"], strict=True)))
               for r in rows]
    assert 0.03 * 1024 < np.mean(flipped) < 0.06 * 1024
    assert len({r["clk_name"] for r in rows}) == 50
    assert all(r["tk_given"] == plain["tk_given"] for r in rows)  # tokens unaffected


def test_blip_keeps_true_pairs_above_false_pairs():
    settings = EncodingSettings(hardening="blip", blip_f=0.05)
    enc = IdentityEncoder(keyring(), settings, rng=np.random.default_rng(2))
    names = [("William", "Smith"), ("Katherine", "Jones"), ("Mohammed", "Khan"), ("Olivia", "Brown")]
    typos = [("Wiliam", "Smith"), ("Catherine", "Jones"), ("Mohammad", "Khan"), ("Olivia", "Browne")]
    a = [enc.encode_identity(person(given_name=g, family_name=f))["clk_name"] for g, f in names]
    b = [enc.encode_identity(person(given_name=g, family_name=f))["clk_name"] for g, f in typos]
    true_d = [dice(x, y) for x, y in zip(a, b, strict=True)]
    false_d = [dice(a[i], b[j]) for i in range(4) for j in range(4) if i != j]
    assert min(true_d) > max(false_d)


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
