"""Standardisation of names, dates, postcodes, NINO, NHS numbers and sex, and row usability."""

from __future__ import annotations

from datetime import date

import pytest

from connectors.mapping import mapping_from_dict
from connectors.standardise import (
    name_words,
    nhs_check_digit_ok,
    parse_birth_date,
    standard_nhs_number,
    standard_nino,
    standard_postcode,
    standard_sex,
    standard_text,
    standardise_identity,
    swap_day_month,
)

TODAY = date(2026, 1, 1)


def base(**over):
    raw = {
        "local_id": "L1",
        "given_name": "Anne",
        "family_name": "Jones",
        "date_of_birth": "1990-03-15",
        "postcode": "CT9 1AB",
    }
    raw.update(over)
    return raw


@pytest.mark.parametrize(
    "raw, words",
    [
        ("Dr. Anne-Marie  O'Brien", ("anne", "marie", "obrien")),
        ("  JOSÉ  ", ("jose",)),
        ("Zoë", ("zoe",)),
        ("Mr John Smith Jr", ("john", "smith")),
        ("MRS. Siân ap Rhys", ("sian", "ap", "rhys")),
        ("123", ()),
    ],
)
def test_name_words_fold_case_accents_titles_punctuation(raw, words):
    assert name_words(raw) == words


def test_names_first_given_middle_and_nickname_canonical_form():
    ident, problems = standardise_identity(
        base(given_name="Bill James", middle_names="Henry", family_name="Smith-Jones")
    )
    assert problems == []
    assert ident.given == "bill"
    assert ident.given_canon == "william"
    assert ident.middle == "james henry"
    assert ident.family == "smith jones"
    assert ident.family_phon and ident.family_phon.isupper()


def test_nickname_canonical_form_leaves_other_names_alone():
    ident, _ = standardise_identity(base(given_name="Olivia"))
    assert ident.given_canon == "olivia"
    for nick, canon in (("Liz", "elizabeth"), ("Bob", "robert"), ("Peggy", "margaret")):
        assert standardise_identity(base(given_name=nick))[0].given_canon == canon


def test_phonetic_codes_agree_on_spelling_variants():
    a, _ = standardise_identity(base(family_name="Smith"))
    b, _ = standardise_identity(base(family_name="Smyth"))
    c, _ = standardise_identity(base(family_name="Patel"))
    assert a.family_phon == b.family_phon != c.family_phon


@pytest.mark.parametrize(
    "raw", ["1990-03-15", "15/03/1990", "15-03-1990", "15.03.1990", "19900315",
            "15 Mar 1990", "15 March 1990", "1990-03-15T00:00:00"]
)
def test_dates_in_common_formats(raw):
    assert parse_birth_date(raw, today=TODAY) == date(1990, 3, 15)


@pytest.mark.parametrize(
    "raw, reason",
    [("31/02/1990", "impossible"), ("1990-13-01", "impossible"), ("2030-01-01", "future"),
     ("1850-01-01", "before"), ("yesterday", "unrecognised"), ("15/03/90x", "unrecognised")],
)
def test_impossible_or_implausible_dates_refused(raw, reason):
    with pytest.raises(ValueError, match=reason):
        parse_birth_date(raw, today=TODAY)


def test_mapping_date_format_is_used():
    m = mapping_from_dict({"identity": {"date_of_birth": {"column": "d", "format": "%m/%d/%Y"}}})
    ident, problems = standardise_identity(base(date_of_birth="03/15/1990"), m, today=TODAY)
    assert ident.dob == date(1990, 3, 15) and problems == []
    ident, problems = standardise_identity(
        base(date_of_birth="1990-03-15", postcode=None), m, today=TODAY
    )
    assert ident.dob is None
    assert [(p.field, p.fatal) for p in problems] == [
        ("date_of_birth", False),  # the value is dropped...
        ("date_of_birth", True),  # ...and with nothing else but a name the row is unusable
    ]
    # With a postcode the same bad date only drops the field: name + postcode still links.
    ident, problems = standardise_identity(base(date_of_birth="1990-03-15"), m, today=TODAY)
    assert ident.dob is None and ident.postcode == "CT9 1AB"
    assert [(p.field, p.fatal) for p in problems] == [("date_of_birth", False)]


def test_day_month_swap():
    assert swap_day_month(date(1990, 3, 5)) == date(1990, 5, 3)
    assert swap_day_month(date(1990, 3, 15)) is None
    assert swap_day_month(date(1990, 4, 4)) is None


@pytest.mark.parametrize(
    "raw, expected",
    [("ct91ab", ("CT9 1AB", "CT9 1", "CT9")), (" CT9  1AB ", ("CT9 1AB", "CT9 1", "CT9")),
     ("sw1a 1aa", ("SW1A 1AA", "SW1A 1", "SW1A")), ("M1 1AE", ("M1 1AE", "M1 1", "M1"))],
)
def test_postcodes_normalised_with_sector_and_district(raw, expected):
    assert standard_postcode(raw) == expected


def test_postcode_format_checked_unless_validate_false():
    with pytest.raises(ValueError):
        standard_postcode("2615")
    assert standard_postcode("2615", validate=False) == ("2615", None, None)
    m = mapping_from_dict({"identity": {"postcode": {"column": "pc", "validate": False}}})
    ident, problems = standardise_identity(base(postcode="2615"), m)
    assert ident.postcode == "2615" and problems == []
    ident, problems = standardise_identity(base(postcode="2615"))
    assert ident.postcode is None
    assert [(p.field, p.fatal) for p in problems] == [("postcode", False)]


def test_nino_format():
    assert standard_nino("ab 12 34 56 c") == "AB123456"
    assert standard_nino("AB123456") == "AB123456"
    for bad in ("AB12345C", "DA123456A", "GB123456A", "AB123456E", "TN123456A", "123456789"):
        with pytest.raises(ValueError):
            standard_nino(bad)


def test_nhs_number_modulus_11():
    assert nhs_check_digit_ok("9434765919")
    assert not nhs_check_digit_ok("9434765918")
    assert standard_nhs_number("943 476 5919") == "9434765919"
    with pytest.raises(ValueError, match="check digit"):
        standard_nhs_number("943 476 5918")
    with pytest.raises(ValueError, match="10 digits"):
        standard_nhs_number("12345")


def test_invalid_nhs_number_dropped_rest_of_row_kept():
    ident, problems = standardise_identity(base(nhs_number="9434765918"))
    assert ident.nhs_number is None
    assert ident.family == "jones" and ident.dob == date(1990, 3, 15)
    assert [(p.field, p.reason, p.fatal) for p in problems] == [
        ("nhs_number", "invalid check digit", False)
    ]


def test_sex_codes():
    assert [standard_sex(s) for s in ("M", "female", "1", "2", "U", "unknown", "other")] == [
        "M", "F", "M", "F", None, None, "X"
    ]
    with pytest.raises(ValueError):
        standard_sex("banana")


def test_address_abbreviations_expanded():
    assert standard_text("12, High St.") == standard_text("12 high street") == "12 high street"
    assert standard_text("Flat 3a, Ocean Rd") == "flat 3a ocean road"


@pytest.mark.parametrize(
    "over, field",
    [
        ({"local_id": ""}, "local_id"),
        ({"given_name": None, "family_name": " "}, "name"),
        ({"date_of_birth": None, "postcode": None}, "date_of_birth"),
        ({"date_of_birth": "31/02/1990", "postcode": None}, "date_of_birth"),
        # a bare name: locality and sex do not count as identifying
        ({"date_of_birth": None, "postcode": None, "locality": "Margate", "sex": "F"},
         "date_of_birth"),
        # a local id and identifiers, but no name part at all
        ({"given_name": "", "family_name": None, "nhs_number": "9434765919"}, "name"),
    ],
)
def test_unusable_rows_are_fatal(over, field):
    _, problems = standardise_identity(base(**over))
    assert problems[-1].fatal and problems[-1].field == field
    assert sum(p.fatal for p in problems) == 1


def test_no_dob_but_valid_nhs_number_or_nino_is_usable():
    for extra in ({"nhs_number": "9434765919"}, {"nino": "AB123456C"}):
        _, problems = standardise_identity(base(date_of_birth=None, postcode=None, **extra))
        assert not any(p.fatal for p in problems)
    _, problems = standardise_identity(
        base(date_of_birth=None, postcode=None, nhs_number="9434765918")
    )
    assert problems[-1].fatal  # the NHS number was invalid, so nothing else identifies them


@pytest.mark.parametrize(
    "over",
    [
        {"postcode": "CT9 1AB"},  # a name and a postcode
        {"postcode": None, "address": "12 High St"},  # a name and an address
        {"postcode": None, "address": "12 High St", "given_name": None},  # family name only
        {"postcode": None, "address": "Flat 3", "family_name": None},  # given name only
    ],
)
def test_name_with_postcode_or_address_but_no_dob_is_usable(over):
    ident, problems = standardise_identity(base(date_of_birth=None, **over))
    assert ident.dob is None and not any(p.fatal for p in problems)
    assert problems == []


@pytest.mark.parametrize(
    "over, dropped",
    [
        # the postcode fails validation and is dropped: nothing but the name is left
        ({"postcode": "NOT A POSTCODE"}, "postcode"),
        # the date is impossible and there is nothing else
        ({"date_of_birth": "31/02/1990", "postcode": None}, "date_of_birth"),
    ],
)
def test_identifier_dropped_as_invalid_does_not_count(over, dropped):
    ident, problems = standardise_identity(base(**{"date_of_birth": None, **over}))
    assert [(p.field, p.fatal) for p in problems] == [(dropped, False), ("date_of_birth", True)]
    assert ident.postcode is None and ident.dob is None


def test_address_that_cleans_to_nothing_does_not_count():
    ident, problems = standardise_identity(base(date_of_birth=None, postcode=None, address=", ."))
    assert ident.address is None and problems[-1].fatal


def test_family_name_alone_is_enough_for_a_name():
    ident, problems = standardise_identity(base(given_name=None))
    assert ident.given is None and not any(p.fatal for p in problems)
