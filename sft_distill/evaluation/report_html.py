"""``eval_report.html``: the eval's figures on one self-contained page (inline CSS and SVG).

Built from ``eval_metadata.json`` alone with the run report's pieces (``outputs.report_html``):
no script, no URL, every text from the data escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..outputs.report_html import CSS, GREY, _e, _num, _pct, _svg, _table

__all__ = ["render_eval_html", "wtl_bars"]

WIN, TIE, LOSS = "#16a34a", "#9ca3af", "#dc2626"
_EXTRA_CSS = """
.warn{background:#fef3c7;color:#92400e;border-radius:8px;padding:8px 12px;margin:8px 0}
.good{color:#166534}.bad{color:#991b1b}
"""


def wtl_bars(
    items: Sequence[tuple[str, Mapping[str, Any]]], *, width: int = 720, label_width: int = 220
) -> str:
    """One stacked bar per (label, win_rate_ci result): wins, ties, losses, with the CI drawn."""
    bar_h, gap = 22, 8
    span = width - label_width - 20
    height = len(items) * (bar_h + gap) + gap + 16
    body = []
    for i, (label, r) in enumerate(items):
        y = gap + i * (bar_h + gap)
        x = float(label_width)
        body.append(
            f'<text x="{label_width - 8}" y="{y + bar_h * 0.7:.1f}" font-size="13" '
            f'text-anchor="end" fill="#374151">{_e(label)}</text>'
        )
        for key, colour in (("win_rate", WIN), ("tie_rate", TIE), ("loss_rate", LOSS)):
            rate = r.get(key)
            if rate is None or rate != rate:  # NaN: no verdict
                continue
            w = rate * span
            name = key.split("_")[0]
            body.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}">'
                f"<title>{_e(label)}: {name} {_pct(rate)}</title></rect>"
            )
            if w > 34:
                body.append(
                    f'<text x="{x + w / 2:.1f}" y="{y + bar_h * 0.7:.1f}" font-size="11" '
                    f'text-anchor="middle" fill="#fff">{_pct(rate)}</text>'
                )
            x += w
        ci = r.get("win_rate_ci") or {}
        if ci.get("low") is not None and ci.get("high") is not None:
            x1, x2 = label_width + ci["low"] * span, label_width + ci["high"] * span
            yc = y + bar_h + 3
            body.append(
                f'<line x1="{x1:.1f}" y1="{yc}" x2="{x2:.1f}" y2="{yc}" stroke="#111827" '
                f'stroke-width="2"><title>win rate {_pct(ci.get("estimate"))}, '
                f"{_pct(ci['low'])}–{_pct(ci['high'])}</title></line>"
            )
    legend_y = height - 4
    for k, (name, colour) in enumerate((("win", WIN), ("tie", TIE), ("loss", LOSS))):
        lx = label_width + k * 70
        body.append(
            f'<rect x="{lx}" y="{legend_y - 9}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{lx + 14}" y="{legend_y}" font-size="11" fill="{GREY}">{name}</text>'
        )
    return _svg(width, height, "win, tie and loss rates of the student", body)


def _interval(ci: Mapping[str, Any] | None, *, pct: bool = True, digits: int = 2) -> str:
    if not ci or ci.get("estimate") is None:
        return "–"
    f = _pct if pct else (lambda v: _num(v, digits))
    return f"{f(ci['estimate'])} ({f(ci.get('low'))} – {f(ci.get('high'))})"


def _cards(meta: Mapping[str, Any]) -> str:
    comp = (meta.get("comparisons") or {}).get("reference") or {}
    panel = comp.get("panel") or {}
    scores = (meta.get("scores") or {}).get("by_model") or {}
    delta = ((meta.get("score_deltas") or {}).get("reference") or {}).get("delta") or {}
    ex = (meta.get("exec") or {}).get("student") or {}
    cost = meta.get("cost")
    cards = [
        ("questions", _num((meta.get("questions") or {}).get("n"))),
        ("student wins vs reference", _pct(panel.get("win_rate"))),
        ("ties", _pct(panel.get("tie_rate"))),
        ("losses", _pct(panel.get("loss_rate"))),
        (
            "student mean score",
            _num(((scores.get("student") or {}).get("mean") or {}).get("estimate")),
        ),
        (
            "reference mean score",
            _num(((scores.get("reference") or {}).get("mean") or {}).get("estimate")),
        ),
        ("score difference", _num(delta.get("estimate"))),
    ]
    if ex:
        cards.append(
            ("student exec accuracy", _pct(ex.get("gold_match_rate", ex.get("exec_pass_rate"))))
        )
    cards.append(("cost", _num(cost["total"], 4) if cost else "no prices"))
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="v">{v}</div><div class="k">{_e(k)}</div></div>'
            for k, v in cards
        )
        + "</div>"
    )


def _comparisons_section(meta: Mapping[str, Any]) -> str:
    comps = meta.get("comparisons") or {}
    if not comps:
        return (
            '<section id="pairwise"><h2>Pairwise</h2><p class="muted">No comparison: the '
            "questions have no reference answer and no baseline was given.</p></section>"
        )
    bars = []
    rows = []
    for opp, c in comps.items():
        bars.append((f"student vs {opp}", c["panel"]))
        for who, r in [("all judges", c["panel"]), *c["by_judge"].items()]:
            pc = c["position_consistency"].get(who) if who != "all judges" else None
            rows.append(
                [
                    _e(f"student vs {opp}"),
                    _e(who),
                    _num(r.get("n")),
                    _pct(r.get("win_rate")),
                    _pct(r.get("tie_rate")),
                    _pct(r.get("loss_rate")),
                    _interval(r.get("win_rate_ci")),
                    _interval(r.get("win_minus_loss_ci")),
                    _pct(pc.get("consistency")) if pc else "",
                    _num(pc.get("first_position")) if pc else "",
                ]
            )
    boot = meta.get("bootstrap") or {}
    head = [
        "comparison",
        "judge",
        "questions",
        "win",
        "tie",
        "loss",
        "win rate (CI)",
        "win − loss (CI)",
        "orders agree",
        "chose A both times",
    ]
    return (
        '<section id="pairwise"><h2>Student against the reference and the baselines</h2>'
        '<p class="muted">Each judge compares the two answers twice, the student first and then '
        "second; two orders that disagree count as a tie, so a judge's preference for a position "
        "cancels out. All judges together: a question is a win when more judges saw a win than a "
        f"loss. Intervals: {_pct(boot.get('confidence'))} percentile bootstrap over the "
        f"questions ({_num(boot.get('n_resamples'))} resamples).</p>"
        f"{wtl_bars(bars)}<div style='overflow-x:auto'>{_table(head, rows, left=2)}</div></section>"
    )


def _scores_section(meta: Mapping[str, Any]) -> str:
    scores = meta.get("scores") or {}
    by_model = scores.get("by_model") or {}
    dims = sorted({d for m in by_model.values() for d in (m.get("dimensions") or {})})
    rows = [
        [
            _e(name),
            _num(m.get("scored")),
            _interval(m.get("mean"), pct=False),
            *(_num((m.get("dimensions") or {}).get(d)) for d in dims),
        ]
        for name, m in by_model.items()
    ]
    deltas = meta.get("score_deltas") or {}
    drows = [
        [_e(f"student − {opp}"), _num(d.get("questions")), _interval(d.get("delta"), pct=False)]
        for opp, d in deltas.items()
    ]
    per_judge = []
    for judge, models in (scores.get("by_judge") or {}).items():
        jr = [
            [_e(m), _num(v.get("n")), *(_num((v.get("scores") or {}).get(d)) for d in dims)]
            for m, v in models.items()
        ]
        per_judge.append(f"<h3>{_e(judge)}</h3>" + _table(["model", "answers", *map(_e, dims)], jr))
    return (
        '<section id="scores"><h2>Scores per dimension</h2><p class="muted">Every answer, the '
        "teacher's recorded one included, scored by every judge against the source chunk with "
        "the run's rubric; the mean is each answer's weighted mean averaged over the judges.</p>"
        + _table(["model", "answers scored", "mean (CI)", *map(_e, dims)], rows)
        + "<h3 style='margin-top:14px'>Paired difference</h3>"
        + _table(["", "questions", "mean difference (CI)"], drows)
        + f"<div class='row' style='margin-top:14px'>{''.join(per_judge)}</div></section>"
    )


def _breakdown_section(meta: Mapping[str, Any]) -> str:
    groups = meta.get("breakdown") or []
    by = (meta.get("questions") or {}).get("group_by", "slice_id")
    rows = [
        [
            _e(g["group"]),
            _num(g["questions"]),
            _num(g["vs_reference"]["wins"]),
            _num(g["vs_reference"]["ties"]),
            _num(g["vs_reference"]["losses"]),
            _pct(g["vs_reference"]["win_rate"]),
            _num(g.get("student_mean")),
            _num(g.get("reference_mean")),
        ]
        for g in groups[:60]
    ]
    more = (
        f"<p class='muted'>{len(groups) - 60} more groups in eval_metadata.json.</p>"
        if len(groups) > 60
        else ""
    )
    head = ["group", "questions", "wins", "ties", "losses", "win rate", "student", "reference"]
    return (
        f'<section id="breakdown"><h2>By {_e(by)}</h2><p class="muted">Student against the '
        "reference, and mean scores, per group.</p>"
        f"<div style='overflow-x:auto'>{_table(head, rows)}</div>{more}</section>"
    )


def _change_html(c: Mapping[str, Any]) -> str:
    inp = f'<div class="lbl">input</div><pre>{_e(c["input"])}</pre>' if c.get("input") else ""
    cls = "good" if c["delta"] > 0 else "bad"
    return (
        f'<div class="ex"><div class="q">{_e(c.get("instruction", ""))}</div>{inp}'
        f'<div class="lbl">student</div><pre>{_e(c.get("student_answer", ""))}</pre>'
        f'<div class="lbl">reference</div><pre>{_e(c.get("reference_answer", ""))}</pre>'
        f'<div class="meta">slice {_e(c.get("slice_id"))} · question {_e(c["id"])} · student '
        f"{_num(c['student'])} · reference {_num(c['reference'])} · "
        f'<span class="{cls}">{c["delta"]:+.2f}</span></div></div>'
    )


def _changes_section(meta: Mapping[str, Any]) -> str:
    ch = meta.get("biggest_changes") or {}
    worse = "".join(_change_html(c) for c in ch.get("regressions", [])) or "<p>none</p>"
    better = "".join(_change_html(c) for c in ch.get("improvements", [])) or "<p>none</p>"
    return (
        '<section id="changes"><h2>Biggest regressions and improvements</h2><p class="muted">'
        "The questions where the student's mean score fell furthest below, or rose furthest "
        "above, the reference's.</p>"
        f"<h3>Regressions</h3>{worse}<h3 style='margin-top:14px'>Improvements</h3>{better}"
        "</section>"
    )


def _agreement_section(meta: Mapping[str, Any]) -> str:
    rows = []
    for opp, c in (meta.get("comparisons") or {}).items():
        for a in c.get("judge_agreement") or []:
            rows.append(
                [
                    _e(f"student vs {opp}"),
                    f"{_e(a['a'])} × {_e(a['b'])}",
                    _num(a["n"]),
                    _pct(a.get("agreement")),
                    _num(a.get("kappa"), 3),
                ]
            )
    body = (
        _table(["comparison", "judges", "questions", "same outcome", "Cohen's κ"], rows, left=2)
        if rows
        else "<p class='muted'>Only one judge: no agreement to show.</p>"
    )
    return f'<section id="agreement"><h2>Judge agreement</h2>{body}</section>'


def _exec_section(meta: Mapping[str, Any]) -> str:
    ex = meta.get("exec")
    if not ex:
        return ""
    rows = [
        [
            _e(m),
            _num(e["n"]),
            _pct(e["exec_pass_rate"]),
            _pct(e["gold_match_rate"]) if "gold_match_rate" in e else "–",
        ]
        for m, e in ex.items()
    ]
    db = (meta.get("sql") or {}).get("database", "")
    return (
        '<section id="exec"><h2>Execution accuracy</h2><p class="muted">Each answer\'s query run '
        f"read-only on {_e(db)}: it runs (exec_pass), and it returns the reference query's "
        "rows (gold_match, of all questions).</p>"
        + _table(["model", "questions", "runs", "same rows as the reference"], rows)
        + "</section>"
    )


def _usage_section(meta: Mapping[str, Any]) -> str:
    usage = meta.get("usage") or {}
    rows = [
        [
            _e(name),
            _e(u.get("model", "")),
            _num(u.get("calls")),
            _num((u.get("this_invocation") or {}).get("cached")),
            _num(u.get("prompt_tokens")),
            _num(u.get("completion_tokens")),
        ]
        for name, u in usage.items()
    ]
    cost = meta.get("cost")
    ctable = ""
    if cost:
        crow = [
            [_e(m), _num(c["prompt_tokens"]), _num(c["completion_tokens"]), _num(c["cost"], 4)]
            for m, c in cost["per_model"].items()
        ]
        crow.append(["<b>total</b>", "", "", f"<b>{_num(cost['total'], 4)}</b>"])
        ctable = "<h3>Cost</h3>" + _table(
            ["model", "prompt tokens", "completion tokens", "cost"], crow
        )
    else:
        ctable = "<p class='muted'>No prices configured.</p>"
    whole = meta.get("whole_eval") or {}
    return (
        '<section id="usage"><h2>Calls and cost</h2><p class="muted">The whole eval over '
        f"{_num(whole.get('invocations'))} invocation(s), {_num(whole.get('wall_s'))} s; cached "
        "replies are this invocation's.</p><div class='row'><div>"
        + _table(
            ["endpoint", "model", "calls", "cached", "prompt tokens", "completion tokens"],
            rows,
            left=2,
        )
        + f"</div><div>{ctable}</div></div></section>"
    )


def render_eval_html(meta: Mapping[str, Any]) -> str:
    """The whole eval report as a string (UTF-8, no external resource, no script)."""
    q = meta.get("questions") or {}
    models = meta.get("models") or {}
    badge = '<span class="badge b-sim">dry run (simulator)</span>' if meta.get("simulator") else ""
    student = models.get("student") or {}
    sub = (
        f"run {_e(meta.get('run_dir', '–'))} · questions {_e(q.get('path', '–'))} "
        f"({_num(q.get('n'))}, {_num(q.get('with_source'))} with their source) · student "
        f"{_e(student.get('model', '–'))} · judges {_e(', '.join(meta.get('judges') or {}))} · "
        f"sft_distill {_e(meta.get('version', '–'))}"
    )
    warnings = "".join(f'<div class="warn">{_e(w)}</div>' for w in meta.get("warnings") or [])
    stopped = meta.get("stopped")
    if stopped:
        warnings += (
            f'<div class="warn">Stopped early: endpoint {_e(stopped["endpoint"])} failed '
            f"{_num(stopped['consecutive_failures'])} calls in a row; rerun to finish.</div>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>sft_distill eval report</title><style>{CSS}{_EXTRA_CSS}</style></head><body><main>"
        f"<h1>Did the student learn?{badge}</h1><p class='sub'>{sub}</p>{warnings}"
        f'<div style="margin-top:16px">{_cards(meta)}</div>'
        + _comparisons_section(meta)
        + _scores_section(meta)
        + _exec_section(meta)
        + _breakdown_section(meta)
        + _changes_section(meta)
        + _agreement_section(meta)
        + _usage_section(meta)
        + "</main></body></html>\n"
    )
