"""The four agencies' native formats, built from one chunk of the synthetic population:
DWP and housing as DataFrames (CSV), council as rows per table (SQL), NHS as FHIR R4
Bundles (JSON text). Local ids are assigned by the writer, which sees every chunk.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from connectors.sources.nhs import NHS_NUMBER_SYSTEM, SERVICE_TYPE_SYSTEM
from connectors.synth_people import (
    _B,
    REF_DATE,
    Copies,
    Geography,
    People,
    _bad_nhs,
    _between,
    _dates,
    _iso,
    _spaced_nhs,
    make_copies,
)

BUNDLE_SIZE = 2000
SNOMED = "http://snomed.info/sct"
# SNOMED CT concepts used for long-term conditions, and the group the reader reports.
LTC_CONCEPTS = (
    ("44054006", "Type 2 diabetes mellitus", "diabetes"),
    ("13645005", "Chronic obstructive lung disease", "copd"),
    ("195967001", "Asthma", "asthma"),
    ("279039007", "Low back pain", "msk"),
    ("53741008", "Coronary arteriosclerosis", "heart"),
    ("84757009", "Epilepsy", "epilepsy"),
)


# --------------------------------------------------------------------------- DWP


def dwp_frame(rng: np.random.Generator, p: People, geo: Geography) -> tuple[pd.DataFrame, Copies]:
    sev = p.severity
    n = len(p)
    wrk = sev[:, _B["WRK"]]
    months = _between(rng, np.array([0, 6, 12, 24])[wrk], np.array([6, 12, 24, 73])[wrk])
    spells = _between(rng, np.array([0, 1, 1, 3])[wrk], np.array([2, 3, 4, 7])[wrk])
    base = np.array(["UC", "JSA", "ESA"], dtype=object)[rng.choice(3, size=n, p=(0.8, 0.1, 0.1))]
    mh, ph = sev[:, _B["MH"]], sev[:, _B["PH"]]
    health = np.maximum(mh, ph)
    base = np.where((health >= 2) & (base == "JSA"), "UC", base)
    car = sev[:, _B["CAR"]]
    pip = sev[:, _B["DIS"]] > 0
    ca = (car == 1) | (car == 3)
    benefits = [
        ";".join([b] + (["PIP"] if q else []) + (["CA"] if c else []))
        for b, q, c in zip(base.tolist(), pip.tolist(), ca.tolist(), strict=True)
    ]
    ffw = (health < 2) & (rng.random(n) < 0.03)
    outcome = np.select([health == 3, health == 2, ffw], ["LCWRA", "LCW", "FFW"], "")
    condition = np.where(health >= 2, np.where(mh >= ph, "mental", "physical"), "")
    wca_date = REF_DATE - rng.integers(30, 700, size=n).astype("timedelta64[D]")
    fin = sev[:, _B["FIN"]]
    sanctions = _between(rng, np.array([0, 0, 1, 2])[fin], np.array([1, 1, 2, 4])[fin])
    skl = sev[:, _B["SKL"]]
    skills = np.array(["", "digital", "numeracy", "no_quals"], dtype=object)[skl]
    skills = np.where((skl == 2) & (rng.random(n) < 0.5), "literacy", skills)
    claim_start = REF_DATE - (months * 30.4 + rng.integers(0, 30, size=n)).astype("timedelta64[D]")

    c = make_copies(rng, p, geo, "dwp")
    j = c.pidx
    nino = p.nino[j].tolist()
    bad_nino = np.flatnonzero(rng.random(len(j)) < 0.001)
    for i in bad_nino:
        nino[i] = "QQ" + nino[i][2:]
        c.errors[i].append("bad_nino")
    spaced = rng.random(len(j)) < 0.2
    nino = [f"{v[:2]} {v[2:4]} {v[4:6]} {v[6:8]} {v[8]}" if s else v for v, s in zip(nino, spaced.tolist(), strict=True)]
    has_wca = outcome[j] != ""
    frame = pd.DataFrame(
        {
            "nino": nino,
            "forename": c.given,
            "middle_names": c.middle,
            "surname": [f.upper() for f in c.family],
            "date_of_birth": _dates(c, "dmy"),
            "sex": p.sex[j],
            "address_line_1": c.address,
            "address_line_2": "",
            "town": c.town,
            "postcode": c.postcode,
            "benefit_type": [benefits[k] for k in j.tolist()],
            "claim_start_date": _iso(claim_start[j]),
            "wca_outcome": outcome[j],
            "wca_condition_group": condition[j],
            "wca_date": np.where(has_wca, np.array(_iso(wca_date[j]), dtype=object), ""),
            "sanctions_12m": sanctions[j],
            "unemployment_spells_5y": spells[j],
            "months_unemployed": months[j],
            "lone_parent": np.where(car[j] >= 2, "Y", "N"),
            "skills_need": skills[j],
            "extract_date": str(REF_DATE),
        }
    )
    return frame, c


# --------------------------------------------------------------------------- housing


def housing_frame(rng: np.random.Generator, p: People, geo: Geography) -> tuple[pd.DataFrame, Copies]:
    n = len(p)
    fin = p.severity[:, _B["FIN"]]
    hou = p.severity[:, _B["HOU"]]
    arrears = _between(rng, np.array([0, 20, 40, 80])[fin], np.array([15, 39, 79, 200])[fin]) / 10.0
    arrears = np.where((fin == 0) & (rng.random(n) < 0.6), 0.0, arrears)
    stage = np.array(["", "prevention", "relief", "main_duty"], dtype=object)[hou]
    notice = np.array(["", "", "s21", "s8"], dtype=object)[hou]
    notice = np.where((hou == 3) & (rng.random(n) < 0.5), "possession_order", notice)
    temporary = np.where(hou == 3, "Y", "N")
    start = REF_DATE - rng.integers(60, 6000, size=n).astype("timedelta64[D]")
    updated = REF_DATE - rng.integers(0, 60, size=n).astype("timedelta64[D]")

    c = make_copies(rng, p, geo, "housing")
    j = c.pidx
    k = len(j)
    has_nino = rng.random(k) < 0.6
    postcode = [
        None if v is None else (v.replace(" ", "") if r < 0.03 else v.lower() if r < 0.05 else v)
        for v, r in zip(c.postcode, rng.random(k).tolist(), strict=True)
    ]
    frame = pd.DataFrame(
        {
            "tenant_forename": c.given,
            "tenant_surname": c.family,
            "tenant_dob": _dates(c, "dmy"),
            "ni_number": np.where(has_nino, p.nino[j], ""),
            "property_address": [f"{a}, {t}" for a, t in zip(c.address, c.town, strict=True)],
            "postcode": postcode,
            "tenancy_start": _iso(start[j]),
            "rent_arrears_weeks": arrears[j],
            "temporary_accommodation": temporary[j],
            "homelessness_stage": stage[j],
            "eviction_notice": notice[j],
            "last_updated": _iso(updated[j]),
        }
    )
    return frame, c


# --------------------------------------------------------------------------- council

# Column order of each council table as the worker emits rows. `person_ref` holds the
# index of the copy in this chunk and ref ids are None: the writer fills both in.
COUNCIL_COLUMNS = {
    "residents": (
        "person_ref", "forename", "middle_names", "surname", "date_of_birth", "sex",
        "nhs_number", "ni_number", "address_line_1", "address_line_2", "town", "postcode", "updated_on",
    ),
    "ctax_accounts": ("account_ref", "person_ref", "ctax_arrears_gbp", "hb_overpayment_gbp", "as_at"),
    "care_leavers": ("person_ref", "left_care_on", "recorded_on"),
    "adult_social_care": ("case_ref", "person_ref", "care_act_status", "carer_assessment", "assessed_on"),
    "supporting_families": ("case_ref", "person_ref", "case_status", "opened_on"),
}


def _days_ago(rng: np.random.Generator, lo: int, hi: int) -> str:
    return str(REF_DATE - np.timedelta64(int(rng.integers(lo, hi)), "D"))


def council_rows(rng: np.random.Generator, p: People, geo: Geography) -> tuple[dict[str, list[tuple]], Copies]:
    """Rows (tuples in COUNCIL_COLUMNS order) per council table; dates as ISO text."""
    c = make_copies(rng, p, geo, "council")
    j = c.pidx
    k = len(j)
    has_nhs = rng.random(k) < 0.5
    spaced = rng.random(k) < 0.3
    bad_nhs = has_nhs & (rng.random(k) < 0.003)
    nhs_values: list[str | None] = []
    for i, v in enumerate(p.nhs[j].tolist()):
        if not has_nhs[i]:
            nhs_values.append(None)
            continue
        if bad_nhs[i]:
            v = _bad_nhs(v)
            c.errors[i].append("bad_nhs")
        nhs_values.append(_spaced_nhs(v) if spaced[i] else v)
    has_nino = rng.random(k) < 0.4
    nino = np.where(has_nino, p.nino[j], None).tolist()
    updated = _iso(REF_DATE - rng.integers(0, 400, size=k).astype("timedelta64[D]"))
    residents = list(
        zip(
            range(k), c.given, [m or None for m in c.middle], c.family, _dates(c, "iso"),
            p.sex[j].tolist(), nhs_values, nino, c.address, [None] * k, c.town, c.postcode, updated,
            strict=True,
        )
    )
    sev = p.severity
    ctax: list[tuple] = []
    leavers: list[tuple] = []
    social: list[tuple] = []
    families: list[tuple] = []
    as_at = str(REF_DATE)
    for i in np.flatnonzero(c.original).tolist():
        q = j[i]
        fin, dis, car = int(sev[q, _B["FIN"]]), int(sev[q, _B["DIS"]]), int(sev[q, _B["CAR"]])
        if fin or rng.random() < 0.75:
            lo, hi = ((0, 0), (100, 399), (400, 1199), (1200, 3000))[fin]
            arrears = round(float(rng.uniform(lo, hi)), 2) if fin else 0.0
            hb = round(float(rng.uniform(200, 1500)), 2) if fin == 3 and rng.random() < 0.5 else None
            ctax.append((None, i, arrears, hb, as_at))
        if sev[q, _B["CLV"]]:
            left = str(p.dob[q] + np.timedelta64(18 * 365 + 5, "D"))
            leavers.append((i, left, _days_ago(rng, 0, 300)))
        status = {2: "assessed", 3: "eligible"}.get(dis)
        if status or car:
            social.append((None, i, status, bool(car), _days_ago(rng, 10, 500)))
        if sev[q, _B["FAM"]] or rng.random() < 0.04:
            families.append((None, i, "open" if sev[q, _B["FAM"]] else "closed", _days_ago(rng, 30, 900)))
    tables = {
        "residents": residents,
        "ctax_accounts": ctax,
        "care_leavers": leavers,
        "adult_social_care": social,
        "supporting_families": families,
    }
    return tables, c


# --------------------------------------------------------------------------- NHS (FHIR)

UK_CORE_PATIENT = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
_SERVICES = {
    "secondary-mental-health": "Secondary mental health services",
    "talking-therapies": "NHS Talking Therapies",
    "drug-alcohol": "Drug and alcohol treatment services",
}


def _uuids(rng: np.random.Generator, n: int) -> list[str]:
    """Random (version 4 shaped) UUIDs from the seeded stream."""
    hexes = rng.bytes(16 * n).hex()
    out = []
    for i in range(0, 32 * n, 32):
        h = hexes[i : i + 32]
        out.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}")
    return out


def _js(text: str) -> str:
    """A JSON string literal (the fast path: synthetic values hold no quote or backslash)."""
    return json.dumps(text) if '"' in text or "\\" in text else f'"{text}"'


def nhs_bundles(rng: np.random.Generator, p: People, geo: Geography) -> tuple[list[str], Copies, list[str]]:
    """FHIR collection Bundles as JSON text (a Patient's resources share its Bundle)."""
    c = make_copies(rng, p, geo, "nhs")
    j = c.pidx
    k = len(j)
    ids = _uuids(rng, k)
    dob = _dates(c, "iso")
    missing_nhs = rng.random(k) < 0.01
    bad_nhs = ~missing_nhs & (rng.random(k) < 0.003)
    gender = np.where(p.sex[j] == "F", "female", "male").tolist()
    nhs = p.nhs[j].tolist()
    # Clinical resources hang off the first copy of a person only (duplicates are bare).
    sev = p.severity[j][:, [_B["MH"], _B["SUB"], _B["PH"]]] * c.original[:, None]
    clinical = _clinical_resources(rng, sev, ids)
    entries: list[str] = []
    bundles: list[str] = []
    bundle_ids = iter(_uuids(rng, k // BUNDLE_SIZE + 1))
    for i in range(k):
        if missing_nhs[i]:
            c.errors[i].append("missing_nhs")
            ident = ""
        else:
            number = nhs[i]
            if bad_nhs[i]:
                number = _bad_nhs(number)
                c.errors[i].append("bad_nhs")
            ident = f'"identifier":[{{"system":"{NHS_NUMBER_SYSTEM}","value":"{number}"}}],'
        given = _js(c.given[i]) + (f",{_js(c.middle[i])}" if c.middle[i] else "")
        postcode = "" if c.postcode[i] is None else f',"postalCode":{_js(c.postcode[i])}'
        pid = ids[i]
        entries.append(
            f'{{"fullUrl":"urn:uuid:{pid}","resource":{{"resourceType":"Patient","id":"{pid}",'
            f'"meta":{{"profile":["{UK_CORE_PATIENT}"]}},{ident}'
            f'"name":[{{"use":"official","family":{_js(c.family[i])},"given":[{given}]}}],'
            f'"gender":"{gender[i]}","birthDate":"{dob[i]}",'
            f'"address":[{{"use":"home","line":[{_js(c.address[i])}],"city":{_js(c.town[i])}{postcode}}}]}}}}'
        )
        entries.extend(clinical.get(i, ()))
        if (i + 1) % BUNDLE_SIZE == 0 or i == k - 1:
            bundles.append(_bundle(next(bundle_ids), entries))
            entries = []
    return bundles, c, ids


def _bundle(bundle_id: str, entries: list[str]) -> str:
    return (
        f'{{"resourceType":"Bundle","id":"{bundle_id}","type":"collection",'
        f'"timestamp":"{REF_DATE}T00:00:00Z","entry":[{",".join(entries)}]}}'
    )


def _episode(rid: str, pid: str, service: str, active: bool, start: str, end: str) -> str:
    period = f'{{"start":"{start}"}}' if active else f'{{"start":"{start}","end":"{end}"}}'
    return (
        f'{{"fullUrl":"urn:uuid:{rid}","resource":{{"resourceType":"EpisodeOfCare","id":"{rid}",'
        f'"status":"{"active" if active else "finished"}",'
        f'"type":[{{"coding":[{{"system":"{SERVICE_TYPE_SYSTEM}","code":"{service}","display":"{_SERVICES[service]}"}}]}}],'
        f'"patient":{{"reference":"urn:uuid:{pid}"}},"period":{period}}}}}'
    )


def _condition(rid: str, pid: str, concept: tuple[str, str, str], recorded: str) -> str:
    code, display, _group = concept
    return (
        f'{{"fullUrl":"urn:uuid:{rid}","resource":{{"resourceType":"Condition","id":"{rid}",'
        '"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active","display":"Active"}]},'
        '"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-category","code":"problem-list-item","display":"Problem List Item"}]}],'
        f'"code":{{"coding":[{{"system":"{SNOMED}","code":"{code}","display":"{display}"}}]}},'
        f'"subject":{{"reference":"urn:uuid:{pid}"}},"recordedDate":"{recorded}"}}}}'
    )


def _clinical_resources(rng: np.random.Generator, sev: np.ndarray, ids: list[str]) -> dict[int, list[str]]:
    """EpisodeOfCare / Condition entries per copy index, from its MH, SUB, PH severities.

    MH: talking therapies finished (1) / active (2), secondary mental health active (3);
    SUB: drug and alcohol finished (1) / active (2, 3); PH: one condition, two at 3."""
    mh, sub, ph = sev[:, 0], sev[:, 1], sev[:, 2]
    n = len(sev)
    starts = _iso(REF_DATE - rng.integers(60, 900, size=(n, 2)).astype("timedelta64[D]").ravel())
    ends = _iso(REF_DATE - rng.integers(1, 55, size=(n, 2)).astype("timedelta64[D]").ravel())
    recorded = _iso(REF_DATE - rng.integers(30, 2000, size=(n, 2)).astype("timedelta64[D]").ravel())
    ltc = rng.integers(0, len(LTC_CONCEPTS), size=(n, 2))
    needed = int((mh > 0).sum() + (sub > 0).sum() + (ph > 0).sum() + (ph == 3).sum())
    rids = iter(_uuids(rng, needed))
    out: dict[int, list[str]] = {}
    for i in np.flatnonzero(sev.any(axis=1)).tolist():
        pid, res = ids[i], []
        if mh[i] == 3:
            res.append(_episode(next(rids), pid, "secondary-mental-health", True, starts[2 * i], ""))
        elif mh[i]:
            res.append(_episode(next(rids), pid, "talking-therapies", mh[i] == 2, starts[2 * i], ends[2 * i]))
        if sub[i]:
            res.append(_episode(next(rids), pid, "drug-alcohol", sub[i] >= 2, starts[2 * i + 1], ends[2 * i + 1]))
        for h in range(int(ph[i] > 0) + int(ph[i] == 3)):
            res.append(_condition(next(rids), pid, LTC_CONCEPTS[ltc[i, h]], recorded[2 * i + h]))
        out[i] = res
    return out
