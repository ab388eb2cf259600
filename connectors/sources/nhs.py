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
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from connectors.mapping import Mapping, MappingError, mapping_from_dict
from connectors.records import Indicator, SourceRecord
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
    if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle":
        raise SourceError(f"{path}: not a FHIR Bundle (resourceType is {doc.get('resourceType') if isinstance(doc, dict) else type(doc).__name__!r})")
    if not isinstance(doc.get("entry", []), list):
        raise SourceError(f"{path}: Bundle.entry is not a list")
    return doc


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def flatten_patient(patient: dict[str, Any]) -> dict[str, str | None]:
    """The Patient's identity as flat raw strings (see the module doc for the names)."""
    flat: dict[str, str | None] = dict.fromkeys(PATIENT_FIELDS)
    flat["id"] = _text(patient.get("id"))
    for ident in patient.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == NHS_NUMBER_SYSTEM:
            flat["nhs_number"] = _text(ident.get("value"))
            break
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    given = [g for g in name.get("given") or [] if _text(g)]
    flat["given"] = _text(given[0]) if given else None
    flat["middle_names"] = _text(" ".join(given[1:])) if len(given) > 1 else None
    flat["family"] = _text(name.get("family"))
    flat["birthDate"] = _text(patient.get("birthDate"))
    flat["gender"] = _text(patient.get("gender"))
    addresses = [a for a in patient.get("address") or [] if isinstance(a, dict)]
    address = next((a for a in addresses if a.get("use") == "home"), addresses[0] if addresses else {})
    flat["address_line"] = _text(" ".join(str(x) for x in address.get("line") or []))
    flat["city"] = _text(address.get("city"))
    flat["postalCode"] = _text(address.get("postalCode"))
    return flat


def _ref_id(reference: Any) -> str | None:
    if not isinstance(reference, dict):
        return None
    ref = str(reference.get("reference") or "")
    for prefix in ("urn:uuid:", "Patient/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref or None


def _date(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def _codes(concept: Any) -> list[str]:
    if not isinstance(concept, dict):
        return []
    return [str(c.get("code")) for c in concept.get("coding") or [] if isinstance(c, dict)]


def _episode(resource: dict[str, Any], as_at: date | None) -> Indicator | None:
    for concept in resource.get("type") or []:
        for code in _codes(concept):
            if code in SERVICE_TYPES:
                indicator, finished_value = SERVICE_TYPES[code]
                status = resource.get("status")
                period = resource.get("period") or {}
                if status in _ACTIVE_EPISODE:
                    return Indicator(indicator, "active", as_at or _date(period.get("start")))
                if status == "finished":
                    return Indicator(indicator, finished_value, _date(period.get("end")) or as_at)
                return None  # cancelled / entered-in-error
    return None


def _condition(resource: dict[str, Any]) -> Indicator | None:
    status = _codes(resource.get("clinicalStatus"))
    if status and not set(status) & _ACTIVE_CONDITION:
        return None
    for code in _codes(resource.get("code")):
        if code in LTC_GROUPS:
            when = _date(resource.get("recordedDate")) or _date(resource.get("onsetDateTime"))
            return Indicator("nhs.long_term_condition", LTC_GROUPS[code], when)
    return None


def read(input: str, mapping: Mapping) -> Iterator[SourceRecord]:
    """Stream Patients (with indicators) from the Bundle file or directory at `input`."""
    files = _files(input)
    try:
        mapping.check_columns(PATIENT_FIELDS, f"{input} (FHIR Patient fields)")
    except MappingError as exc:
        raise SourceError(str(exc)) from exc
    for path in files:
        _check_head(path)
    first = _load(files[0])  # fully checked before anything is yielded
    return _stream(files, first, mapping)


def _stream(files: list[Path], first: dict[str, Any], mapping: Mapping) -> Iterator[SourceRecord]:
    pick = identity_picker(mapping)
    row_number = 0
    for k, path in enumerate(files):
        bundle = first if k == 0 else _load(path)
        as_at = _date(bundle.get("timestamp"))
        patients: list[dict[str, Any]] = []
        found: dict[str, list[Indicator]] = {}
        for entry in bundle.get("entry") or []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict):
                continue
            kind = resource.get("resourceType")
            if kind == "Patient":
                patients.append(resource)
            elif kind == "EpisodeOfCare":
                ind = _episode(resource, as_at)
                if ind:
                    found.setdefault(_ref_id(resource.get("patient")) or "", []).append(ind)
            elif kind == "Condition":
                ind = _condition(resource)
                if ind:
                    found.setdefault(_ref_id(resource.get("subject")) or "", []).append(ind)
        for patient in patients:
            row_number += 1
            flat = flatten_patient(patient)
            yield SourceRecord(row_number, pick(flat), found.get(flat["id"] or "", []))
