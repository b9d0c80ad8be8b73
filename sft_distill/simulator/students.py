"""The models under test in ``sft-distill eval``: students answering with a quality gap, and a
pairwise judge that can be told to favour a position. Pure functions of the prompt.

A **student** is any model listed in ``SimulatorConfig.answer_gaps``: it answers a plain question
(the training prompt, no task marker) the way a fine-tuned model would, from the question alone.
Its answer is made of sentences restating the question's subject (claims a judge finds in the
question, hence "supported") and, depending on the gap, flawed sentences: vague ones the source
does not contain, or a number the source never states (a contradiction). The gap runs from -1
(every sentence flawed) through 0 (as good as the teacher's recorded answer, on average) to +1
(two more supported points than that). A question that comes with a CREATE TABLE schema is
answered with the query a student of the dry run's Text2SQL pairs learned, broken (an unknown
column) or wrong (another aggregate) with probability ``-gap``.

The **pairwise judge** scores each answer crudely but honestly, like the simulated pointwise
judge: claims are sentences; a claim stating a number that neither the source nor the question
has is contradicted, one at least half of whose character 3-grams are in the source or the
question supported; merit = 6 x share supported + min(supported, 4) - 3 x contradicted, plus a
little noise fixed by (judge, question, answer). Merits within 1 of each other are a tie. The
noise depends on the answer, not on its position, so the judge is consistent when the order is
swapped; ``position_bias`` p makes it answer "A" whatever it read, in a share p of the prompts.
Without a source document every claim counts as supported (nothing to check it against).
"""

from __future__ import annotations

import os
import re
import unicodedata
from typing import Any

from ..llm.prompts import NO_DOCUMENT, detect_language
from .seeds import unit
from .tasks import _iset_core
from .text2sql import sql_for_question

__all__ = [
    "ANSWER_GAPS_ENV",
    "POSITION_BIAS_ENV",
    "answer_merit",
    "pairwise_reply",
    "parse_answer_gaps",
    "student_reply",
]

# ``--dry-run`` of ``sft-distill eval`` reads these (the eval's own simulator has no flags).
ANSWER_GAPS_ENV = "SFT_DISTILL_SIM_ANSWER_GAPS"
POSITION_BIAS_ENV = "SFT_DISTILL_SIM_POSITION_BIAS"

# Supported points of an answer as good as the teacher's (whose simulated answers are two
# sentences of the source), and the most a better student adds.
_BASE_POINTS = 2
_EXTRA_POINTS = 2
_TIE_MARGIN = 1.0
_NOISE = 0.6
_GRAM = 3
_MIN_CLAIM_GRAMS = 4

_SOUND = {
    "en": ("{C}.", "In short, {c}.", "That is: {c}.", "Put simply, {c}."),
    "zh": ("{c}。", "简而言之，{c}。", "也就是说，{c}。", "具体来说，{c}。"),
}
_VAGUE = {
    "en": (
        "It also depends on circumstances that differ from case to case.",
        "Other rules may apply as well, so no firm answer can be given.",
        "Practice varies, and the details are best checked with a professional.",
        "Some exceptions probably exist, although they are not spelled out here.",
    ),
    "zh": (
        "具体还要视实际情况而定，不能一概而论。",
        "其他规定也可能适用，因此难以给出确定的结论。",
        "实践中做法不一，细节最好咨询专业人士。",
        "可能还存在一些例外情形，这里不再详述。",
    ),
}
_WRONG = {"en": "The time limit for this is {n} days.", "zh": "相关期限为{n}日。"}

_SENT_RE = re.compile(r"[^。！？；!?;\n]+(?:[。！？；!?;]+|\n|$)")
_EN_SENT_RE = re.compile(r"[^.!?;\n]+(?:[.!?;]+(?=\s|$)|\n|$)")
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")
_NON_WORD_RE = re.compile(r"[\W_]+")


def parse_answer_gaps(text: str | None) -> dict[str, float]:
    """``"student=0.5,base=-0.6"`` -> {model: gap}; a bare number is ``{"*": number}``.

    Raises:
        ValueError: a gap that is not a number between -1 and 1.
    """
    gaps: dict[str, float] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        model, sep, value = item.rpartition("=")
        name = model.strip() if sep else "*"
        gap = float(value)
        if not -1.0 <= gap <= 1.0:
            raise ValueError(f"answer gap must be between -1 and 1, got {value!r} for {name!r}")
        gaps[name] = gap
    return gaps


def dry_run_knobs(
    students: dict[str, float], environ: dict[str, str] | None = None
) -> tuple[dict[str, float], float]:
    """(answer gaps per model, position bias) for an eval's ``--dry-run`` simulator.

    ``students`` holds each model under test with its default gap; ``SFT_DISTILL_SIM_ANSWER_GAPS``
    overrides them (a bare number sets every one), ``SFT_DISTILL_SIM_POSITION_BIAS`` sets the
    judges' bias.

    Raises:
        ValueError: a malformed variable (named in the message).
    """
    env = os.environ if environ is None else environ
    try:
        given = parse_answer_gaps(env.get(ANSWER_GAPS_ENV))
    except ValueError as exc:
        raise ValueError(f"{ANSWER_GAPS_ENV}: {exc}") from None
    gaps = {m: given.get(m, given.get("*", g)) for m, g in students.items()}
    gaps.update({m: g for m, g in given.items() if m != "*"})
    raw = env.get(POSITION_BIAS_ENV, "").strip()
    try:
        bias = float(raw) if raw else 0.0
    except ValueError:
        raise ValueError(f"{POSITION_BIAS_ENV}: expected a number, got {raw!r}") from None
    if not 0.0 <= bias <= 1.0:
        raise ValueError(f"{POSITION_BIAS_ENV}: must be between 0 and 1, got {raw!r}")
    return gaps, bias


# --- the student ------------------------------------------------------------------------------


def _sql_reply(model: str, question: str, schema: str, gap: float) -> str | None:
    """A fenced query for a Text2SQL question, broken or wrong with probability ``-gap``."""
    sql = sql_for_question(question, schema)
    if sql is None:
        return None
    u = unit("student-sql", model, question)
    if u < -gap:
        if u < -gap / 2:  # a column that does not exist: the query fails
            sql = sql.replace("SELECT ", "SELECT missing_col, ", 1)
        elif "COUNT(*)" in sql:  # valid, but not the answer
            sql = sql.replace("COUNT(*)", "COUNT(*) + 1", 1)
        else:
            sql = sql.replace("SELECT ", "SELECT DISTINCT 0, ", 1)
    return f"```sql\n{sql}\n```"


def student_reply(model: str, user: str, gap: float) -> str:
    """What a student with quality ``gap`` answers to a question (the whole user turn)."""
    lines = user.strip().split("\n", 1)
    question = lines[0]
    rest = lines[1] if len(lines) > 1 else ""
    if "create table" in rest.lower():
        sql = _sql_reply(model, question, rest, gap)
        if sql is not None:
            return sql
    lang = detect_language(user)
    core = _iset_core(question, lang)
    sound = _SOUND[lang]
    points: list[str] = []
    for k in range(_BASE_POINTS):
        u = unit("student-flaw", model, user, str(k))
        if u < -gap:
            if unit("student-kind", model, user, str(k)) < 0.4:
                number = 1000 + int(unit("student-n", model, user, str(k)) * 8000)
                points.append(_WRONG[lang].format(n=number))
            else:
                points.append(_VAGUE[lang][(k + int(u * 97)) % len(_VAGUE[lang])])
        else:
            points.append(sound[k % len(sound)].format(c=core, C=core[:1].upper() + core[1:]))
    for k in range(_EXTRA_POINTS):
        if unit("student-extra", model, user, str(k)) < gap:
            j = _BASE_POINTS + k
            points.append(sound[j % len(sound)].format(c=core, C=core[:1].upper() + core[1:]))
    return ("" if lang == "zh" else " ").join(points)


# --- the pairwise judge -------------------------------------------------------------------------


def _squash(text: str) -> str:
    return _NON_WORD_RE.sub("", unicodedata.normalize("NFKC", text).casefold())


def _grams(text: str) -> set[str]:
    sq = _squash(text)
    return {sq[i : i + _GRAM] for i in range(len(sq) - _GRAM + 1)}


def _numbers(text: str) -> set[str]:
    return set(_NUMBER_RE.findall(unicodedata.normalize("NFKC", text)))


def _claims(answer: str) -> list[str]:
    regex = _SENT_RE if detect_language(answer) == "zh" else _EN_SENT_RE
    out = []
    for m in regex.finditer(answer):
        sentence = m.group().strip()
        if len(_squash(sentence)) - _GRAM + 1 >= _MIN_CLAIM_GRAMS:
            out.append(sentence)
    return out


def answer_merit(document: str, question: str, answer: str) -> float:
    """The judge's merit of an answer (see the module docstring), before noise."""
    claims = _claims(answer)
    if not claims:
        return 0.0
    checked = bool(document.strip())
    known = _grams(document) | _grams(question) if checked else set()
    numbers = _numbers(document) | _numbers(question) if checked else set()
    supported = contradicted = 0
    for claim in claims:
        if not checked:
            supported += 1
        elif _numbers(claim) - numbers:
            contradicted += 1
        else:
            own = _grams(claim)
            supported += sum(g in known for g in own) >= 0.5 * len(own)
    share = supported / len(claims)
    return 6.0 * share + min(supported, 4) - 3.0 * contradicted


def pairwise_reply(
    model: str, fields: dict[str, str], *, position_bias: float = 0.0
) -> dict[str, Any]:
    """A pairwise judge's reply to an ``eval_pairwise`` task: analysis, reason, winner."""
    document = fields.get("document", "")
    if document.strip() == NO_DOCUMENT:
        document = ""
    question = fields.get("question", "")
    a, b = fields.get("answer_a", ""), fields.get("answer_b", "")
    if position_bias > 0 and unit("position", model, question, a, b) < position_bias:
        return {
            "analysis": "Answer A comes first and reads well.",
            "reason": "A is better.",
            "winner": "A",
        }

    def merit(answer: str) -> float:
        noise = (2 * unit("pairwise", model, question, answer) - 1) * _NOISE
        return answer_merit(document, question, answer) + noise

    ma, mb = merit(a), merit(b)
    if abs(ma - mb) < _TIE_MARGIN:
        winner, reason = "tie", "Neither answer is clearly better."
    elif ma > mb:
        winner, reason = "A", "A is more accurate and complete."
    else:
        winner, reason = "B", "B is more accurate and complete."
    return {
        "analysis": f"Checked the claims of both answers: A {ma:.1f}, B {mb:.1f}.",
        "reason": reason,
        "winner": winner,
    }
