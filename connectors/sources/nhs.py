"""NHS reader: FHIR R4 Bundles (JSON) in UK Core shape.

Input: one Bundle file, or a directory of `*.json` Bundles (read in name order). Each
Patient yields one record; EpisodeOfCare and Condition resources in the same Bundle
that reference it (`urn:uuid:<id>` or `Patient/<id>`) become its indicators.

The mapping's "columns" are these flattened Patient fields:
`id`, `nhs_number` (identifier with system https://fhir.nhs.uk/Id/nhs-number), `given`
(first given name), `middle_names` (other given names), `family`, `birthDate`, `gender`,
`address_line` (lines joined), `city`, `postalCode` (of the home, else first, address).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

from connectors.mapping import Mapping, MappingError, mapping_from_dict
from connectors.records import Indicator, RejectSink, RowReject, SourceRecord
from connectors.sources import SourceError
from connectors.sources._agency_csv import identity_picker

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
SERVICE_TYPE_SYSTEM = "https://joinedup.example/fhir/CodeSystem/service-type"

# EpisodeOfCare type code -> (indicator code, value when finished).
SERVICE_TYPES = {
    "secondary-mental-health": ("nhs.secondary_mental_health", "discharged"),
    "talking-therapies": ("nhs.talking_therapies", "completed"),
    "drug-alcohol": ("nhs.drug_alcohol", "completed"),
}
# SNOMED CT long-term condition concepts -> the group reported (never the diagnosis).
LTC_GROUPS = {
    "44054006": "diabetes",
    "46635009": "diabetes",
    "73211009": "diabetes",
    "13645005": "copd",
    "195967001": "asthma",
    "279039007": "msk",
    "69896004": "msk",
    "396275006": "msk",
    "53741008": "heart",
    "84114007": "heart",
    "84757009": "epilepsy",
}
_ACTIVE_EPISODE = {"active", "waitlist", "onhold", "planned"}
_ACTIVE_CONDITION = {"active", "recurrence", "relapse"}

PATIENT_FIELDS = (
    "id", "nhs_number", "given", "middle_names", "family", "birthDate", "gender",
    "address_line", "city", "postalCode",
)

DEFAULT_MAPPING: Mapping = mapping_from_dict(
    {
        "identity": {
            "local_id": "id",
            "nhs_number": "nhs_number",
            "given_name": "given",
            "middle_names": "middle_names",
            "family_name": "family",
            "date_of_birth": {"column": "birthDate", "format": "%Y-%m-%d"},
            "sex": "gender",
            "postcode": "postalCode",
            "address": "address_line",
            "locality": "city",
        }
    },
    "nhs default mapping",
)

# A cheap look at the head of every file before streaming, so a stray non-FHIR file in
# the directory fails the whole read up front rather than half-way through.
_BUNDLE_HEAD = re.compile(rb'"resourceType"\s*:\s*"Bundle"')
# A FHIR date, or the date part of a dateTime.
_FHIR_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(?:T.*)?$")


def _files(input: str) -> list[Path]:
    path = Path(input)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".json" and p.is_file())
        if not files:
            raise SourceError(f"{path}: no *.json FHIR Bundles in this directory")
        return files
    if not path.exists():
        raise SourceError(f"{path}: cannot read: no such file or directory")
    return [path]


def _check_head(path: Path) -> None:
    try:
        with path.open("rb") as fh:
            head = fh.read(65536)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if not _BUNDLE_HEAD.search(head):
        raise SourceError(f"{path}: not a FHIR Bundle (no \"resourceType\": \"Bundle\")")


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_bytes())
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{path}: not valid JSON: {exc}") from exc
    except RecursionError:
        # The C parser gives up past Python's recursion limit; no FHIR resource nests so deep.
        raise SourceError(f"{path}: JSON nested too deeply to be a FHIR Bundle") from None
    if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle":
        raise SourceError(f"{path}: not a FHIR Bundle (resourceType is {doc.get('resourceType') if isinstance(doc, dict) else type(doc).__name__!r})")
    if not isinstance(doc.get("entry", []), list):
        raise SourceError(f"{path}: Bundle.entry is not a list")
    return doc


class Malformed(ValueError):
    """A resource element of the wrong JSON type (FHIR R4 gives each element one type)."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), "null")


def _string(value: Any, field: str) -> str | None:
    """A FHIR string element, stripped; None when absent or blank."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise Malformed(field, f"must be a string, not {_json_type(value)}")
    return value.strip() or None


def _list(value: Any, field: str) -> list[Any]:
    """A repeating FHIR element (a JSON list); [] when absent."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise Malformed(field, f"must be a list, not {_json_type(value)}")
    return value


def _object(value: Any, field: str) -> dict[str, Any]:
    """A complex FHIR element (a JSON object); {} when absent."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Malformed(field, f"must be an object, not {_json_type(value)}")
    return value


def _objects(value: Any, field: str) -> list[dict[str, Any]]:
    return [_object(v, f"{field}[{k}]") for k, v in enumerate(_list(value, field))]


def _strings(value: Any, field: str) -> list[str]:
    """A repeating string element (e.g. `given`, `line`): a string in place of the list is
    refused, never taken apart letter by letter."""
    out = [_string(v, f"{field}[{k}]") for k, v in enumerate(_list(value, field))]
    return [v for v in out if v]


def flatten_patient(patient: dict[str, Any]) -> dict[str, str | None]:
    """The Patient's identity as flat raw strings (see the module doc for the names).

    Raises `Malformed` naming the element when one has the wrong JSON type."""
    flat: dict[str, str | None] = dict.fromkeys(PATIENT_FIELDS)
    flat["id"] = _string(patient.get("id"), "Patient.id")
    for k, ident in enumerate(_objects(patient.get("identifier"), "Patient.identifier")):
        system = _string(ident.get("system"), f"Patient.identifier[{k}].system")
        value = _string(ident.get("value"), f"Patient.identifier[{k}].value")
        if system == NHS_NUMBER_SYSTEM and flat["nhs_number"] is None:
            flat["nhs_number"] = value
    names = _objects(patient.get("name"), "Patient.name")
    checked = []
    for k, n in enumerate(names):
        use = _string(n.get("use"), f"Patient.name[{k}].use")
        given = _strings(n.get("given"), f"Patient.name[{k}].given")
        family = _string(n.get("family"), f"Patient.name[{k}].family")
        checked.append((use, given, family))
    use, given, family = next((c for c in checked if c[0] == "official"), checked[0] if checked else (None, [], None))
    flat["given"] = given[0] if given else None
    flat["middle_names"] = " ".join(given[1:]) if len(given) > 1 else None
    flat["family"] = family
    flat["birthDate"] = _string(patient.get("birthDate"), "Patient.birthDate")
    flat["gender"] = _string(patient.get("gender"), "Patient.gender")
    addresses = []
    for k, a in enumerate(_objects(patient.get("address"), "Patient.address")):
        addresses.append({
            "use": _string(a.get("use"), f"Patient.address[{k}].use"),
            "line": _strings(a.get("line"), f"Patient.address[{k}].line"),
            "city": _string(a.get("city"), f"Patient.address[{k}].city"),
            "postalCode": _string(a.get("postalCode"), f"Patient.address[{k}].postalCode"),
        })
    address = next((a for a in addresses if a["use"] == "home"), addresses[0] if addresses else None)
    if address is not None:
        flat["address_line"] = " ".join(address["line"]) or None
        flat["city"] = address["city"]
        flat["postalCode"] = address["postalCode"]
    return flat


class _Irregular(Exception):
    """An element not of its FHIR JSON type: `flatten_patient` names it."""


def _s(value: Any) -> str | None:
    if value.__class__ is str:
        return value.strip() or None
    if value is None:
        return None
    raise _Irregular


def _ss(value: Any) -> list[str]:
    if value is None:
        return []
    if value.__class__ is not list:
        raise _Irregular
    return [v for v in map(_s, value) if v]


def _dicts(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if value.__class__ is not list or any(v.__class__ is not dict for v in value):
        raise _Irregular
    return value


def flat_values(patient: dict[str, Any]) -> tuple[str | None, ...]:
    """`flatten_patient`'s values in PATIENT_FIELDS order. The usual Patient, every element
    of its JSON type, is read without naming each element for a message that is never
    needed; any other goes through `flatten_patient` (which raises `Malformed`)."""
    try:
        get = patient.get
        pid = _s(get("id"))
        nhs = None
        for ident in _dicts(get("identifier")):
            system, value = _s(ident.get("system")), _s(ident.get("value"))
            if system == NHS_NUMBER_SYSTEM and nhs is None:
                nhs = value
        first = chosen = None
        for n in _dicts(get("name")):
            name = (_s(n.get("use")), _ss(n.get("given")), _s(n.get("family")))
            first = first or name
            if chosen is None and name[0] == "official":
                chosen = name
        _use, given, family = chosen or first or (None, [], None)
        birth, gender = _s(get("birthDate")), _s(get("gender"))
        first = chosen = None
        for a in _dicts(get("address")):
            address = (_s(a.get("use")), _ss(a.get("line")), _s(a.get("city")), _s(a.get("postalCode")))
            first = first or address
            if chosen is None and address[0] == "home":
                chosen = address
        address = chosen or first
    except _Irregular:
        flat = flatten_patient(patient)
        return tuple(flat[f] for f in PATIENT_FIELDS)
    return (
        pid, nhs, given[0] if given else None, " ".join(given[1:]) if len(given) > 1 else None, family,
        birth, gender,
        *((" ".join(address[1]) or None, address[2], address[3]) if address else (None, None, None)),
    )


def tuple_columns_picker(mapping: Mapping) -> Callable[[list[tuple]], dict[str, list[str | None]]]:
    """`columns_picker` for rows given as `flat_values` tuples (the same values)."""
    specs = [(name, [PATIENT_FIELDS.index(c) for c in spec.columns]) for name, spec in mapping.identity.items()]

    def several(rows: list[tuple], at: list[int]) -> list[str | None]:
        out = []
        for row in rows:
            parts = [str(row[j]).strip() for j in at if row[j] not in (None, "")]
            out.append(" ".join(p for p in parts if p) or None)
        return out

    def pick(rows: list[tuple]) -> dict[str, list[str | None]]:
        # `flat_values` gives None or stripped non-empty text, which `columns_picker` keeps
        # as it is: a one-column field is the column itself (all transposed at once, in C).
        by_field = list(zip(*rows, strict=True)) if rows else [()] * len(PATIENT_FIELDS)
        return {name: list(by_field[at[0]]) if len(at) == 1 else several(rows, at) for name, at in specs}

    return pick


def _ref_id(reference: Any, field: str) -> str | None:
    ref = _string(_object(reference, field).get("reference"), f"{field}.reference") or ""
    for prefix in ("urn:uuid:", "Patient/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref or None


def _date(value: Any, field: str) -> date | None:
    """A FHIR date or dateTime element; None when absent; Malformed when not a date."""
    text = _string(value, field)
    if text is None:
        return None
    m = _FHIR_DATE.match(text)
    try:
        if m is None:
            raise ValueError
        # A partial date (FHIR allows "2024" and "2024-05") counts from its first day.
        return date(int(m[1]), int(m[2] or 1), int(m[3] or 1))
    except ValueError:
        raise Malformed(field, "not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)") from None


def _codes(concept: Any, field: str) -> list[str]:
    codings = _objects(_object(concept, field).get("coding"), f"{field}.coding")
    return [c for k, coding in enumerate(codings) if (c := _string(coding.get("code"), f"{field}.coding[{k}].code"))]


def _episode(resource: dict[str, Any], as_at: date | None) -> Indicator | None:
    status = _string(resource.get("status"), "EpisodeOfCare.status")
    period = _object(resource.get("period"), "EpisodeOfCare.period")
    start = _date(period.get("start"), "EpisodeOfCare.period.start")
    end = _date(period.get("end"), "EpisodeOfCare.period.end")
    for k, concept in enumerate(_list(resource.get("type"), "EpisodeOfCare.type")):
        for code in _codes(concept, f"EpisodeOfCare.type[{k}]"):
            if code in SERVICE_TYPES:
                indicator, finished_value = SERVICE_TYPES[code]
                if status in _ACTIVE_EPISODE:
                    return Indicator(indicator, "active", as_at or start)
                if status == "finished":
                    return Indicator(indicator, finished_value, end or as_at)
                return None  # cancelled / entered-in-error
    return None


def _condition(resource: dict[str, Any]) -> Indicator | None:
    status = _codes(resource.get("clinicalStatus"), "Condition.clinicalStatus")
    codes = _codes(resource.get("code"), "Condition.code")
    recorded = _date(resource.get("recordedDate"), "Condition.recordedDate")
    onset = _date(resource.get("onsetDateTime"), "Condition.onsetDateTime")
    if status and not set(status) & _ACTIVE_CONDITION:
        return None
    for code in codes:
        if code in LTC_GROUPS:
            return Indicator("nhs.long_term_condition", LTC_GROUPS[code], recorded or onset)
    return None


# Resource type -> (the element that references the Patient, the indicator it may give).
_EVIDENCE = {"EpisodeOfCare": ("patient", _episode), "Condition": ("subject", _condition)}


def _checked_files(input: str, mapping: Mapping) -> tuple[list[Path], dict[str, Any]]:
    """The Bundle files, the mapping and every file's head checked, and the first file
    loaded and fully checked: all before any record is yielded."""
    files = _files(input)
    try:
        mapping.check_columns(PATIENT_FIELDS, f"{input} (FHIR Patient fields)")
    except MappingError as exc:
        raise SourceError(str(exc)) from exc
    for path in files:
        _check_head(path)
    return files, _load(files[0])


def read(input: str, mapping: Mapping, rejects: RejectSink) -> Iterator[SourceRecord]:
    """Stream Patients (with indicators) from the Bundle file or directory at `input`."""
    files, first = _checked_files(input, mapping)
    return _stream(files, first, mapping, rejects)


def _resources(path: Path, bundle: dict[str, Any]) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(entry number from 1, resourceType, resource) of each entry; SourceError naming the
    file and entry for one that is not a resource at all (it cannot be counted as a row)."""
    for n, entry in enumerate(bundle.get("entry") or [], start=1):
        if not isinstance(entry, dict):
            raise SourceError(f"{path}: entry {n}: must be an object, not {_json_type(entry)}")
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            raise SourceError(f"{path}: entry {n}: resource must be an object, not {_json_type(resource)}")
        kind = resource.get("resourceType")
        if not isinstance(kind, str):
            raise SourceError(f"{path}: entry {n}: resource has no resourceType")
        yield n, kind, resource


def read_batches(input: str, mapping: Mapping, size: int, rejects: RejectSink) -> Iterator[tuple]:
    """The records of `read` as batches: (row numbers, identity columns, indicators per
    row), the identity columns picked for the whole batch at once (the extract's path)."""
    files, first = _checked_files(input, mapping)
    return _batches(files, first, mapping, size, rejects)


def _batches(files: list[Path], first: dict[str, Any], mapping: Mapping, size: int,
             rejects: RejectSink) -> Iterator[tuple]:
    pick = tuple_columns_picker(mapping)
    numbers: list[int] = []
    flats: list[tuple[str | None, ...]] = []
    found: list[list[Indicator]] = []
    for row_number, flat, indicators in _stream(files, first, mapping, rejects, picked=False):
        numbers.append(row_number)
        flats.append(flat)
        found.append(indicators)
        if len(numbers) >= size:
            yield numbers, pick(flats), found
            numbers, flats, found = [], [], []
    if numbers:
        yield numbers, pick(flats), found


def _stream(files: list[Path], first: dict[str, Any], mapping: Mapping, rejects: RejectSink,
            picked: bool = True) -> Iterator[Any]:
    """SourceRecords, or with `picked=False` (row number, `flat_values` tuple, indicators)."""
    pick = identity_picker(mapping)
    row_number = 0
    for k, path in enumerate(files):
        bundle = first if k == 0 else _load(path)
        try:
            as_at = _date(bundle.get("timestamp"), "Bundle.timestamp")
        except Malformed as bad:
            raise SourceError(f"{path}: {bad}") from None
        patients: list[dict[str, Any]] = []
        found: dict[str, list[Indicator]] = {}
        spoiled: dict[str, tuple[str, str]] = {}  # patient id -> its first malformed evidence
        for n, kind, resource in _resources(path, bundle):
            if kind == "Patient":
                patients.append(resource)
                continue
            if kind not in _EVIDENCE:
                continue
            ref_field, indicator_of = _EVIDENCE[kind]
            try:
                patient_id = _ref_id(resource.get(ref_field), f"{kind}.{ref_field}") or ""
            except Malformed as bad:
                raise SourceError(f"{path}: entry {n}: {bad}") from None
            try:
                ind = indicator_of(resource, as_at) if kind == "EpisodeOfCare" else indicator_of(resource)
            except Malformed as bad:
                # The evidence is unreadable: its patient is rejected rather than shown
                # without it (a missing barrier would read as "no record").
                spoiled.setdefault(patient_id, (bad.field, f"{bad.reason} ({path.name} entry {n})"))
                continue
            if ind:
                found.setdefault(patient_id, []).append(ind)
        for patient in patients:
            row_number += 1
            try:
                flat = flat_values(patient)
            except Malformed as bad:
                rejects(RowReject(row_number, bad.field, bad.reason))
                continue
            pid = flat[0]
            if pid and pid in spoiled:
                rejects(RowReject(row_number, *spoiled[pid]))
                continue
            indicators = found.get(pid or "", [])
            if picked:
                yield SourceRecord(row_number, pick(dict(zip(PATIENT_FIELDS, flat, strict=True))), indicators)
            else:
                yield row_number, flat, indicators
