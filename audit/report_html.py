"""A self-contained, offline HTML page for a governance report: inline SVG charts, inline
CSS, no scripts and no external URLs, so it can be mailed to a board and opened anywhere."""

from __future__ import annotations

from html import escape

BAR = "#2b6cb0"
DENY = "#c53030"


def _hbar_chart(title: str, counts: dict[str, int], colour: str = BAR) -> str:
    """Horizontal bars, one per label, with the count at the end."""
    if not counts:
        return f"<section><h3>{escape(title)}</h3><p class='empty'>none in this period</p></section>"
    items = list(counts.items())[:20]
    top = max(v for _, v in items) or 1
    row, label_w, bar_w = 22, 260, 360
    height = row * len(items) + 10
    parts = [
        f"<svg role='img' aria-label='{escape(title)}' width='{label_w + bar_w + 60}' "
        f"height='{height}'>"
    ]
    for i, (label, value) in enumerate(items):
        y = 5 + i * row
        w = max(1, round(bar_w * value / top))
        text = label if len(label) <= 40 else label[:37] + "..."
        parts.append(
            f"<text x='{label_w - 6}' y='{y + 15}' text-anchor='end' font-size='12'>{escape(text)}</text>"
            f"<rect x='{label_w}' y='{y + 3}' width='{w}' height='{row - 6}' fill='{colour}'>"
            f"<title>{escape(label)}: {value}</title></rect>"
            f"<text x='{label_w + w + 4}' y='{y + 15}' font-size='12'>{value}</text>"
        )
    parts.append("</svg>")
    return f"<section><h3>{escape(title)}</h3>{''.join(parts)}</section>"


def _day_chart(title: str, by_day: dict[str, dict[str, int]]) -> str:
    """Vertical bars of accesses per day."""
    if not by_day:
        return f"<section><h3>{escape(title)}</h3><p class='empty'>none in this period</p></section>"
    days = list(by_day.items())
    totals = [sum(c.values()) for _, c in days]
    top = max(totals) or 1
    width, height, pad = max(300, 14 * len(days) + 60), 200, 30
    step = (width - pad - 10) / len(days)
    parts = [
        f"<svg role='img' aria-label='{escape(title)}' width='{width}' height='{height + 40}' "
        ">",
        f"<line x1='{pad}' y1='{height}' x2='{width - 10}' y2='{height}' stroke='#555'/>",
        f"<text x='2' y='14' font-size='11'>{top}</text>",
    ]
    for i, ((day, counts), total) in enumerate(zip(days, totals, strict=True)):
        h = round((height - 20) * total / top)
        x = pad + i * step
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        parts.append(
            f"<rect x='{x + 1:.1f}' y='{height - h}' width='{max(1.0, step - 2):.1f}' height='{h}' "
            f"fill='{BAR}'><title>{escape(day)}: {total} ({escape(detail)})</title></rect>"
        )
    parts.append(
        f"<text x='{pad}' y='{height + 16}' font-size='11'>{escape(days[0][0])}</text>"
        f"<text x='{width - 10}' y='{height + 16}' font-size='11' text-anchor='end'>"
        f"{escape(days[-1][0])}</text></svg>"
    )
    return f"<section><h3>{escape(title)}</h3>{''.join(parts)}</section>"


def _table(title: str, rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return f"<section><h3>{escape(title)}</h3><p class='empty'>none in this period</p></section>"
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(r.get(c)))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<section><h3>{escape(title)}</h3><table><tr>{head}</tr>{body}</table></section>"


def _cell(value: object) -> str:
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    return "" if value is None else str(value)


def render_report_html(report: dict) -> str:
    period = report["period"]
    accesses, denials, consent = report["accesses"], report["denials"], report["consent"]
    decisions = report["decisions"]
    withdrawals = [
        {**w, "stopped_actions": sorted({s.get("action") or "?" for s in w["stopped"]})}
        for w in consent["withdrawals"]
    ]
    summary_rows = [
        ("events", report["events"]),
        ("accesses (disclosures)", accesses["total"]),
        ("policy decisions allowed", decisions["allowed"]),
        ("policy decisions denied", decisions["denied"]),
        ("consent withdrawals", consent["withdrawn"]),
        ("link runs", len(report["link_runs"])),
    ]
    summary = "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in summary_rows)
    sections = [
        _day_chart("Accesses per day", accesses["by_day"]),
        _hbar_chart("Accesses by organisation", accesses["by_organisation"]),
        _hbar_chart("Accesses by role", accesses["by_role"]),
        _hbar_chart("Accesses by purpose", accesses["by_purpose"]),
        _hbar_chart("People each organisation saw summaries or referrals of",
                    report["people_seen_by_organisation"]),  # fmt: skip
        _hbar_chart("Denials by reason", denials["by_reason"], DENY),
        _hbar_chart("Denials by organisation", denials["by_organisation"], DENY),
        _table("Consent withdrawals and what they stopped", withdrawals,
               ["time", "receipt_id", "organisation", "requests_stopped", "stopped_actions"]),  # fmt: skip
        _table("Link runs", report["link_runs"],
               sorted({k for r in report["link_runs"] for k in r})),  # fmt: skip
        _table("Recent denials", denials["recent"],
               ["time", "organisation", "role", "action", "purpose", "reasons"]),  # fmt: skip
        _hbar_chart("Extracts ingested by source", report["extracts_ingested_by_source"]),
    ]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>joinedup audit report {escape(str(period['from']))} to {escape(str(period['to']))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1000px; }}
table {{ border-collapse: collapse; margin: .5em 0; }}
th, td {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; font-size: 13px; }}
section {{ margin: 1.5em 0; }} .empty {{ color: #777; }}
</style></head><body>
<h1>Audit report</h1>
<p>Period: {escape(str(period['from']))} to {escape(str(period['to']))} (generated
{escape(report['generated_at'])}). Counts come from the tamper-evident ledger; people are
counted by pseudonymous key and never named.</p>
<table>{summary}</table>
{''.join(sections)}
</body></html>
"""
