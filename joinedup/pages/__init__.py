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
def summary_card(summary: dict) -> str:
    """One barrier summary, whatever extra keys it carries (shown as facts below)."""
    barriers = summary.get("barriers") or []
    items = "".join(
        f'<tr><td><b>{esc(b.get("code"))}</b> {esc(b.get("label", ""))}</td>'
        f'<td><span class="sev sev{esc(b.get("severity"))}">{esc(b.get("severity"))}</span></td>'
        f'<td>{esc(", ".join(b.get("evidenced_by") or b.get("sources") or []))}</td>'
        f'<td>{esc(b.get("last_seen", ""))}</td></tr>'
        for b in barriers
        if isinstance(b, dict)
    )
    table = (
        f"<table><tr><th>barrier</th><th>severity</th><th>evidenced by</th><th>last seen</th></tr>"
        f"{items}</table>"
        if items
        else '<p class="muted">No barriers on record (which means "no record", never "no need").</p>'
    )
    facts = {
        k: v
        for k, v in summary.items()
        if k in ("summary_id", "multiple_disadvantage", "outcome_payment", "taxonomy_version",
                 "consent_receipt_id", "policy_decision_id", "service_needs", "status")
    }
    label = esc(summary.get("_label", summary.get("summary_id", "summary")))
    return f'<div class="card summary"><h3>{label}</h3>{table}{kv_table(facts)}</div>'


def render_overview(data: dict) -> str:
    """data: steps, linkage, summaries, referral, areas, audit (see joinedup.demo)."""
    steps_rows = [
        {"step": s["name"], "result": s["status"], "detail": s.get("detail", ""),
         "seconds": f'{s.get("seconds", 0):.1f}'}
        for s in data.get("steps", [])
    ]
    steps = rows_table(steps_rows, ["step", "result", "detail", "seconds"], {"seconds"})

    linkage = data.get("linkage")
    if linkage is None:
        linkage_html = not_available("linkage")
    else:
        link = linkage.get("report_href")
        linkage_html = (
            (f'<p>Full Splink report (offline): <a href="{esc(link)}">{esc(link)}</a></p>' if link else "")
            + kv_table(linkage.get("summary", {}))
        )

    summaries = data.get("summaries")
    summaries_html = (
        not_available("summaries")
        if summaries is None
        else '<div class="cards">' + "".join(summary_card(s) for s in summaries) + "</div>"
        + "".join(f'<p class="muted">{esc(n)}</p>' for n in data.get("summary_notes", []))
    )

    referral = data.get("referral")
    referral_html = not_available("referral") if referral is None else (
        kv_table(referral.get("record", {}))
        + ("<h3>What the provider reads</h3>" + summary_card(referral["provider_view"])
           if referral.get("provider_view") else "")
    )

    areas = data.get("areas")
    if areas is None:
        areas_html = not_available("area counts")
    else:
        chart = areas.get("chart_svg", "")
        if areas.get("chart_png"):
            chart += f'<p><img alt="area chart" src="{areas["chart_png"]}" style="max-width:100%"></p>'
        areas_html = chart + rows_table(areas.get("rows", []), areas.get("columns"),
                                        set(areas.get("numeric", [])))
        areas_html += f'<p class="muted">{esc(areas.get("note", ""))}</p>'

    audit = data.get("audit")
    if audit is None:
        audit_html = not_available("audit ledger")
    else:
        ok = audit.get("verified")
        verdict = (
            '<p class="ok">Ledger verified: every entry and checkpoint checks out.</p>'
            if ok
            else f'<p class="bad">Ledger verification FAILED: {esc(audit.get("problem"))}</p>'
        )
        audit_html = verdict + kv_table(audit.get("facts", {}))
        if audit.get("by_type"):
            audit_html += bar_chart_svg(sorted(audit["by_type"].items()), "events by type")
        if audit.get("report_href"):
            audit_html += f'<p>Governance report: <a href="{esc(audit["report_href"])}">{esc(audit["report_href"])}</a></p>'

    return _template("overview.html").substitute(
        css=_css(),
        generated_at=esc(data.get("generated_at")),
        project_id=esc(data.get("project_id")),
        steps=steps,
        linkage=linkage_html,
        summaries=summaries_html,
        referral=referral_html,
        areas=areas_html,
        audit=audit_html,
    )
