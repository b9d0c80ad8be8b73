"""``sft-distill eval``'s job: ask every model under test, judge every answer, write ``eval/``.

Per question, concurrently: the student and each baseline answer it (its training prompt,
``prompts.student_messages``); every judge scores every answer, the teacher's recorded one
included, against the source chunk with the run's judge prompt (``llm.prompts.evaluation_
messages``); every judge compares the student with the reference and with each baseline twice,
the answers swapped (``prompts.pairwise_messages``); with a ``sql`` gate in the config, every
answer's query is run on the database (``exec_pass``) and compared with the reference's result
(``gold_match``). Every call goes through ``LLMClient`` (concurrency, retries, re-asks) and the
response cache in ``eval/cache.sqlite3``, so rerunning the same command after a crash or a
``kill -9`` asks nothing that had been answered; ``answers.jsonl``, ``eval_metadata.json`` and
``eval_report.html`` are rewritten from the cache at the end of every invocation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from tqdm.auto import tqdm

from .. import __version__
from ..config.models import DistillConfig, EndpointConfig, display_url
from ..errors import ConfigError, EndpointStoppedError, LLMError
from ..llm.cache import CACHE_FILENAME, ResponseCache
from ..llm.client import LLMClient, log_failure
from ..llm.prompts import EVAL_PROMPT_VERSION, evaluation_messages
from ..llm.run_usage import finish_invocation, start_invocation, whole_run
from ..models import Failure, Sample
from ..outputs.failures import FAILURES_FILE, FailureLog
from ..outputs.writers import JsonlWriter, lock_output_dir, prepare_output_dir, write_json_atomic
from ..selection.thresholds import weighted_mean
from ..stages.gates.sql import SQLExecutionGate, extract_sql
from ..stages.judge import parse_scores, required_dimensions
from ..stages.stream import bounded_map
from .prompts import (
    PAIRWISE_PROMPT_VERSION,
    pairwise_messages,
    parse_pairwise,
    parse_student_answer,
    student_messages,
)
from .questions import Question, QuestionSet
from .stats import pairwise_verdict
from .summary import summarise
from .targets import STUDENT, Target

log = logging.getLogger(__name__)

__all__ = [
    "ANSWERS_FILE",
    "EVAL_DIR",
    "EVAL_METADATA_FILE",
    "EVAL_REPORT_FILE",
    "REFERENCE",
    "EvalResult",
    "EvalSettings",
    "Evaluation",
]

EVAL_DIR = "eval"
ANSWERS_FILE = "answers.jsonl"
EVAL_METADATA_FILE = "eval_metadata.json"
EVAL_REPORT_FILE = "eval_report.html"
REFERENCE = "reference"
# Everything an eval leaves in eval/ (what --fresh deletes).
EVAL_FILES = (
    ANSWERS_FILE,
    EVAL_METADATA_FILE,
    EVAL_REPORT_FILE,
    FAILURES_FILE,
    CACHE_FILENAME,
    CACHE_FILENAME + "-wal",
    CACHE_FILENAME + "-shm",
)
# The fake key sent to the simulator (as the pipeline's dry run sends).
SIMULATOR_KEY = "sk-simulator-not-a-real-key"
# A dry run's baselines stand for the student's base model before fine-tuning: less good.
DRY_RUN_BASELINE_GAP = -0.5


@dataclass
class EvalSettings:
    """What to evaluate: the questions, the models under test, the judges' config."""

    run_dir: Path
    questions: QuestionSet
    student: Target
    baselines: list[Target]
    config: DistillConfig
    group_by: str | None = None
    n_resamples: int = 2000
    alpha: float = 0.05
    seed: int = 0

    @property
    def targets(self) -> list[Target]:
        """The student, then the baselines."""
        return [self.student, *self.baselines]


@dataclass
class EvalResult:
    """What an eval wrote and how it went."""

    eval_dir: Path
    metadata: dict[str, Any]
    failures: int
    paths: dict[str, Path] = field(default_factory=dict)


@dataclass
class _Answer:
    """One model's answer to one question (the reference is the teacher's recorded answer)."""

    label: str
    text: str | None
    model: str
    endpoint: str | None = None
    reasoning: str | None = None
    error: str | None = None


class Evaluation:
    """``sft-distill eval``: one invocation over an eval directory (``RUN_DIR/eval``)."""

    def __init__(
        self,
        settings: EvalSettings,
        *,
        show_progress: bool = True,
        fresh: bool = False,
        repair: bool = False,
    ) -> None:
        self.s = settings
        self.show_progress = show_progress
        self.fresh = fresh
        self.repair = repair
        self.eval_dir = settings.run_dir / EVAL_DIR
        clash = [n for n in settings.config.evaluators if n == STUDENT or ":" in n]
        if clash:
            raise ConfigError(
                f"evaluators: the name {clash[0]!r} is taken by the models under test; rename "
                "that judge"
            )
        self._gate = _sql_gate(settings.config)
        self._failures: FailureLog | None = None
        self._work: asyncio.Task[None] | None = None

    async def run(self, *, dry_run: bool = False) -> EvalResult:
        """Run the eval; with ``dry_run`` against the built-in simulator (no key, no network).

        Raises:
            ConfigError: a missing API key variable, a judge named like a model under test.
            OutputError: the eval directory cannot be written or is in use.
        """
        if not dry_run:
            return await self._run(None)
        from ..simulator.server import Simulator, SimulatorConfig
        from ..simulator.students import dry_run_knobs

        defaults = {t.endpoint.model: DRY_RUN_BASELINE_GAP for t in self.s.baselines}
        defaults[self.s.student.endpoint.model] = 0.0
        try:
            gaps, bias = dry_run_knobs(defaults)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        sim_cfg = SimulatorConfig(latency_ms=2.0, messy=True, answer_gaps=gaps, position_bias=bias)
        async with Simulator(sim_cfg) as sim:
            return await self._run(sim.url)

    def _endpoints(self, simulator_url: str | None) -> dict[str, EndpointConfig]:
        """Every endpoint by client name: the models under test, then the judges."""
        eps = {t.label: t.endpoint for t in self.s.targets}
        eps.update(self.s.config.evaluators)
        if simulator_url is None:
            for name, ep in eps.items():
                if ep.api_key is None and ep.api_key_env and not os.environ.get(ep.api_key_env):
                    raise ConfigError(
                        f"{name}: environment variable {ep.api_key_env} (api_key_env) is not "
                        "set; export it, set api_key, or use --dry-run"
                    )
            return eps
        fake = {"api_base": simulator_url, "api_key": SecretStr(SIMULATOR_KEY), "api_key_env": None}
        return {name: ep.model_copy(update=fake) for name, ep in eps.items()}

    def _identity(self, simulator: bool) -> dict[str, Any]:
        """What makes two invocations one eval (their usage adds up): questions and models."""
        return {
            "questions": {k: v for k, v in self.s.questions.described.items() if k != "path"},
            "models": {t.label: t.endpoint.model for t in self.s.targets},
            "judges": {n: ep.model for n, ep in self.s.config.evaluators.items()},
            "simulator": simulator,
        }

    async def _run(self, simulator_url: str | None) -> EvalResult:
        t_start = time.perf_counter()
        endpoints = self._endpoints(simulator_url)
        out = prepare_output_dir(self.eval_dir)
        with lock_output_dir(out) as locked:
            if self.fresh:
                for name in EVAL_FILES:
                    (out / name).unlink(missing_ok=True)
            with ResponseCache(out / CACHE_FILENAME, exclusive=locked, repair=self.repair) as cache:
                identity = json.dumps(self._identity(simulator_url is not None), sort_keys=True)
                new_eval = cache.get_meta("eval_identity") != identity
                cache.set_meta("eval_identity", identity)
                start_invocation(cache, new_run=new_eval)
                rows, usage, timings = await self._ask_all(cache, endpoints, simulator_url)
                wall = time.perf_counter() - t_start
                whole = whole_run(cache, cache.invocation, usage)
                metadata = self._metadata(rows, whole, wall, timings, endpoints, simulator_url)
                paths = await asyncio.to_thread(self._write, out, rows, metadata)
                finish_invocation(cache, cache.invocation, time.perf_counter() - t_start)
        assert self._failures is not None
        return EvalResult(out, metadata, self._failures.count, paths)

    async def _ask_all(
        self,
        cache: ResponseCache,
        endpoints: Mapping[str, EndpointConfig],
        simulator_url: str | None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, float]]:
        """Every question's rows, in question order; usage per endpoint; timings."""
        namespace = "simulator" if simulator_url else None
        results: dict[int, list[dict[str, Any]]] = {}
        t0 = time.perf_counter()
        async with AsyncExitStack() as stack:
            writer = stack.enter_context(JsonlWriter(self.eval_dir / FAILURES_FILE))
            self._failures = FailureLog(writer)
            clients: dict[str, LLMClient] = {}
            for name, ep in endpoints.items():
                client = LLMClient(
                    name, ep, cache=cache, cache_namespace=namespace, on_stop=self._on_stop
                )
                clients[name] = await stack.enter_async_context(client)
            self._clients = clients
            bar = tqdm(
                total=len(self.s.questions.questions),
                desc="eval",
                unit="question",
                disable=None if self.show_progress else True,
                dynamic_ncols=True,
            )
            stack.callback(bar.close)

            async def work() -> None:
                limit = max(16, 2 * max(ep.max_concurrent for ep in endpoints.values()))
                indexed = _aiter(list(enumerate(self.s.questions.questions)))
                async for i, rows in bounded_map(indexed, self._one, limit=limit):
                    results[i] = rows
                    bar.update(1)

            self._work = asyncio.create_task(work())
            try:
                await self._work
            except asyncio.CancelledError:
                if self._failures.stopped is None or _cancelling():
                    raise  # a signal, not an endpoint that stopped the eval
        usage = {name: c.usage_report() for name, c in clients.items()}
        rows = [row for i in sorted(results) for row in results[i]]
        return rows, usage, {"ask_and_judge": round(time.perf_counter() - t0, 3)}

    def _on_stop(self, err: EndpointStoppedError) -> None:
        # An endpoint failing every call stops the eval: what was answered is kept and written.
        assert self._failures is not None
        if self._failures.stop(err) and self._work is not None:
            self._work.cancel()

    # --- one question ---------------------------------------------------------------------

    async def _one(self, item: tuple[int, Question]) -> tuple[int, list[dict[str, Any]]]:
        i, q = item
        answers = {
            a.label: a for a in await asyncio.gather(*map(partial(self._ask, q), self.s.targets))
        }
        if q.reference is not None:
            answers[REFERENCE] = _Answer(REFERENCE, q.reference, q.reference_model)
        ok = [a for a in answers.values() if a.text is not None]
        judges = list(self.s.config.evaluators)
        scored = await asyncio.gather(
            *(self._score(q, a, judge) for a in ok for judge in judges),
            *(self._exec(q, a) for a in ok),
        )
        n_scores = len(ok) * len(judges)
        scores: dict[str, dict[str, Any]] = {a.label: {} for a in ok}
        for k, result in enumerate(scored[:n_scores]):
            scores[ok[k // len(judges)].label][judges[k % len(judges)]] = result
        execs = dict(zip((a.label for a in ok), scored[n_scores:], strict=True))
        student = answers[STUDENT]
        opponents = [
            label
            for label in (REFERENCE, *(t.label for t in self.s.baselines))
            if label in answers and answers[label].text is not None and student.text is not None
        ]
        compared = await asyncio.gather(
            *(
                self._compare(q, student, answers[opp], judge)
                for opp in opponents
                for judge in judges
            )
        )
        pairwise: dict[str, dict[str, Any]] = {}
        for k, result in enumerate(compared):
            opp = opponents[k // len(judges)]
            pairwise.setdefault(opp, {"judges": {}})["judges"][judges[k % len(judges)]] = result
        for entry in pairwise.values():
            entry["outcome"] = _panel(entry["judges"].values())
        rows = []
        for label in [*(t.label for t in self.s.targets), REFERENCE]:
            a = answers.get(label)
            if a is None:
                continue
            rows.append(_row(q, a, scores.get(label, {}), execs.get(label)))
        rows[0]["pairwise"] = pairwise
        return i, rows

    async def _ask(self, q: Question, target: Target) -> _Answer:
        client = self._clients[target.label]
        messages = student_messages(q.instruction, q.input, system=q.system)
        try:
            (text, reasoning), _ = await client.chat(messages, parse_student_answer)
        except LLMError as exc:
            self._fail(f"question {q.id}: {target.label} answer", "answer", q, exc)
            return _Answer(target.label, None, client.model, target.label, error=str(exc))
        return _Answer(target.label, text, client.model, target.label, reasoning=reasoning)

    async def _score(self, q: Question, a: _Answer, judge: str) -> dict[str, Any]:
        client = self._clients[judge]
        weights = self.s.config.dimension_weights
        messages = evaluation_messages(q.source_text, q.instruction, q.input, a.text or "")
        parse = partial(parse_scores, required=required_dimensions(weights))
        try:
            (scores, reason), _ = await client.chat(messages, parse, kind="judge")
        except LLMError as exc:
            self._fail(f"question {q.id}: {judge} scoring {a.label}", "evaluation", q, exc)
            return {"error": str(exc)}
        return {
            "scores": scores,
            "mean": weighted_mean(scores, dict(weights) if weights else None),
            "reason": reason,
        }

    async def _compare(
        self, q: Question, student: _Answer, other: _Answer, judge: str
    ) -> dict[str, Any]:
        """Both orders: the student as answer A, then as answer B; the outcome is the student's."""
        client = self._clients[judge]
        s, o = student.text or "", other.text or ""
        first = pairwise_messages(q.source_text, q.instruction, q.input, s, o)
        swapped = pairwise_messages(q.source_text, q.instruction, q.input, o, s)
        try:
            ((v1, r1), _), ((v2, r2), _) = await asyncio.gather(
                client.chat(first, parse_pairwise), client.chat(swapped, parse_pairwise)
            )
        except LLMError as exc:
            unit = f"question {q.id}: {judge} comparing student with {other.label}"
            self._fail(unit, "pairwise", q, exc)
            return {"error": str(exc)}
        return {
            "first": v1,
            "swapped": v2,
            "outcome": pairwise_verdict(v1, v2),
            "reasons": [r1, r2],
        }

    async def _exec(self, q: Question, a: _Answer) -> dict[str, Any] | None:
        """The answer's query run on the database (and against the reference's), if SQL applies."""
        gate = self._gate
        if gate is None or (q.reference is not None and extract_sql(q.reference) is None):
            return None
        sample = Sample(
            id=q.id,
            slice_id=q.slice_id or q.id,
            instruction=q.instruction,
            input=q.input,
            output=a.text or "",
            # The reference is the gold query of the others (not of itself).
            reference_output=None if a.label == REFERENCE else q.reference,
        )
        result = await gate.check(sample)
        keys = ("sql", "exec_pass", "exec_error", "gold_match", "gold_error")
        return {k: result.annotations[k] for k in keys if k in result.annotations}

    def _fail(self, unit: str, kind: str, q: Question, exc: LLMError) -> None:
        log_failure(log, unit, exc)
        assert self._failures is not None
        self._failures.add(Failure.from_error(exc, kind, slice_id=q.slice_id, sample_id=q.id))

    # --- outputs --------------------------------------------------------------------------

    def _metadata(
        self,
        rows: list[dict[str, Any]],
        whole: Any,
        wall_s: float,
        timings: dict[str, float],
        endpoints: Mapping[str, EndpointConfig],
        simulator_url: str | None,
    ) -> dict[str, Any]:
        assert self._failures is not None
        s = self.s
        qs = s.questions
        metadata: dict[str, Any] = {
            "package": "sft_distill",
            "version": __version__,
            "simulator": simulator_url is not None,
            "run_dir": str(s.run_dir.resolve()),
            "prompt_versions": {
                "evaluation": EVAL_PROMPT_VERSION,
                "pairwise": PAIRWISE_PROMPT_VERSION,
            },
            "questions": {
                **qs.described,
                "n": len(qs.questions),
                "evaluated": len({r["question_id"] for r in rows}),
                "with_source": qs.with_source,
                "with_reference": qs.with_reference,
                "bad_lines": qs.bad_lines,
                "group_by": s.group_by or "slice_id",
            },
            "warnings": list(qs.warnings),
            "models": {
                STUDENT: s.student.public(),
                **{t.label: t.public() for t in s.baselines},
                REFERENCE: {"name": "the teacher's recorded answers"},
            },
            "judges": {n: ep.public_dict() for n, ep in s.config.evaluators.items()},
            "sql": {"database": str(self._gate.database)} if self._gate is not None else None,
            **summarise(
                rows,
                students=[t.label for t in s.targets],
                judges=list(s.config.evaluators),
                weights=s.config.dimension_weights,
                n_resamples=s.n_resamples,
                alpha=s.alpha,
                seed=s.seed,
                usage=whole.usage,
                prices=s.config.prices,
            ),
            "failures": self._failures.count,
            "failure_kinds": _failure_kinds(self.eval_dir / FAILURES_FILE),
            "whole_eval": whole.summary(wall_s),
            "timings_s": {**timings, "total": round(wall_s, 3)},
        }
        err = self._failures.stopped
        if err is not None:
            metadata["stopped"] = {
                "endpoint": err.endpoint,
                "model": err.model,
                "url": display_url(endpoints[err.endpoint].api_base),
                "consecutive_failures": err.attempts,
                "reason": err.summary,
            }
        return metadata

    def _write(
        self, out: Path, rows: list[dict[str, Any]], metadata: dict[str, Any]
    ) -> dict[str, Path]:
        from .report_html import render_eval_html

        paths = {name: out / name for name in (ANSWERS_FILE, EVAL_METADATA_FILE, EVAL_REPORT_FILE)}
        with JsonlWriter(paths[ANSWERS_FILE], atomic=True) as w:
            for row in rows:
                w.write(row)
        write_json_atomic(paths[EVAL_METADATA_FILE], metadata)
        html = render_eval_html(metadata)
        tmp = paths[EVAL_REPORT_FILE].with_name(EVAL_REPORT_FILE + ".tmp")
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, paths[EVAL_REPORT_FILE])
        paths[FAILURES_FILE] = out / FAILURES_FILE
        return paths


def _row(
    q: Question, a: _Answer, scores: dict[str, dict[str, Any]], execution: dict[str, Any] | None
) -> dict[str, Any]:
    """One line of answers.jsonl: the question, one model's answer, its scores."""
    means = [s["mean"] for s in scores.values() if s.get("mean") is not None]
    row: dict[str, Any] = {
        "question_id": q.id,
        "slice_id": q.slice_id,
        "chunk_index": q.chunk_index,
        "group": q.group,
        "model": a.label,
        "endpoint_model": a.model,
        "instruction": q.instruction,
        "input": q.input,
        "answer": a.text,
        "error": a.error,
        "has_source": bool(q.source_text.strip()),
        "scores": scores,
        "mean_score": round(sum(means) / len(means), 4) if means else None,
    }
    if a.reasoning:
        row["reasoning"] = a.reasoning
    if execution is not None:
        row["exec"] = execution
    return row


def _panel(results: Any) -> str | None:
    """The judges' outcome together: the side with more wins, a tie when they balance."""
    score = 0
    seen = False
    for r in results:
        outcome = r.get("outcome")
        if outcome is None:
            continue
        seen = True
        score += {"win": 1, "loss": -1}.get(outcome, 0)
    if not seen:
        return None
    return "win" if score > 0 else "loss" if score < 0 else "tie"


def _sql_gate(config: DistillConfig) -> SQLExecutionGate | None:
    """The config's SQL gate (its database and limits), built alone; None without one."""
    from ..stages.gates.registry import build_gates

    specs = [g for g in config.gates if isinstance(g, Mapping) and g.get("type") == "sql"]
    if not specs:
        return None
    # build_gates puts the pii gate first (on by default): pick the SQL gate out of the list.
    gates = build_gates(config.model_copy(update={"gates": specs[:1]}))
    return next((g for g in gates if isinstance(g, SQLExecutionGate)), None)


def _failure_kinds(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                kind = json.loads(line).get("kind", "?")
            except ValueError:
                continue
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


async def _aiter(items: Sequence[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


def _cancelling() -> bool:
    """Whether the current task itself was asked to stop (Python 3.11+; assumed not before)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if cancelling is not None else False
