"""Render a report dict as one self-contained HTML page: inline CSS, inline SVG, no script, no URL.

Every piece of text from the data goes through ``html.escape``; charts are drawn by the small SVG
functions below (bar chart, histogram, line chart), so opening the file needs no network.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

__all__ = ["bar_chart", "histogram", "line_chart", "render_html"]

FONT_STACK = (
    'system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans CJK SC", "Noto Sans SC", '
    '"Source Han Sans SC", "PingFang SC", "Microsoft YaHei", "WenQuanYi Micro Hei", sans-serif'
)
BLUE = "#2563eb"
RED = "#dc2626"
GREY = "#6b7280"
GRID = "#e5e7eb"
EVALUATOR_COLOURS = ("#2563eb", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d")

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f3f4f6;color:#111827;font:14px/1.5 FONTS}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:18px;margin:0 0 12px}
h3{font-size:14px;margin:0 0 6px;color:#374151}
section{background:#fff;border-radius:10px;padding:18px 20px;margin:16px 0;
  box-shadow:0 1px 2px rgba(0,0,0,.06)}
.sub{color:#4b5563;margin:0}
.badge{display:inline-block;border-radius:999px;padding:1px 9px;font-size:12px;
  font-weight:600;margin-left:6px;vertical-align:middle}
.b-sim{background:#fef3c7;color:#92400e}.b-ref{background:#e0e7ff;color:#3730a3}
.b-kept{background:#dcfce7;color:#166534}.b-drop{background:#fee2e2;color:#991b1b}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(125px,1fr));gap:12px}
.card{background:#fff;border-radius:10px;padding:12px 14px;box-shadow:0 1px 2px rgba(0,0,0,.06)}
.card .v{font-size:22px;font-weight:700}.card .k{color:#6b7280;font-size:12px}
.row{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
.grid{display:flex;flex-wrap:wrap;gap:8px 12px}
table{border-collapse:collapse;font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid #e5e7eb;text-align:right}
th{background:#f9fafb;font-weight:600}
th.l,td.l{text-align:left}
table.tight{font-size:11px}table.tight th,table.tight td{padding:3px 5px}
.muted{color:#6b7280;font-size:12px}
.ex{border:1px solid #e5e7eb;border-radius:8px;padding:10px 12px;margin:10px 0}
.ex .q{font-weight:600}
.ex pre{white-space:pre-wrap;word-break:break-word;font:inherit;margin:4px 0;
  background:#f9fafb;border-radius:6px;padding:6px 8px}
.ex .meta{color:#6b7280;font-size:12px}
.ex .lbl{color:#6b7280;font-size:11px;text-transform:uppercase;letter-spacing:.04em;margin-top:6px}
svg text{font-family:FONTS}
""".replace("FONTS", FONT_STACK)


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _svg(width: int, height: int, label: str, body: list[str]) -> str:
    return (
        f'<svg width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(label)}">'
        f"<title>{_e(label)}</title>{''.join(body)}</svg>"
    )


def bar_chart(
    items: Sequence[tuple[str, float]],
    *,
    width: int = 560,
    bar_height: int = 22,
    label_width: int = 150,
    colour: str = BLUE,
    title: str = "bar chart",
) -> str:
    """Horizontal bars, one per (label, value), each labelled with its value."""
    gap = 6
    height = len(items) * (bar_height + gap) + gap
    top = max((v for _, v in items), default=0) or 1
    span = width - label_width - 70
    body = []
    for i, (label, value) in enumerate(items):
        y = gap + i * (bar_height + gap)
        w = max(0.0, value) / top * span
        body.append(
            f'<text x="{label_width - 8}" y="{y + bar_height * 0.7:.1f}" font-size="13" '
            f'text-anchor="end" fill="#374151">{_e(label)}</text>'
            f'<rect x="{label_width}" y="{y}" width="{w:.1f}" height="{bar_height}" rx="3" '
            f'fill="{colour}"><title>{_e(label)}: {_e(_num(value))}</title></rect>'
            f'<text x="{label_width + w + 6:.1f}" y="{y + bar_height * 0.7:.1f}" font-size="12" '
            f'fill="#111827">{_e(_num(value))}</text>'
        )
    return _svg(width, height, title, body)


def histogram(
    counts: Sequence[int],
    *,
    width: int = 164,
    height: int = 118,
    colour: str = BLUE,
    title: str = "histogram",
) -> str:
    """Vertical bars for score bins 0..len-1, x labels under each bin, the tallest count on top."""
    left, right, top, bottom = 8, 6, 22, 18
    n = len(counts) or 1
    plot_w = width - left - right
    plot_h = height - top - bottom
    peak = max(counts, default=0) or 1
    bw = plot_w / n
    body = [
        f'<text x="{left}" y="13" font-size="12" font-weight="600" fill="#374151">'
        f"{_e(title)}</text>",
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
        f'stroke="{GREY}" stroke-width="1"/>',
    ]
    for i, c in enumerate(counts):
        h = c / peak * plot_h
        x = left + i * bw
        body.append(
            f'<rect x="{x + 1:.1f}" y="{top + plot_h - h:.1f}" width="{bw - 2:.1f}" '
            f'height="{h:.1f}" fill="{colour}"><title>score {i}: {c}</title></rect>'
            f'<text x="{x + bw / 2:.1f}" y="{height - 5}" font-size="9" text-anchor="middle" '
            f'fill="{GREY}">{i}</text>'
        )
        if c == peak and c > 0:
            body.append(
                f'<text x="{x + bw / 2:.1f}" y="{top + plot_h - h - 3:.1f}" font-size="9" '
                f'text-anchor="middle" fill="#111827">{c}</text>'
            )
    return _svg(width, height, title, body)


def line_chart(
    points: Sequence[tuple[float, float]],
    *,
    width: int = 1000,
    height: int = 280,
    x_max: float = 10.0,
    marker: float | None = None,
    title: str = "line chart",
) -> str:
    """y (0..1, shown as %) against x (0..x_max) with grid lines and an optional marker line."""
    left, right, top, bottom = 48, 16, 14, 38
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + x / x_max * pw

    def sy(y: float) -> float:
        return top + (1 - y) * ph

    body = []
    for q in (0, 0.25, 0.5, 0.75, 1.0):
        body.append(
            f'<line x1="{left}" y1="{sy(q):.1f}" x2="{width - right}" y2="{sy(q):.1f}" '
            f'stroke="{GRID}"/><text x="{left - 6}" y="{sy(q) + 4:.1f}" font-size="11" '
            f'text-anchor="end" fill="{GREY}">{int(q * 100)}%</text>'
        )
    for t in range(int(x_max) + 1):
        body.append(
            f'<text x="{sx(t):.1f}" y="{top + ph + 16}" font-size="11" text-anchor="middle" '
            f'fill="{GREY}">{t}</text>'
        )
    body.append(
        f'<text x="{left + pw / 2:.1f}" y="{height - 4}" font-size="12" text-anchor="middle" '
        f'fill="#374151">min_score_threshold</text>'
    )
    if marker is not None:
        body.append(
            f'<line x1="{sx(marker):.1f}" y1="{top}" x2="{sx(marker):.1f}" y2="{top + ph}" '
            f'stroke="{RED}" stroke-dasharray="5 4"/><text x="{sx(marker) + 5:.1f}" '
            f'y="{top + 12}" font-size="11" fill="{RED}">current {marker:g}</text>'
        )
    if points:
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
        body.append(f'<polyline points="{path}" fill="none" stroke="{BLUE}" stroke-width="2.5"/>')
        for x, y in points:
            body.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.5" fill="{BLUE}">'
                f"<title>threshold {x:g}: {100 * y:.1f}% pass</title></circle>"
            )
    return _svg(width, height, title, body)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 1) -> str:
    """An HTML table; cells are already escaped; the first ``left`` columns align left."""
    head = "".join(
        f'<th class="l">{h}</th>' if i < left else f"<th>{h}</th>" for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="l">{c}</td>' if i < left else f"<td>{c}</td>" for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cards(report: Mapping[str, Any]) -> str:
    funnel = {f["stage"]: f["count"] for f in report.get("funnel", [])}
    n = report.get("samples", 0)
    if "train" in funnel and "val" in funnel:
        kept = funnel["train"] + funnel["val"]  # what the splits hold, after dedup and caps
    else:
        kept = report.get("kept", 0)
    tp = report.get("throughput") or {}
    cost = report.get("cost")
    cards = [
        ("slices read", _num(funnel.get("slices read"))),
        ("samples generated", _num(n)),
        ("kept", _num(kept)),
        ("keep rate", _pct(kept / n) if n else "–"),
        ("train / val", f"{_num(funnel.get('train'))} / {_num(funnel.get('val'))}"),
        ("teacher tokens/s", _num(tp.get("teacher_tokens_per_s"), 1)),
        ("kept samples / hour", _num(tp.get("kept_per_hour"), 0)),
        ("cost", _num(cost["total"], 4) if cost else "no prices"),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="v">{v}</div><div class="k">{_e(k)}</div></div>'
            for k, v in cards
        )
        + "</div>"
    )


def _funnel_section(report: Mapping[str, Any]) -> str:
    funnel = report.get("funnel", [])
    chart = bar_chart(
        [(f["stage"], f["count"]) for f in funnel], title="funnel: items at each stage"
    )
    drops = report.get("drop_reasons") or {}
    losses = report.get("losses") or {}
    drop_t = _table(
        ["drop reason", "samples"], [[_e(k), _num(v)] for k, v in drops.items()] or [["none", "0"]]
    )
    parts = [f"<div>{chart}</div>", f"<div><h3>Dropped samples</h3>{drop_t}"]
    if losses:
        parts.append(
            "<h3 style='margin-top:14px'>Lost before judging</h3>"
            + _table(["what", "count"], [[_e(k), _num(v)] for k, v in losses.items()])
        )
    parts.append(_compliance_tables(report.get("compliance") or {}))
    parts.append("</div>")
    return f'<section id="funnel"><h2>Funnel</h2><div class="row">{"".join(parts)}</div></section>'


def _histogram_pair(title: str, pair: Mapping[str, Mapping[str, int]]) -> str:
    """A generated/kept table and a chart of the kept counts, or a line saying there are none."""
    gen, kept = pair.get("generated") or {}, pair.get("kept") or {}
    if not gen and not kept:
        return f"<div><h3>{_e(title)}</h3><p class='muted'>none given by the teacher</p></div>"
    labels = list(dict.fromkeys([*kept, *gen]))
    table = _table(
        [_e(title), "generated", "kept"],
        [[_e(k), _num(gen.get(k, 0)), _num(kept.get(k, 0))] for k in labels],
    )
    chart = bar_chart([(k, kept.get(k, 0)) for k in labels], title=f"{title}: kept samples")
    return f"<div><h3>{_e(title)}</h3>{table}<div style='margin-top:8px'>{chart}</div></div>"


def _quality_section(report: Mapping[str, Any]) -> str:
    """Evidence, referential wording, what each check dropped, question types and difficulty."""
    q = report.get("quality")
    if not q:
        return ""
    ref = q.get("referential_rate") or {}
    ev = (q.get("evidence") or {}).get("kept") or {}
    cards = [
        ("kept with verified evidence", _pct(q.get("evidence_verified_share"))),
        ("referential wording, generated", _pct(ref.get("generated"))),
        ("referential wording, kept", _pct(ref.get("kept"))),
    ]
    card_html = "".join(
        f'<div class="card"><div class="v">{v}</div><div class="k">{_e(k)}</div></div>'
        for k, v in cards
    )
    drops = q.get("check_drops") or {}
    flags = q.get("check_flags") or {}
    flagged, flagged_kept = flags.get("generated") or {}, flags.get("kept") or {}
    checks = _table(
        ["check", "dropped", "flagged for the judges", "flagged, kept"],
        [
            [_e(k), _num(v), _num(flagged.get(k, 0)), _num(flagged_kept.get(k, 0))]
            for k, v in drops.items()
        ]
        or [["none", "0", "0", "0"]],
    )
    evidence = _table(
        ["kept samples' evidence", "samples"],
        [[_e(k), _num(ev.get(k, 0))] for k in ("verified", "failed", "unchecked")],
    )
    return (
        '<section id="quality"><h2>Quality</h2><p class="muted">Checked without any model: '
        "evidence quotes found in the source, questions (or answers) that lean on a text the "
        "student will not have, what each check dropped before any judge was paid, and the "
        "question types and difficulty the teacher gave.</p>"
        f'<div class="cards">{card_html}</div><div class="row" style="margin-top:14px">'
        f"<div><h3>Checks before the judges</h3>{checks}</div><div>{evidence}</div>"
        f"{_histogram_pair('question type', q.get('question_types') or {})}"
        f"{_histogram_pair('difficulty', q.get('difficulty') or {})}</div></section>"
    )


def _compliance_tables(compliance: Mapping[str, Any]) -> str:
    """Personal data found in the samples (types and counts only), contamination by match."""
    pii = compliance.get("pii") or {}
    html = ""
    if pii.get("samples"):
        rows = [[_e(k), _num(v)] for k, v in (pii.get("found") or {}).items()]
        html += (
            f"<h3 style='margin-top:14px'>Personal data ({_num(pii['samples'])} samples)</h3>"
            + _table(["type", "found"], rows)
        )
    contaminated = compliance.get("contaminated") or {}
    if contaminated:
        html += "<h3 style='margin-top:14px'>Contaminated (eval items)</h3>" + _table(
            ["match", "samples"], [[_e(k), _num(v)] for k, v in contaminated.items()]
        )
    return html


def _not_asked_note(n: int) -> str:
    if not n:
        return ""
    return (
        f'<p class="muted">{_num(n)} sample{"s were" if n != 1 else " was"} not shown to every '
        "judge (early_drop: the judges before had voted it down), so below the run's threshold "
        "these shares are lower bounds; <code>refilter</code> counts such samples as "
        "<code>not_judged</code>.</p>"
    )


def _keep_rate_section(report: Mapping[str, Any]) -> str:
    curve = [p for p in report.get("keep_rate", []) if p.get("rate") is not None]
    settings = report.get("settings") or {}
    thr = settings.get("min_score_threshold")
    chart = line_chart(
        [(p["threshold"], p["rate"]) for p in curve],
        marker=thr,
        title="share of samples passing at each threshold",
    )
    head = ["threshold", *(f"{p['threshold']:g}" for p in curve)]
    rows = [
        ["pass", *(_pct(p["rate"]) for p in curve)],
        ["samples", *(_num(p["passed"]) for p in curve)],
    ]
    table = _table(head, rows).replace("<table>", '<table class="tight">')
    floors = settings.get("score_floors") or {}
    floor_text = ", ".join(f"{_e(d)} ≥ {v:g}" for d, v in floors.items())
    return (
        '<section id="keep-rate"><h2>Keep rate by threshold</h2>'
        f'<p class="muted">Share of all {report.get("samples", 0)} samples that would pass with '
        f"min_votes = {_e(settings.get('min_votes'))}"
        + (f" and score floors {floor_text}" if floor_text else "")
        + ", recomputed from every evaluator's scores "
        "(before dedup). Pick a threshold here and apply it with "
        "<code>sft-distill refilter</code>: no LLM call.</p>"
        + _not_asked_note(report.get("not_asked") or 0)
        + f'{chart}<div style="overflow-x:auto">{table}</div></section>'
    )


def _histogram_section(report: Mapping[str, Any]) -> str:
    hists = report.get("histograms") or {}
    models = report.get("evaluators") or {}
    rows = []
    for k, (name, dims) in enumerate(hists.items()):
        colour = EVALUATOR_COLOURS[k % len(EVALUATOR_COLOURS)]
        charts = "".join(
            histogram(c, colour=colour, title=d.replace("_", " ")) for d, c in dims.items()
        )
        rows.append(
            f"<h3>{_e(name)} <span class='muted'>{_e(models.get(name, ''))}</span></h3>"
            f'<div class="grid">{charts}</div>'
        )
    body = "".join(rows) or "<p class='muted'>No judgement was recorded.</p>"
    return (
        '<section id="scores"><h2>Score distributions</h2><p class="muted">Per evaluator and '
        "dimension; bin k holds scores in [k−0.5, k+0.5).</p>" + body + "</section>"
    )


def _agreement_section(report: Mapping[str, Any]) -> str:
    rows = [
        [
            f"{_e(a['a'])} × {_e(a['b'])}",
            _num(a["n"]),
            _num(a["spearman"], 3),
            _pct(a["vote_disagreement"]),
        ]
        for a in report.get("agreement", [])
    ]
    table = (
        _table(["evaluators", "samples judged by both", "Spearman ρ", "votes differ"], rows)
        if rows
        else "<p class='muted'>Only one evaluator: no agreement to show.</p>"
    )
    return (
        '<section id="agreement"><h2>Evaluator agreement</h2><p class="muted">Spearman '
        "correlation of the weighted mean scores (average ranks for ties) and the share of "
        "samples on which one votes to keep and the other does not.</p>" + table + "</section>"
    )


def _latency_section(report: Mapping[str, Any]) -> str:
    lat = report.get("latency") or {}
    rows = []
    for name, s in (lat.get("endpoints") or {}).items():
        rows.append(
            [
                _e(name),
                _e(s.get("model") or ""),
                _e(s.get("stage") or ""),
                _num(s.get("n")),
                *(_num(s.get(k), 3) for k in ("mean", "p50", "p90", "p95")),
            ]
        )
    for stage, s in (lat.get("stages") or {}).items():
        rows.append(
            [
                f"<b>{_e(stage)}</b>",
                "",
                "all endpoints",
                _num(s.get("n")),
                *(_num(s.get(k), 3) for k in ("mean", "p50", "p90", "p95")),
            ]
        )
    head = ["endpoint", "model", "stage", "calls", "mean s", "p50 s", "p90 s", "p95 s"]
    parts = [
        "<div><h3>Latency</h3>"
        + _table(head, rows, left=3)
        + f"<p class='muted'>source: {_e(lat.get('source', '–'))}</p></div>"
    ]
    cost = report.get("cost")
    if cost:
        crow = [
            [
                _e(m),
                _num(c["prompt_tokens"]),
                _num(c.get("cached_prompt_tokens")),
                _num(c["completion_tokens"]),
                _num(c["cost"], 4) if c["cost"] is not None else "no price",
                _num(c.get("cost_without_cache"), 4),
            ]
            for m, c in cost["per_model"].items()
        ]
        crow.append(
            [
                "<b>total</b>",
                "",
                "",
                "",
                f"<b>{_num(cost['total'], 4)}</b>",
                _num(cost.get("total_without_cache"), 4),
            ]
        )
        batched = cost.get("total_batched")
        note = (
            f"<p class='muted'>Through a batch API (batch_discount): {_num(batched, 4)}.</p>"
            if batched is not None and batched < cost["total"]
            else ""
        )
        head = [
            "model",
            "prompt tokens",
            "cached prompt tokens",
            "completion tokens",
            "cost",
            "cost without the cache",
        ]
        parts.append("<div><h3>Cost</h3>" + _table(head, crow) + note + "</div>")
    else:
        parts.append(
            "<div><h3>Cost</h3><p class='muted'>No prices configured "
            "(<code>prices: {model: {input_per_1k, output_per_1k, cached_input_per_1k, "
            "batch_discount}}</code>).</p></div>"
        )
    return (
        '<section id="latency"><h2>Latency and cost</h2><div class="row">'
        + "".join(parts)
        + "</div>"
        + _usage_table(report)
        + "</section>"
    )


def _usage_table(report: Mapping[str, Any]) -> str:
    """Calls, tokens, cost and wall time of the whole run beside this invocation's."""
    usage = report.get("usage") or {}
    whole, mine = usage.get("whole_run"), usage.get("this_invocation")
    if not whole:
        return ""
    rows = []
    for label, u in (
        (f"whole run ({_num(whole.get('invocations'))} invocations)", whole),
        ("this invocation", mine),
    ):
        if not u:
            continue
        rows.append(
            [
                _e(label),
                _num(u.get("calls")),
                _num(u.get("cached")),
                _num(u.get("prompt_tokens")),
                _num(u.get("cached_prompt_tokens")),
                _num(u.get("completion_tokens")),
                _num(u.get("cost"), 4),
                _num(u.get("cost_without_cache"), 4),
                _num(u.get("wall_s")),
            ]
        )
    head = [
        "",
        "LLM calls",
        "cached replies",
        "prompt tokens",
        "cached prompt tokens",
        "completion tokens",
        "cost",
        "cost without the cache",
        "wall s",
    ]
    return (
        "<h3 style='margin-top:14px'>Whole run and this invocation</h3>"
        + _table(head, rows)
        + "<p class='muted'>The whole run adds up every invocation of this run in the output "
        "directory (first run, resumes, reruns); this invocation is the last command alone "
        "(a rerun answered from the cache makes no call and costs nothing).</p>"
    )


def _example_html(ex: Mapping[str, Any]) -> str:
    if ex.get("passed"):
        badge = '<span class="badge b-kept">kept</span>'
    else:
        reason = ex.get("drop_reason") or "dropped"
        if ex.get("duplicate_of"):
            reason += f" of {ex['duplicate_of']}"
        badge = f'<span class="badge b-drop">{_e(reason)}</span>'
    judges = "".join(
        f"<div>{_e(j.get('evaluator'))} ({_e(j.get('model'))}): {_num(j.get('weighted_mean'))}"
        + (f" – {_e(j['reason'])}" if j.get("reason") else "")
        + "</div>"
        for j in ex.get("judgements", [])
    )
    inp = f'<div class="lbl">input</div><pre>{_e(ex["input"])}</pre>' if ex.get("input") else ""
    return (
        f'<div class="ex"><div class="q">{_e(ex.get("instruction", ""))}{badge}</div>{inp}'
        f'<div class="lbl">answer</div><pre>{_e(ex.get("output", ""))}</pre>'
        f'<div class="meta"><div>slice {_e(ex.get("slice_id"))} · sample {_e(ex.get("id"))} · '
        f"avg {_num(ex.get('avg_score'))} · votes {_e(ex.get('votes'))}</div>{judges}</div></div>"
    )


def _setting_row(name: str, r: Mapping[str, Any]) -> list[str]:
    floor = "none" if r.get("floor") is None else _num(r["floor"], 1)
    return [
        _e(name),
        _num(r.get("threshold")),
        floor,
        _e(r.get("min_votes")),
        _num(r.get("predicted_pass")),
        _num(r.get("precision")),
        _num(r.get("recall")),
        _num(r.get("kappa")),
    ]


def _calibration_section(report: Mapping[str, Any]) -> str:
    """Judges against a person's labels (``sft-distill calibrate``); '' when none was run."""
    cal = report.get("calibration")
    if not cal:
        return ""
    c = cal.get("counts") or {}
    floor_dim = _e(cal.get("floor_dimension", "accuracy"))
    others = cal.get("other_floors") or {}
    fixed = ", ".join(f"{_e(d)} ≥ {v:g}" for d, v in others.items())
    head = ["setting", "threshold", f"{floor_dim} floor", "min_votes", "kept", "precision"]
    head += ["recall", "Cohen's κ"]
    rows = [_setting_row("current", cal.get("current") or {})]
    rows.append(_setting_row("best match", cal.get("best") or {}))
    judges = [
        [
            _e(name),
            _e(j.get("model")),
            _num((j.get("vote") or {}).get("n")),
            _num((j.get("vote") or {}).get("precision")),
            _num((j.get("vote") or {}).get("recall")),
            _num((j.get("vote") or {}).get("kappa")),
            f"{_num(j.get('best_threshold'))} (κ {_num(j.get('best_kappa'))})",
        ]
        for name, j in (cal.get("judges") or {}).items()
    ]
    judge_t = _table(
        ["judge", "model", "labelled", "precision", "recall", "Cohen's κ", "best threshold"],
        judges,
        left=2,
    )
    notes = "".join(f"<li>{_e(w)}</li>" for w in cal.get("warnings") or [])
    defects = cal.get("defects") or {}
    defect_t = ""
    if defects:
        defect_t = (
            "<h3 style='margin-top:14px'>Fail labels by defect: share rejected</h3>"
            + _table(
                ["defect", "labelled", "rejected now", "rejected at best match"],
                [
                    [
                        _e(tag),
                        _num(d.get("n")),
                        _pct(d.get("recall_current")),
                        _pct(d.get("recall_best")),
                    ]
                    for tag, d in defects.items()
                ],
            )
        )
    return (
        '<section id="calibration"><h2>Calibration</h2>'
        f"<p class='muted'>{_num(c.get('matched'))} of {_num(c.get('labels'))} labels "
        f"({_e(cal.get('labels_file') or 'labels')}) matched judged samples: "
        f"{_num(c.get('pass_labels'))} pass, {_num(c.get('fail_labels'))} fail; "
        f"{_num(c.get('unknown_ids'))} labelled id(s) not in this run. Precision and recall are of "
        "“passed” against the person's “pass”; κ is Cohen's kappa."
        + (f" Fixed floors: {fixed}." if fixed else "")
        + "</p>"
        + (f"<ul class='muted'>{notes}</ul>" if notes else "")
        + _table(head, rows)
        + "<h3 style='margin-top:14px'>Each judge's vote at the current setting</h3>"
        + judge_t
        + defect_t
        + "</section>"
    )


def _examples_section(examples: Mapping[str, Any]) -> str:
    kept = "".join(_example_html(x) for x in examples.get("kept", [])) or "<p>none</p>"
    dropped = "".join(_example_html(x) for x in examples.get("dropped", [])) or "<p>none</p>"
    return (
        '<section id="examples"><h2>Examples</h2><h3>Kept (best, middle, lowest score)</h3>'
        f"{kept}<h3 style='margin-top:14px'>Dropped, with the reason</h3>{dropped}</section>"
    )


def render_html(report: Mapping[str, Any], examples: Mapping[str, Any]) -> str:
    """The whole report page as a string (UTF-8, no external resource, no script)."""
    run = report.get("run") or {}
    settings = report.get("settings") or {}
    badges = ""
    if run.get("simulator"):
        badges += '<span class="badge b-sim">dry run (simulator)</span>'
    if run.get("refiltered"):
        badges += '<span class="badge b-ref">refiltered</span>'
    pv = run.get("prompt_versions") or {}
    sub = (
        f"input {_e(run.get('input') or '–')} · sft_distill {_e(run.get('version') or '–')} · "
        f"prompts {_e(', '.join(f'{k} {v}' for k, v in pv.items()) or '–')} · threshold "
        f"{_e(settings.get('min_score_threshold'))}, min_votes {_e(settings.get('min_votes'))}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>sft_distill run report</title><style>{CSS}</style></head><body><main>"
        f"<h1>sft_distill run report{badges}</h1><p class='sub'>{sub}</p>"
        f'<div style="margin-top:16px">{_cards(report)}</div>'
        + _funnel_section(report)
        + _quality_section(report)
        + _keep_rate_section(report)
        + _histogram_section(report)
        + _agreement_section(report)
        + _latency_section(report)
        + _calibration_section(report)
        + _examples_section(examples)
        + "</main></body></html>\n"
    )
