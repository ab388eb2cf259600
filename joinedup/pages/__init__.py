"""HTML pages: the demo's offline overview (one self-contained file) and the service's
status page. Templates are plain `string.Template` files beside this module; every value
is escaped here, images are inlined as data URIs, charts are inline SVG, so the overview
opens offline from anywhere."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from string import Template
from typing import Any

PAGES_DIR = Path(__file__).parent


def _template(name: str) -> Template:
    return Template((PAGES_DIR / name).read_text())


def _css() -> str:
    return (PAGES_DIR / "style.css").read_text()


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def render_status_page(status: dict) -> str:
    return _template("status.html").substitute(
        css=_css(),
        version=esc(status.get("version")),
        project_id=esc(status.get("project_id")),
        current_run=esc(status.get("current_run") or "none yet"),
        time=esc(status.get("time")),
    )


# -- generic pieces ----------------------------------------------------------------------
def kv_table(data: dict) -> str:
    rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{_cell(v)}</td></tr>" for k, v in data.items()
    )
    return f"<table>{rows}</table>"


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        return f"<code>{esc(json.dumps(value, default=str)[:400])}</code>"
    return esc(value)


def rows_table(rows: list[dict], columns: list[str] | None = None, numeric: set[str] = frozenset()) -> str:
    if not rows:
        return '<p class="muted">(no rows)</p>'
    columns = columns or list(rows[0].keys())
    head = "".join(f'<th class="{"num" if c in numeric else ""}">{esc(c)}</th>' for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{"num" if c in numeric else ""}">{_cell(r.get(c))}</td>' for c in columns
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def not_available(what: str) -> str:
    return f'<p class="na">Not available yet: {esc(what)}.</p>'


def image_data_uri(path: Path) -> str:
    mime = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}.get(
        path.suffix.lower(), "application/octet-stream"
    )
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def bar_chart_svg(bars: list[tuple[str, float]], title: str, width: int = 640) -> str:
    """A horizontal bar chart as inline SVG (no scripts, no network)."""
    if not bars:
        return '<p class="muted">(nothing to chart)</p>'
    row_h, label_w, pad = 22, 150, 8
    top = max(v for _, v in bars) or 1
    height = len(bars) * row_h + 2 * pad + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{esc(title)}" '
        f'width="{width}" height="{height}" class="chart">',
        f'<text x="{pad}" y="14" font-weight="600">{esc(title)}</text>',
    ]
    for i, (label, value) in enumerate(bars):
        y = 20 + pad + i * row_h
        w = (width - label_w - 60) * (value / top)
        parts.append(f'<text x="{pad}" y="{y + 14}">{esc(label)}</text>')
        parts.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="#1f6f8b"/>'
        )
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 14}">{esc(value)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# -- the overview ----------------------------------------------------------------------
SEVERITY_WORDS = {1: "low", 2: "medium", 3: "high"}


def _money(value: Any) -> str:
    try:
        return f"£{float(value):,.0f}"
    except (TypeError, ValueError):
        return "—"


def _short_id(value: Any) -> str:
    text = "" if value is None else str(value)
    return f'<code title="{esc(text)}">{esc(text[:14])}{"…" if len(text) > 14 else ""}</code>'


def summary_card(summary: dict) -> str:
    """One barrier summary as an adviser would read it: barriers, the flag, the payment."""
    barriers = [b for b in summary.get("barriers") or [] if isinstance(b, dict)]
    items = "".join(
        f'<tr><td><b>{esc(b.get("code"))}</b> {esc(b.get("label", ""))}</td>'
        f'<td><span class="sev sev{esc(b.get("severity"))}">'
        f'{esc(SEVERITY_WORDS.get(b.get("severity"), b.get("severity")))}</span></td>'
        f'<td>{esc(", ".join(b.get("evidenced_by") or b.get("sources") or []))}</td>'
        f'<td class="nowrap">{esc(b.get("last_seen", ""))}</td></tr>'
        for b in barriers
    )
    table = (
        '<table class="compact"><tr><th>barrier</th><th>severity</th><th>evidenced by</th>'
        f"<th>last seen</th></tr>{items}</table>"
        if items
        else '<p class="muted">No barriers on record (which means "no record", never "no need").</p>'
    )
    payment = summary.get("outcome_payment") or {}
    flag = summary.get("multiple_disadvantage")
    needs = summary.get("service_needs") or []
    facts = [
        ("multiple disadvantage", f'{"yes" if flag else "no"} ({len(barriers)} barrier areas)'),
        ("outcome payment", f'{_money(payment.get("total_gbp"))} (tariff '
                            f'{_money(payment.get("tariff_gbp"))}, adjustment '
                            f'{_money(payment.get("adjustment_gbp"))})'),
    ]
    facts_html = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    if needs:
        facts_html += ("<tr><th>service needs</th><td><ul>"
                       + "".join(f"<li>{esc(n)}</li>" for n in needs) + "</ul></td></tr>")
    ids = (f'summary {_short_id(summary.get("summary_id"))} · consent receipt '
           f'{_short_id(summary.get("consent_receipt_id"))} · policy decision '
           f'{_short_id(summary.get("policy_decision_id"))} · taxonomy '
           f'{esc(summary.get("taxonomy_version"))}')
    label = esc(summary.get("_label", summary.get("summary_id", "summary")))
    return (f'<div class="card summary"><h3>{label}</h3>{table}'
            f'<table class="facts">{facts_html}</table><p class="ids">{ids}</p></div>')


def _tiles(tiles: list[tuple[str, Any, str]]) -> str:
    return '<div class="tiles">' + "".join(
        f'<div class="tile"><div class="big">{esc(v)}</div><div class="what">{esc(k)}</div>'
        f'<div class="hint">{esc(h)}</div></div>' for k, v, h in tiles) + "</div>"


def _linkage_html(linkage: dict) -> str:
    raw = linkage.get("raw") or {}
    link = linkage.get("report_href")
    out = ('<p>The linkage unit saw only keyed tokens and Bloom-filter encodings of names, '
           'dates of birth and addresses, never the identifiers, and grouped the agencies\' '
           'records into people with a Fellegi–Sunter model (Splink) trained on this data.</p>')
    tiles = [("records linked", raw.get("records", "?"), "from four agencies"),
             ("people found", raw.get("entities", "?"), "groups of records of one person")]
    quality = linkage.get("quality")
    if quality:
        tiles += [("precision", f'{quality["precision"]:.1%}', "linked pairs that are right"),
                  ("recall", f'{quality["recall"]:.1%}', "true pairs that were linked")]
    out += _tiles(tiles)
    if quality:
        out += ('<p class="muted">Precision and recall are measured against the synthetic '
                'truth, which a real deployment does not have; the demo checks itself with '
                'it.</p>')
    per_source = raw.get("records_per_source") or {}
    if per_source:
        out += '<div class="two"><div><h3>Records per agency</h3>' + rows_table(
            [{"source": s, "records": n} for s, n in sorted(per_source.items())],
            ["source", "records"], {"records"}) + "</div>"
        sizes = raw.get("cluster_sizes") or {}
        out += "<div><h3>People by number of records</h3>" + bar_chart_svg(
            [(f"{k} record{'s' if k != '1' else ''}", v) for k, v in sorted(
                sizes.items(), key=lambda kv: int(kv[0]))],
            "people found with this many records", width=420) + "</div></div>"
    if link:
        out += (f'<p>Full linkage quality report (offline, Splink charts): '
                f'<a href="{esc(link)}">{esc(link)}</a></p>')
    out += ("<details><summary>All run facts</summary>"
            + kv_table(linkage.get("summary", {})) + "</details>")
    return out


def render_overview(data: dict) -> str:
    """data: steps, linkage, summaries, referral, areas, audit, headline (see joinedup.demo)."""
    steps_rows = [
        {"step": s["name"], "result": s["status"], "detail": s.get("detail", ""),
         "seconds": f'{s.get("seconds", 0):.1f}'}
        for s in data.get("steps", [])
    ]
    steps = rows_table(steps_rows, ["step", "result", "detail", "seconds"], {"seconds"})
    headline = _tiles([(k, v, h) for k, v, h in data.get("headline", [])])

    linkage = data.get("linkage")
    linkage_html = not_available("linkage") if linkage is None else _linkage_html(linkage)

    summaries = data.get("summaries")
    summaries_html = (
        not_available("summaries")
        if summaries is None
        else '<p>What a Citizen Support adviser sees for a consenting person: current '
        'barriers, how severe, which kinds of agency evidence them, and the outcome payment. '
        'No raw record, no diagnosis, no score.</p>'
        '<div class="cards">' + "".join(summary_card(s) for s in summaries) + "</div>"
        + ("<h3>Refused or not given</h3><ul>"
           + "".join(f"<li>{esc(n)}</li>" for n in data.get("summary_notes", [])) + "</ul>"
           if data.get("summary_notes") else "")
    )

    referral = data.get("referral")
    if referral is None:
        referral_html = not_available("referral")
    else:
        record = referral.get("record", {})
        referral_html = (
            f'<p>The adviser referred {esc(referral.get("person", "one person"))} to '
            f'<b>{esc(record.get("provider"))}</b>, asking it to address '
            f'<b>{esc(", ".join(record.get("barriers") or []))}</b>. The provider reads only '
            'those barriers, and only while the person\'s consent stands.</p>'
            f'<p class="ids">referral {_short_id(record.get("referral_id"))} · purpose '
            f'{esc(record.get("purpose"))} · created {esc(record.get("created_at"))}</p>'
            + ('<div class="cards">' + summary_card(referral["provider_view"]) + "</div>"
               if referral.get("provider_view") else "")
        )

    areas = data.get("areas")
    if areas is None:
        areas_html = not_available("area counts")
    else:
        areas_html = f'<p>{esc(areas.get("note", ""))}</p>' + areas.get("chart_svg", "")
        if areas.get("chart_png"):
            areas_html += (f'<p><img alt="heat map of published counts by area and barrier" '
                           f'src="{areas["chart_png"]}" class="figure"></p>')
        areas_html += rows_table(areas.get("rows", []), areas.get("columns"),
                                 set(areas.get("numeric", [])))
        if areas.get("csv_href"):
            areas_html += (f'<p>CSV: <a href="{esc(areas["csv_href"])}">'
                           f'{esc(areas["csv_href"])}</a></p>')

    audit = data.get("audit")
    if audit is None:
        audit_html = not_available("audit ledger")
    else:
        ok = audit.get("verified")
        verdict = (
            '<p class="ok">✔ Ledger verified: every entry, the Merkle tree and every signed '
            'checkpoint check out.</p>'
            if ok
            else f'<p class="bad">Ledger verification FAILED: {esc(audit.get("problem"))}</p>'
        )
        audit_html = verdict + (
            "<p>Every request above was decided by the Rego policies and written to the "
            "append-only ledger as exactly one entry (the disclosure carries its decision; "
            "a refusal is a decision entry). Entries hold pseudonymous ids only.</p>")
        if audit.get("by_type"):
            audit_html += bar_chart_svg(sorted(audit["by_type"].items()), "ledger entries by type")
        if audit.get("report_href"):
            audit_html += (f'<p>Governance report (accesses, refusals, withdrawals): '
                           f'<a href="{esc(audit["report_href"])}">{esc(audit["report_href"])}'
                           "</a></p>")
        audit_html += ("<details><summary>Verification facts</summary>"
                       + kv_table(audit.get("facts", {})) + "</details>")

    return _template("overview.html").substitute(
        css=_css(),
        generated_at=esc(data.get("generated_at")),
        project_id=esc(data.get("project_id")),
        headline=headline,
        steps=steps,
        outputs=rows_table(data.get("outputs", []), ["output", "where"]),
        linkage=linkage_html,
        summaries=summaries_html,
        referral=referral_html,
        areas=areas_html,
        audit=audit_html,
    )
