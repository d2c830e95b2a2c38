"""Markdown and self-contained HTML renderings of a :class:`Report`.

Values that change between runs (times, ages, counts) sit between
``<!-- volatile -->`` and ``<!-- /volatile -->`` lines, which
``soc2kit controls --check`` drops before comparing; everything else must match
a fresh generation exactly.
"""

from __future__ import annotations

import html

from soc2kit.controls.evidence import EvidenceItem
from soc2kit.controls.model import STATUS_LABELS, CriterionResult, Report

VOLATILE_START = "<!-- volatile -->"
VOLATILE_END = "<!-- /volatile -->"

CATEGORY_TITLES = {
    "security": "Security (common criteria)",
    "availability": "Availability",
    "confidentiality": "Confidentiality",
    "processing-integrity": "Processing integrity",
    "privacy": "Privacy",
}

LIMITS = (
    "This document is not a SOC 2 report and does not say that the service or the "
    "organization meets the Trust Services Criteria. Only an independent CPA "
    "examination can conclude that. It records which criteria this service's code "
    "contributes to, how, and the evidence gathered from the running application; "
    "criteria marked organization-provided, and the organization part of shared "
    "ones, must be covered by the organization's own processes. Criterion titles "
    "are soc2kit's paraphrases, not AICPA text; the mapping is soc2kit's judgement "
    "and should be reviewed by someone with SOC 2 audit experience."
)


def _md(text: str) -> str:
    """Escape a value for Markdown: table-breaking characters, and HTML (renderers pass
    raw HTML through, and route paths or reasons come from the application)."""
    escaped = html.escape(text, quote=False)
    return escaped.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _scope_text(report: Report) -> str:
    return ", ".join(CATEGORY_TITLES[c] for c in ("security", *report.scope))


def render_markdown(report: Report) -> str:
    lines: list[str] = []
    add = lines.append
    add(f"# Control mapping: {report.service}")
    add("")
    add(VOLATILE_START)
    add(
        f"Generated {report.generated} by soc2kit {report.version} from `{report.app_ref}`"
        + (f" at commit `{report.commit}`." if report.commit else " (not a git checkout).")
    )
    add(VOLATILE_END)
    add("")
    add(f"- Environment: {report.environment}")
    add(f"- Trust Services categories in scope: {_scope_text(report)}")
    add("- Criteria: 2017 Trust Services Criteria (revised points of focus, 2022), 61 criteria")
    add("")
    add(f"> {LIMITS}")
    add("")
    add("## Summary")
    add("")
    add("| status | criteria |")
    add("|---|---|")
    for status, count in report.counts().items():
        add(f"| {STATUS_LABELS[status]} | {count} |")
    add("")
    add("| control | status |")
    add("|---|---|")
    for c in report.controls:
        add(f"| {c.control.id} {_md(c.control.title)} | {STATUS_LABELS[c.status]} |")
    add("")
    add("## Criteria")
    add("")
    add("| criterion | title | status | soc2kit controls |")
    add("|---|---|---|---|")
    for row in report.criteria:
        controls = (
            ", ".join(c.control.id for c in row.controls)
            if row.status
            in (
                "service-provided",
                "shared",
            )
            else ""
        )
        add(
            f"| {row.criterion.id} | {_md(row.criterion.title)} | {STATUS_LABELS[row.status]} "
            f"| {controls} |"
        )
    add("")
    add("## What the service provides, criterion by criterion")
    add("")
    for row in report.criteria:
        if row.status not in ("service-provided", "shared"):
            continue
        add(f"### {row.criterion.id}: {row.criterion.title}")
        add("")
        add(f"Status: **{STATUS_LABELS[row.status]}**.")
        add("")
        for c in row.controls:
            add(f"- **{c.control.id}** {c.control.title}: {c.control.statement}")
            for item in c.evidence:
                add(f"  - Evidence `{item.id}` ({item.result}): {_md(item.summary)}")
        if row.gap:
            add(f"- Gap: {row.gap}.")
        add(f"- The organization: {row.organization}")
        add("")
    add("## Criteria the organization must cover")
    add("")
    for row in report.criteria:
        if row.status != "organization-provided":
            continue
        gap = f" ({row.gap})" if row.gap else ""
        add(f"- **{row.criterion.id}** {row.criterion.title}{gap}. {row.criterion.note}")
    add("")
    out_of_scope = [r for r in report.criteria if r.status == "out-of-scope"]
    if out_of_scope:
        add("## Out of scope")
        add("")
        add(
            "These optional categories were not selected: "
            + ", ".join(sorted({CATEGORY_TITLES[r.criterion.category] for r in out_of_scope}))
            + f" ({len(out_of_scope)} criteria)."
        )
        add("")
    add("## Controls and their evidence")
    add("")
    for c in report.controls:
        add(f"### {c.control.id}: {c.control.title}")
        add("")
        add(c.control.statement)
        add("")
        add(f"Status: **{STATUS_LABELS[c.status]}**.")
        add("")
        for item in c.evidence:
            lines.extend(_md_evidence(item))
    add("## Evidence files")
    add("")
    add("Each item is a JSON file in `evidence/`; `manifest.json` records its SHA-256, the")
    add("command that produced it, its result and the collection time.")
    add("")
    add("| item | method | result | file |")
    add("|---|---|---|---|")
    for item in report.evidence:
        add(f"| {_md(item.title)} | {item.method} | {item.result} | `evidence/{item.id}.json` |")
    add("")
    return "\n".join(lines)


def _md_evidence(item: EvidenceItem) -> list[str]:
    lines = [
        f"#### Evidence `{item.id}`: {item.title}",
        "",
        f"- Result: **{item.result}**. {_md(item.summary)}",
        f"- How: {_md(item.source)} ({item.method})",
        "",
    ]
    if item.details:
        lines += ["| what | configured value |", "|---|---|"]
        lines += [f"| {_md(k)} | {_md(v)} |" for k, v in item.details]
        lines.append("")
    if item.observations:
        # The blank line sits inside the block: stripped, the document is the same
        # whether or not this run had anything to observe.
        lines.append(VOLATILE_START)
        lines += ["| observed at collection | value |", "|---|---|"]
        lines += [f"| {_md(k)} | {_md(v)} |" for k, v in item.observations]
        lines.append("")
        lines.append(VOLATILE_END)
    return lines


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:60rem;
margin:2rem auto;padding:0 1rem;color:#1b1b1b;line-height:1.45}
h1,h2,h3,h4{line-height:1.2}h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top;font-size:.9rem}
th{background:#f2f2f2}code{font-size:.85rem;word-break:break-all}
blockquote{border-left:4px solid #999;margin:1rem 0;padding:.25rem 1rem;background:#f8f8f8}
.s-service-provided,.s-shared,.r-pass,.s-implemented{color:#0a5c2b;font-weight:600}
.r-fail,.s-implemented-with-findings{color:#a00;font-weight:600}
.r-warn,.s-not-assessed{color:#8a5a00;font-weight:600}
.observed{color:#444}
@media print{body{max-width:none;margin:0}h2{page-break-before:auto}
section.control,section.criterion{page-break-inside:avoid}}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _status(status: str, prefix: str = "s") -> str:
    return f'<span class="{prefix}-{_e(status)}">{_e(STATUS_LABELS.get(status, status))}</span>'


def render_html(report: Report) -> str:
    """A printable page with inline CSS only: no script, font or image from anywhere."""
    out: list[str] = []
    add = out.append
    add("<!DOCTYPE html>")
    add('<html lang="en"><head><meta charset="utf-8">')
    add(
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">"
    )
    add(f"<title>Control mapping: {_e(report.service)}</title>")
    add(f"<style>{_CSS}</style></head><body>")
    add(f"<h1>Control mapping: {_e(report.service)}</h1>")
    add(VOLATILE_START)
    commit = f" at commit <code>{_e(report.commit)}</code>" if report.commit else ""
    add(
        f"<p>Generated {_e(report.generated)} by soc2kit {_e(report.version)} from "
        f"<code>{_e(report.app_ref)}</code>{commit}.</p>"
    )
    add(VOLATILE_END)
    add(
        f"<ul><li>Environment: {_e(report.environment)}</li><li>Trust Services categories "
        f"in scope: {_e(_scope_text(report))}</li><li>Criteria: 2017 Trust Services Criteria "
        "(revised points of focus, 2022), 61 criteria</li></ul>"
    )
    add(f"<blockquote>{_e(LIMITS)}</blockquote>")
    add("<h2>Summary</h2><table><tr><th>status</th><th>criteria</th></tr>")
    for status, count in report.counts().items():
        add(f"<tr><td>{_status(status)}</td><td>{count}</td></tr>")
    add("</table><table><tr><th>control</th><th>status</th></tr>")
    for c in report.controls:
        add(
            f"<tr><td>{_e(c.control.id)} {_e(c.control.title)}</td>"
            f"<td>{_status(c.status)}</td></tr>"
        )
    add("</table>")
    add(
        "<h2>Criteria</h2><table><tr><th>criterion</th><th>title</th><th>status</th>"
        "<th>soc2kit controls</th></tr>"
    )
    for row in report.criteria:
        controls = (
            ", ".join(c.control.id for c in row.controls)
            if row.status in ("service-provided", "shared")
            else ""
        )
        anchor = (
            f'<a href="#{_e(row.criterion.id)}">{_e(row.criterion.id)}</a>'
            if row.status != "out-of-scope"  # out-of-scope criteria have no section to jump to
            else _e(row.criterion.id)
        )
        add(
            f"<tr><td>{anchor}</td>"
            f"<td>{_e(row.criterion.title)}</td><td>{_status(row.status)}</td>"
            f"<td>{_e(controls)}</td></tr>"
        )
    add("</table>")
    add("<h2>What the service provides, criterion by criterion</h2>")
    for row in report.criteria:
        if row.status in ("service-provided", "shared"):
            out.extend(_html_criterion(row))
    add("<h2>Criteria the organization must cover</h2><ul>")
    for row in report.criteria:
        if row.status == "organization-provided":
            gap = f" ({_e(row.gap)})" if row.gap else ""
            add(
                f'<li id="{_e(row.criterion.id)}"><strong>{_e(row.criterion.id)}</strong> '
                f"{_e(row.criterion.title)}{gap}. {_e(row.criterion.note)}</li>"
            )
    add("</ul>")
    out_of_scope = [r for r in report.criteria if r.status == "out-of-scope"]
    if out_of_scope:
        cats = ", ".join(sorted({CATEGORY_TITLES[r.criterion.category] for r in out_of_scope}))
        add(
            f"<h2>Out of scope</h2><p>These optional categories were not selected: {_e(cats)} "
            f"({len(out_of_scope)} criteria).</p>"
        )
    add("<h2>Controls and their evidence</h2>")
    for c in report.controls:
        add(f'<section class="control" id="{_e(c.control.id)}">')
        add(f"<h3>{_e(c.control.id)}: {_e(c.control.title)}</h3>")
        add(f"<p>{_e(c.control.statement)}</p><p>Status: {_status(c.status)}</p>")
        for item in c.evidence:
            out.extend(_html_evidence(item))
        add("</section>")
    add(
        "<h2>Evidence files</h2><table><tr><th>item</th><th>method</th><th>result</th>"
        "<th>file</th></tr>"
    )
    for item in report.evidence:
        add(
            f"<tr><td>{_e(item.title)}</td><td>{_e(item.method)}</td>"
            f"<td>{_status(item.result, 'r')}</td><td><code>evidence/{_e(item.id)}.json</code>"
            "</td></tr>"
        )
    add("</table></body></html>")
    return "\n".join(out) + "\n"


def _html_criterion(row: CriterionResult) -> list[str]:
    out = [
        f'<section class="criterion" id="{_e(row.criterion.id)}">',
        f"<h3>{_e(row.criterion.id)}: {_e(row.criterion.title)}</h3>",
        f"<p>Status: {_status(row.status)}</p><ul>",
    ]
    for c in row.controls:
        out.append(
            f'<li><a href="#{_e(c.control.id)}"><strong>{_e(c.control.id)}</strong></a> '
            f"{_e(c.control.title)}: {_e(c.control.statement)}<ul>"
        )
        for item in c.evidence:
            out.append(
                f"<li>Evidence <code>{_e(item.id)}</code> ({_status(item.result, 'r')}): "
                f"{_e(item.summary)}</li>"
            )
        out.append("</ul></li>")
    if row.gap:
        out.append(f"<li>Gap: {_e(row.gap)}.</li>")
    out.append(f"<li>The organization: {_e(row.organization)}</li></ul></section>")
    return out


def _html_evidence(item: EvidenceItem) -> list[str]:
    out = [
        f"<h4>Evidence <code>{_e(item.id)}</code>: {_e(item.title)}</h4>",
        f"<p>Result: {_status(item.result, 'r')}. {_e(item.summary)}<br>"
        f"How: {_e(item.source)} ({_e(item.method)})</p>",
    ]
    if item.details:
        out.append("<table><tr><th>what</th><th>configured value</th></tr>")
        out += [f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in item.details]
        out.append("</table>")
    if item.observations:
        out.append(VOLATILE_START)
        out.append('<table class="observed"><tr><th>observed at collection</th><th>value</th></tr>')
        out += [f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in item.observations]
        out.append("</table>")
        out.append(VOLATILE_END)
    return out
