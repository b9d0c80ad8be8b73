"""The run report: numbers recomputed from raw judgements, and one self-contained HTML page."""

from __future__ import annotations

import importlib.util
import math
import re
import shutil
from pathlib import Path

import pytest

from sft_distill.config.merging import build_config
from sft_distill.models import ScoredSample
from sft_distill.outputs.report import (
    REPORT_FILE,
    THRESHOLDS,
    collect_examples,
    compute_report,
    percentiles,
    rankdata,
    score_bin,
    spearman,
    write_report,
)
from sft_distill.outputs.report_html import render_html
from sft_distill.selection.thresholds import apply_thresholds
from tests.helpers import REPO, read_metadata
from tests.raw_factory import scored, write_raw, write_run

INJECTION = '<script>alert("x")</script><img src="https://evil.example/p.png">'


def corpus() -> list[ScoredSample]:
    """Varied scores: ties, a failed judgement, a low sample, Chinese and an HTML injection."""
    grid = [(9, 8), (8, 8), (7, 9), (6.5, 7.5), (5, 6), (9.5, 9), (3, 4), (7, 7), (8.5, 6)]
    out = [scored(f"s{i}", f"slice{i % 3}", (a, b)) for i, (a, b) in enumerate(grid)]
    out.append(
        scored(
            "zh",
            "law",
            (10.0, None),
            instruction="根据《保险法》第十六条，后果是什么？",
            min_votes=1,
        )
    )
    out.append(scored("inj", "slice0", (2.0, 3.0), instruction=INJECTION, output=INJECTION))
    return out


@pytest.fixture
def run(tmp_path: Path) -> Path:
    cfg = build_config({"evaluators": {"secondary": None}, "min_votes": 1})
    return write_run(tmp_path / "out", corpus(), cfg)


# ----------------------------------------------------------------------------- statistics


def test_rankdata_averages_ties():
    assert rankdata([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]


def test_spearman_hand_computed_with_ties():
    # ranks a = 1..5, ranks b = [1, 2, 3.5, 5, 3.5]; deviations a [-2,-1,0,1,2],
    # b [-2,-1,.5,2,.5]: sum(ab) = 8, sum(a^2) = 10, sum(b^2) = 9.5 -> 8 / sqrt(95).
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / math.sqrt(95))
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [4, 4, 4]) is None
    assert spearman([1], [2]) is None
    with pytest.raises(ValueError, match="lengths"):
        spearman([1, 2], [1])


def test_percentiles_linear_interpolation():
    p = percentiles([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    assert (p["n"], p["p50"], p["max"]) == (10, 5.5, 10.0)
    assert (p["p90"], p["p95"]) == (pytest.approx(9.1), pytest.approx(9.55))
    assert percentiles([])["p95"] is None


@pytest.mark.parametrize(
    ("score", "bin_"),
    [(0, 0), (0.49, 0), (0.5, 1), (6.5, 7), (7.49, 7), (9.5, 10), (10, 10), (12, 10), (-1, 0)],
)
def test_score_bins(score, bin_):
    assert score_bin(score) == bin_


# ----------------------------------------------------------------------------- report numbers


def test_keep_rate_curve_equals_direct_recount_and_is_monotone(run):
    # The curve moves the threshold under the run's score floors (default accuracy 6,
    # standalone 5), as the filter decides.
    floors = read_metadata(run)["config"]["score_floors"]
    assert floors == {"accuracy": 6.0, "standalone": 5.0}
    for min_votes in (1, 2):
        report = compute_report(
            run / "generated_raw.jsonl", read_metadata(run), min_votes=min_votes
        )
        curve = report["keep_rate"]
        assert [p["threshold"] for p in curve] == list(THRESHOLDS)
        for p in curve:
            direct = sum(
                apply_thresholds(
                    s, min_score_threshold=p["threshold"], min_votes=min_votes, floors=floors
                ).passed
                for s in corpus()
            )
            assert p["passed"] == direct, (min_votes, p)
            assert p["rate"] == pytest.approx(direct / len(corpus()))
        passed = [p["passed"] for p in curve]
        assert passed == sorted(passed, reverse=True)
        assert passed[0] > passed[-1]


def test_keep_rate_uses_dimension_weights(run):
    weights = {"accuracy": 1.0}
    s = scored("w", "x", ({"accuracy": 9.0, "safety": 1.0}, {"accuracy": 9.0, "safety": 1.0}))
    write_raw(run / "generated_raw.jsonl", [s])
    equal = compute_report(run / "generated_raw.jsonl", read_metadata(run))
    weighted = compute_report(run / "generated_raw.jsonl", read_metadata(run), weights=weights)
    at_8 = THRESHOLDS.index(8.0)
    assert equal["keep_rate"][at_8]["passed"] == 0  # mean 5
    assert weighted["keep_rate"][at_8]["passed"] == 1  # accuracy only: 9


def test_histograms_sum_to_judged_counts(run):
    report = compute_report(run / "generated_raw.jsonl", read_metadata(run))
    ok = {"e0": 0, "e1": 0}
    for s in corpus():
        for j in s.judgements:
            ok[j.evaluator] += j.ok
    assert report["evaluators"] == {"e0": "e0-model", "e1": "e1-model"}
    for ev, dims in report["histograms"].items():
        assert set(dims) == {
            "accuracy",
            "completeness",
            "logicality",
            "helpfulness",
            "safety",
            "standalone",
            "weighted_mean",
        }
        for counts in dims.values():
            assert len(counts) == 11 and sum(counts) == ok[ev]
    # s3 was scored (6.5, 7.5): bins 7 and 8.
    assert report["histograms"]["e0"]["accuracy"][7] >= 1


def test_agreement_pairs_and_vote_disagreement(run):
    report = compute_report(
        run / "generated_raw.jsonl", read_metadata(run), min_score_threshold=7.0
    )
    (pair,) = report["agreement"]
    both = [s for s in corpus() if all(j.ok for j in s.judgements)]
    a = [s.judgements[0].weighted_mean for s in both]
    b = [s.judgements[1].weighted_mean for s in both]
    assert (pair["a"], pair["b"], pair["n"]) == ("e0", "e1", len(both))
    assert pair["spearman"] == pytest.approx(spearman(a, b))
    differ = sum((x >= 7) != (y >= 7) for x, y in zip(a, b, strict=True))
    assert pair["vote_disagreement"] == pytest.approx(differ / len(both))
    assert 0 < differ < len(both)


def test_funnel_drops_latency_throughput_and_cost(run):
    meta = read_metadata(run)
    meta["counts"].update(generation_unparsable_items=2, bad_lines=1, train=3, val=1)
    prices = {
        "qwen-max": {"input_per_1k": 0.02, "output_per_1k": 0.06},
        "deepseek-chat": {"input_per_1k": 0.001, "output_per_1k": 0.002},
    }
    report = compute_report(
        run / "generated_raw.jsonl",
        meta,
        latencies={"generator": [1.0, 2.0, 3.0, 4.0], "primary": [0.5]},
        prices=prices,
    )
    funnel = {f["stage"]: f["count"] for f in report["funnel"]}
    assert funnel["samples generated"] == len(corpus()) + 2
    assert funnel["samples parsed"] == len(corpus())
    assert (funnel["train"], funnel["val"]) == (3, 1)
    assert report["losses"] == {"bad input lines": 1, "unparsable generated items": 2}
    n_dropped = sum(not s.passed for s in corpus())
    assert report["drop_reasons"] == {"low_votes": n_dropped}
    gen = report["latency"]["endpoints"]["generator"]
    assert (gen["stage"], gen["n"], gen["p50"]) == ("generation", 4, 2.5)
    assert report["latency"]["stages"]["evaluation"]["n"] == 1
    tp = report["throughput"]
    assert tp["teacher_tokens_per_s"] == pytest.approx(1000 / 5.0)  # over the busy time
    assert tp["kept_samples"] == 4  # train + val
    assert tp["kept_per_hour"] == pytest.approx(4 / 12.0 * 3600)
    cost = report["cost"]
    assert cost["per_model"]["qwen-max"]["cost"] == pytest.approx(
        4000 / 1000 * 0.02 + 1000 / 1000 * 0.06
    )
    assert cost["per_model"]["deepseek-chat"]["cost"] == pytest.approx(2 * 0.001 + 0.1 * 0.002)
    assert cost["total"] == pytest.approx(0.14 + 0.0022)
    assert compute_report(run / "generated_raw.jsonl", meta)["cost"] is None


def test_latency_without_per_call_timings_falls_back_to_means(run):
    report = compute_report(run / "generated_raw.jsonl", read_metadata(run))
    gen = report["latency"]["endpoints"]["generator"]
    assert gen["mean"] == pytest.approx(8.0 / 4) and gen["p95"] is None
    assert report["latency"]["source"] == "usage means"


def test_examples_pick_kept_and_dropped_with_reasons(run):
    ex = collect_examples(run / "generated_raw.jsonl", 3)
    assert len(ex["kept"]) == 3 and all(e["passed"] for e in ex["kept"])
    scores = [e["avg_score"] for e in ex["kept"]]
    assert scores == sorted(scores, reverse=True)
    assert ex["dropped"] and all(e["drop_reason"] == "low_votes" for e in ex["dropped"])


# ----------------------------------------------------------------------------- HTML


def test_html_is_self_contained_escaped_and_utf8(run):
    report = write_report(
        run, read_metadata(run), prices={"qwen-max": {"input_per_1k": 1, "output_per_1k": 1}}
    )
    html = (run / REPORT_FILE).read_text(encoding="utf-8")
    assert report["samples"] == len(corpus())
    assert html.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html  # shown, not run
    assert html.count("<svg") >= 1 + 1 + 12  # funnel, keep rate, 2 x 6 histograms
    assert "根据《保险法》第十六条" in html
    assert '"Noto Sans CJK SC"' in html and '"Microsoft YaHei"' in html
    for section in ("funnel", "keep-rate", "scores", "agreement", "latency", "examples"):
        assert f'id="{section}"' in html


def test_render_html_survives_an_empty_run():
    report = {"samples": 0, "funnel": [], "keep_rate": [], "histograms": {}, "agreement": []}
    html = render_html(report, {"kept": [], "dropped": []})
    assert "No judgement was recorded" in html and "Only one evaluator" in html


# ----------------------------------------------------------------------------- headless chromium


def _screenshot_module():
    spec = importlib.util.spec_from_file_location(
        "screenshot_report", REPO / "scripts" / "screenshot_report.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="Debian chromium not installed (apt-get install chromium fonts-noto-cjk)",
)
def test_report_renders_in_headless_chromium(run, tmp_path):
    shot = _screenshot_module()
    write_report(run, read_metadata(run))
    png = shot.screenshot(run / REPORT_FILE, tmp_path / "report.png", width=1280, height=1600)
    stats = shot.png_stats(png)
    assert (stats["width"], stats["height"]) == (1280, 1600)
    assert stats["bytes"] > 20_000
    assert stats["colours"] > 50  # text, bars and lines, not a blank page


def test_png_stats_tells_a_blank_image(tmp_path):
    import struct
    import zlib

    shot = _screenshot_module()
    w, h = 16, 16
    raw = b"".join(b"\x00" + b"\xff\xff\xff" * w for _ in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    (tmp_path / "blank.png").write_bytes(png)
    assert shot.png_stats(tmp_path / "blank.png")["colours"] == 1


def test_coverage_summary_per_slice_and_overall():
    from sft_distill.outputs.report import ReportBuilder, coverage_summary

    totals = {"law": 4, "clause": 2, "none-kept": 3}
    kept = [("law", ["第一条", "第二条"]), ("law", ["第二条", "第四条"]), ("clause", ["第一条"])]
    kept.append(("other", ["第一条"]))  # a slice without articles is not counted
    got = coverage_summary(totals, kept)
    assert got["slices"] == {
        "clause": {"total": 2, "covered": 1, "ratio": 0.5},
        "law": {"total": 4, "covered": 3, "ratio": 0.75},
        "none-kept": {"total": 3, "covered": 0, "ratio": 0.0},
    }
    assert (got["articles"], got["covered"], got["ratio"]) == (9, 4, round(4 / 9, 4))
    assert coverage_summary({}, kept) == {"articles": 0, "covered": 0, "ratio": None, "slices": {}}
    # the report builder remembers the articles of passing samples only
    builder = ReportBuilder(7.0, 2, None)
    ok = ScoredSample(id="a", slice_id="law", instruction="q", output="o", passed=True)
    builder.add(ok.model_copy(update={"articles": ["第一条"]}), decided=True)
    builder.add(ok.model_copy(update={"id": "b", "articles": ["第二条"], "passed": False}))
    assert builder.kept_articles(["a", "b", "c"]) == [("law", ("第一条",))]
