"""What the simulator answers: a pure function of the prompt, the same on every rerun.

Generation prompts get samples drawn from the prompt's own text (Text2SQL pairs for a schema):
standalone questions naming the subject of the context line, following the request's plan and
range, answers citing the article, verbatim evidence; question and answer prompts (two-stage
generation) get the same questions, then answers. Evaluation prompts get a judge's reply (a crude
claim check, then scores), embedding requests unit vectors of hashed n-grams.
"""

from __future__ import annotations

import functools
import json
import math
import random
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..config.defaults import DIMENSIONS
from ..llm.prompts import (
    QUESTION_COUNT_MARKER,
    SAMPLE_COUNT_MARKER,
    detect_language,
    parse_generation_request,
)
from ..sources.headings import find_article_refs, find_articles
from ..sources.plan import CONDITION_RE, PROCEDURE_RE, QUANTITY_RE, QuestionMix, question_mix
from ..stages.gates.checks.numerals import normalize_numerals
from ..stages.gates.checks.referential import find_referential
from .seeds import seed_of, unit
from .text2sql import text2sql_samples

EMBED_DIM = 256


_DIMENSIONS = DIMENSIONS


# A sentence: starts at a non-space, ends at CJK/ASCII terminal punctuation, ". " or end of line.
# Greedy with no lazy alternation: this runs on every new generation prompt.
_SENT_RE = re.compile(
    r"[^\s。！？；!?][^。！？；!?\n.]*(?:\.(?!\s|$)[^。！？；!?\n.]*)*"
    r"(?:[。！？；!?]+[”’\"」』)）]?|\.+)?"
)


_TRAIL_PUNCT = '。！？；!?.,，、：:;”’"」』)） \t'


def _sentences(document: str) -> list[tuple[int, int]]:
    """Spans of the sentences of at least 4 characters."""
    return [m.span() for m in _SENT_RE.finditer(document) if m.end() - m.start() >= 4]


def _head(sentence: str, lang: str) -> str:
    """The first ~30 characters (zh) or ~60 characters (en) of a sentence, for an instruction."""
    s = sentence.strip().rstrip(_TRAIL_PUNCT)
    limit = 30 if lang == "zh" else 60
    if len(s) <= limit:
        return s
    cut = s[:limit]
    if lang == "en" and " " in cut:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(_TRAIL_PUNCT) + "…"


def _tweak(instruction: str) -> str:
    """The same instruction differing by one character (for near-duplicates)."""
    swaps = {"？": "?", "?": "？", "。": ".", ".": "。", "：": ":", ":": "："}
    last = instruction[-1:] if instruction else ""
    if last in swaps:
        return instruction[:-1] + swaps[last]
    return instruction + ("。" if detect_language(instruction) == "zh" else ".")


# --- generation: samples, questions and answers drawn from the prompt's own document ----------
# The context line names the subject ("资料：《中华人民共和国保险法》 › 第二章 …"), so every
# question names it and never says "the material"; answers cite the article they rest on,
# evidence quotes are sentences of the document, and the question types and difficulties follow
# the request's plan line.

_DATE = re.compile(r"\s*[（(]\d{4}-\d{2}-\d{2}[）)]\s*$")
_ANSWER_CHARS = {"zh": 300, "en": 280}
_QUOTE_CHARS = {"zh": 120, "en": 110}
_SENTENCE_END = "。！？；.!?;"


def _subject(header: str, lang: str) -> str:
    """The name a standalone question uses, from the context line ('' without one)."""
    first = header.removeprefix("资料：").removeprefix("Source: ").split(" › ")[0].strip()
    if not first:
        return ""
    if lang == "zh":
        if "《" in first and "》" in first:
            return first[first.index("《") : first.rindex("》") + 1]
        return f"《{_DATE.sub('', first)}》"
    name = _DATE.sub("", first).split(":")[0].strip()
    return name if name.lower().startswith("the ") else f"the {name}"


@dataclass(frozen=True)
class _Unit:
    """What one sample is about: an article (its label) or a sentence of unstructured text."""

    label: str
    start: int
    end: int


def _units(document: str, cover: tuple[str, str] | None, cover_articles: bool) -> list[_Unit]:
    """What the samples are about: the articles (of the range to cover), else sentences.

    A range of text (a request over part of a long article) gives its sentences, each labelled
    with the article it belongs to.
    """
    arts = find_articles(document)
    if arts and (cover is None or cover_articles):
        units = [_Unit(a.label, a.start, a.end) for a in arts]
        if cover is not None:
            labels = [u.label for u in units]
            i = labels.index(cover[0]) if cover[0] in labels else 0
            j = labels.index(cover[1], i) if cover[1] in labels[i:] else len(units) - 1
            units = units[i : j + 1]
        return units
    lo, hi = 0, len(document)
    if cover is not None:
        i = document.find(cover[0])
        j = document.find(cover[1], max(i, 0))
        if i >= 0 and j >= 0:
            lo, hi = i, j + len(cover[1])
    spans = _sentences(document)
    inside = [sp for sp in spans if sp[0] >= lo and sp[1] <= hi] or spans

    def label(at: int) -> str:
        above = [a.label for a in arts if a.start <= at]
        return above[-1] if above else ""

    return [_Unit(label(a), a, b) for a, b in inside]


def _body(document: str, unit: _Unit) -> str:
    """The unit's text without its label line ("第十六条 …" -> "…", "### Section 6\\n…" -> "…")."""
    seg = document[unit.start : unit.end].strip()
    if not unit.label:
        return seg
    first, _, rest = seg.partition("\n")
    at = first.find(unit.label)
    after = first[at + len(unit.label) :].strip(" \t*#:：.") if at >= 0 else first
    return (f"{after}\n{rest}" if after else rest).strip()


def _cut(text: str, limit: int, ends: str = _SENTENCE_END) -> str:
    """``text`` up to the last of ``ends`` within ``limit`` characters (whole when shorter)."""
    text = text.strip()
    if len(text) <= limit:
        return text
    end = max(text.rfind(c, 0, limit) for c in ends)
    return text[: end + 1] if end > 0 else text[:limit]


_TOPIC_CHARS = {"zh": 16, "en": 32}


def _topic(body: str, lang: str) -> str:
    """What a unit is about: the first clause of its first sentence, short ("订立保险合同")."""
    spans = _sentences(body)
    first = (body[spans[0][0] : spans[0][1]] if spans else body).strip()
    clause = re.split(r"[，,；;：:]", first, maxsplit=1)[0].strip().rstrip(_TRAIL_PUNCT)
    if len(clause) < 4:
        clause = first.rstrip(_TRAIL_PUNCT)
    limit = _TOPIC_CHARS[lang]
    if len(clause) <= limit:
        return clause
    cut = clause[:limit]
    if lang == "en" and " " in cut:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(_TRAIL_PUNCT) + "…"


def _term(body: str, lang: str) -> str | None:
    """The term a definition defines ("本法所称保险，是指…" -> "保险"), or None."""
    if lang == "zh":
        m = re.search(r"(?:所称|所说的|称)([^，。；：,\s]{2,12}?)[，,]?是指", body)
        return m.group(1) if m else None
    m = re.search(r"[\"“]([^\"”]{2,40})[\"”]\s+means\b", body)
    return m.group(1) if m else None


_PREFERS = {"calculation": QUANTITY_RE, "procedure": PROCEDURE_RE, "condition": CONDITION_RE}

_ZH_Q = {
    "fact": ("{w}对“{t}”是如何规定的？", "依照{w}，关于“{t}”有哪些具体要求？"),
    "definition": ("{n}中所称的“{term}”是指什么？", "{n}如何界定“{term}”？"),
    "condition": (
        "依照{w}，在什么条件下适用“{t}”的规定？有哪些例外？",
        "{w}关于“{t}”的规定在哪些情形下不适用？",
    ),
    "procedure": (
        "依照{w}，涉及“{t}”时应当遵循什么程序或期限？",
        "按照{w}，办理与“{t}”有关的事项有哪些步骤和时限？",
    ),
    "calculation": (
        "根据{w}，如何计算与“{t}”相关的期限、比例或金额？",
        "依照{w}，“{t}”中的数额或期限应当怎样计算？",
    ),
    "case": (
        "某公司遇到与“{t}”有关的情况，依照{w}应当如何处理？",
        "张某的情况涉及“{t}”，依照{w}，他的权利和义务是什么？",
    ),
    "comparison": ("{n}{l}与{l2}的规定有什么不同？", "比较{n}{l}和{l2}的适用范围。"),
    "reasoning": (
        "结合{n}{l}和{l2}，分析“{t}”的适用条件和法律后果。",
        "综合{n}{l}与{l2}，说明“{t}”应当如何一步步判断。",
    ),
}
_EN_Q = {
    "fact": ('Under {w}, what is the rule on "{t}"?', 'What does {w} provide about "{t}"?'),
    "definition": ('Under {n}, what does "{term}" mean?', 'How does {n} define "{term}"?'),
    "condition": (
        'Under {w}, when does the rule on "{t}" apply, and what are its exceptions?',
        'In which situations does the rule of {w} on "{t}" not apply?',
    ),
    "procedure": (
        'Under {w}, what procedure or time limit applies to "{t}"?',
        'What steps and deadlines does {w} set for "{t}"?',
    ),
    "calculation": (
        'Under {w}, how is the number, share or period concerning "{t}" worked out?',
        'How would one compute the figure {w} sets for "{t}"?',
    ),
    "case": (
        'Suppose a situation involving "{t}". How does {w} apply to it?',
        'A company faces a question about "{t}". What does {w} require of it?',
    ),
    "comparison": ("How do {l} and {l2} of {n} differ?", "Compare {l} and {l2} of {n}."),
    "reasoning": (
        'Taking {l} and {l2} of {n} together, what follows for "{t}"?',
        'Reason step by step from {l} and {l2} of {n}: how is "{t}" decided?',
    ),
}


def _where(name: str, label: str, lang: str) -> str:
    """ "《保险法》第十六条" / "Section 6 of the US Constitution" / a fallback without either."""
    if lang == "zh":
        return f"{name}{label}" or "有关规定"
    if name and label:
        return f"{label} of {name}"
    return name or label or "the rules"


@dataclass
class _Planned:
    """One sample being made: its slot, its units and its text."""

    category: str
    difficulty: str
    units: tuple[_Unit, ...]
    question_type: str = ""
    question: str = ""


def _question(p: _Planned, document: str, name: str, lang: str, variant: int) -> None:
    """Fill in p.question and p.question_type from its category and units."""
    first = p.units[0]
    body = _body(document, first)
    t = _topic(body, lang)
    cat = p.category
    term = _term(body, lang) if cat == "fact" and variant % 2 == 0 else None
    if cat in ("comparison", "reasoning") and len(p.units) < 2:
        cat = "case" if cat == "reasoning" else "fact"
    kind = "definition" if term else cat
    templates = (_ZH_Q if lang == "zh" else _EN_Q)[kind]
    second = p.units[1].label if len(p.units) > 1 else ""
    n = name or ("有关规定" if lang == "zh" else "the rules")
    p.question = templates[variant % 2].format(
        w=_where(name, first.label, lang), t=t, n=n, l=first.label, l2=second, term=term
    )
    p.question_type = kind


_ANSWER_PICKS = {"condition": CONDITION_RE, "procedure": PROCEDURE_RE, "calculation": QUANTITY_RE}
_ANSWER_LEAD = {
    "zh": {
        "case": "这种情况应当依照{w}处理：",
        "reasoning": "第{k}步，依照{w}：",
        "comparison": "{w}规定：",
    },
    "en": {
        "case": "The situation falls under {w}: ",
        "reasoning": "Step {k}, under {w}: ",
        "comparison": "{w} provides: ",
    },
}


def _sentences_of(body: str, kind: str) -> list[str]:
    """The sentences of a unit an answer of ``kind`` restates: the ones its kind is about."""
    texts = [body[a:b].strip() for a, b in _sentences(body)] or [body.strip()]
    pick = _ANSWER_PICKS.get(kind)
    chosen = [t for t in texts if pick.search(t)][:2] if pick is not None else []
    return chosen or texts[:2]


def _answer(
    document: str, units: Sequence[_Unit], name: str, lang: str, kind: str = "fact"
) -> tuple[str, list[str]]:
    """An answer citing each unit's article and restating the sentences its kind is about, and
    those sentences (verbatim: the evidence)."""
    parts, quotes = [], []
    for k, u in enumerate(units, 1):
        w = _where(name, u.label, lang)
        chosen = _sentences_of(_body(document, u), kind)
        # A long sentence is quoted up to a clause end: still verbatim, and replies stay short.
        quotes += [_cut(q, _QUOTE_CHARS[lang], ends="，,；;。.") for q in chosen]
        body = _cut(("" if lang == "zh" else " ").join(chosen), _ANSWER_CHARS[lang] // len(units))
        lead = _ANSWER_LEAD[lang].get(kind)
        if lead is not None:
            parts.append(lead.format(w=w, k=k) + body)
        elif lang == "zh":
            parts.append(f"根据{w}，{body}")
        else:
            parts.append(f"Under {w}: {body}")
    return ("" if lang == "zh" else " ").join(parts), quotes[: 3 if lang == "zh" else 2]


def _plan(
    model: str,
    document: str,
    n: int,
    *,
    header: str,
    previous: Sequence[str],
    cover: tuple[str, str] | None,
    cover_articles: bool,
    mix: QuestionMix | None,
) -> tuple[list[_Planned], str, str, random.Random]:
    """The samples of a request: slot, units and question each; with the subject, language, rng."""
    rng = random.Random(
        seed_of("gen", model, str(n), document, header, "\x1e".join(previous), repr(cover))
    )
    lang = detect_language(document)
    name = _subject(header, lang)
    units = _units(document, cover, cover_articles)
    m = len(units)
    if mix is None or mix.n != n:
        mix = question_mix(n, document)  # what generation_messages plans for a whole chunk
    slots = mix.slots()
    offset = rng.random()
    v0 = rng.randrange(2)  # each teacher has its own way of putting things
    start = rng.randrange(m) if m else 0
    picks = [min(m - 1, int((k + offset) * m / n)) if m >= n else (start + k) % m for k in range(n)]
    seen = {_norm_q(q) for q in previous}
    used: set[int] = set()
    planned: list[_Planned] = []
    for k, ((cat, level), i) in enumerate(zip(slots, picks, strict=True)):
        prefer = _PREFERS.get(cat)
        if prefer is not None and not prefer.search(_body(document, units[i])):
            # A calculation asks about an article with quantities, a procedure one with steps:
            # the next such article not yet asked about, else the next such one at all.
            fits = [j % m for j in range(i, i + m) if prefer.search(_body(document, units[j % m]))]
            i = next((j for j in fits if j not in used), fits[0] if fits else i)
        elif i in used:
            # Every article of the range is asked about once before any twice.
            i = next((j % m for j in range(i, i + m) if j % m not in used), i)
        for attempt in range(max(1, m)):
            j = (i + attempt) % m
            pair = (units[j], units[j + 1] if j + 1 < m else units[j - 1]) if m > 1 else ()
            p = _Planned(cat, level, pair or (units[j],))
            _question(p, document, name, lang, v0 + k // max(1, m) + attempt)
            if _norm_q(p.question) not in seen:
                break
        if _norm_q(p.question) in seen:
            p.question += f"（{k + 1}）" if lang == "zh" else f" ({k + 1})"
        seen.add(_norm_q(p.question))
        used.add(units.index(p.units[0]))
        planned.append(p)
    return planned, name, lang, rng


def _norm_q(question: str) -> str:
    return "".join(c for c in question.casefold() if c.isalnum())


def _no_content(n: int, lang: str) -> list[dict[str, Any]]:
    """Samples for an empty document: nothing to say, so each says so."""
    out = []
    for k in range(n):
        if lang == "zh":
            instr, answer = f"请概述第{k + 1}个要点。", "没有提供足够的内容，无法给出具体回答。"
        else:
            instr = f"Summarise key point {k + 1}."
            answer = "There is not enough information to answer this."
        out.append(_item("fact", "easy", instr, [], answer))
    return out


def _item(kind: str, level: str, instruction: str, evidence: list[str], output: str) -> dict:
    return {
        "question_type": kind,
        "difficulty": level,
        "instruction": instruction,
        "input": "",
        "evidence": evidence,
        "output": output,
    }


def generation_samples(
    model: str,
    document: str,
    n: int,
    *,
    header: str = "",
    previous: Sequence[str] = (),
    cover: tuple[str, str] | None = None,
    cover_articles: bool = False,
    mix: QuestionMix | None = None,
) -> list[dict[str, Any]]:
    """``n`` samples about the document; a pure function of the arguments (the prompt's parts).

    Questions name the subject of ``header`` and the article they ask about, avoid the
    ``previous`` questions, cover the ``cover`` range only and follow ``mix`` (default: the
    plan for ``n`` and the document); answers cite the article and restate it, and evidence
    quotes are sentences of the document. About one reply in ten repeats a question with a
    one-character change (a near-duplicate for the question dedup).
    """
    if sql_samples := text2sql_samples(model, document, n):  # a schema: Text2SQL pairs
        return sql_samples
    if not _sentences(document):
        return _no_content(n, detect_language(document))
    planned, name, lang, rng = _plan(
        model,
        document,
        n,
        header=header,
        previous=previous,
        cover=cover,
        cover_articles=cover_articles,
        mix=mix,
    )
    samples = []
    for p in planned:
        pair = p.question_type in ("comparison", "reasoning")
        answer, evidence = _answer(
            document, p.units if pair else p.units[:1], name, lang, p.question_type
        )
        if len(evidence) > 1 and not pair and rng.random() < 0.5:
            evidence = evidence[:1]  # some teachers quote one sentence, some two
        samples.append(_item(p.question_type, p.difficulty, p.question, evidence, answer))
    if n >= 2 and rng.random() < 0.10:
        a, b = rng.sample(range(n), 2)
        samples[b] = dict(samples[a], instruction=_tweak(samples[a]["instruction"]))
    return samples


# --- the simulated judge --------------------------------------------------------------------
# Honest but crude, and a pure function of the prompt: each answer sentence is a claim, checked
# by its character 3-gram overlap with the source (supported / not_in_source) and by its numbers
# (a number the source and the question do not have: contradicted); accuracy follows the
# verdicts as the rubric's anchors say; standalone is low for a question that points at a text
# (the referential gate's check). The other dimensions are noise around a per-sample quality.

_CLAIM_GRAM = 3
# Share of a sentence's 3-grams found in the source for it to count as supported.
_SUPPORTED_SHARE = 0.5
_MIN_CLAIM_GRAMS = 4
# Kept short, as the rubric asks ("one short sentence", "the shortest quote"): the simulator
# counts a reply's tokens as characters / 2, and the judge's max_tokens must hold the reply.
_MAX_CLAIMS = 6
_MAX_CLAIM_CHARS = 100
_MAX_EVIDENCE_CHARS = 80
_CLAIM_SENT_RE = re.compile(r"[^。！？；!?;\n]+(?:[。！？；!?;]+|\n|$)")
# A full stop inside a word or number ("1.5", "U.S.") does not end an English sentence.
_EN_CLAIM_SENT_RE = re.compile(r"(?:[^.!?;\n]|\.(?=\S))+(?:[.!?;]+(?=\s|$)|\n|$)")
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")
_DIGIT_RE = re.compile(r"\d")
_ZH_NUMERAL_RE = re.compile(r"[\d零〇一二两三四五六七八九十百千万亿]")
_NON_WORD_RE = re.compile(r"[\W_]+")


def _squash(text: str) -> str:
    return _NON_WORD_RE.sub("", unicodedata.normalize("NFKC", text).casefold())


def _grams(text: str) -> frozenset[str]:
    sq = _squash(text)
    return frozenset(sq[i : i + _CLAIM_GRAM] for i in range(len(sq) - _CLAIM_GRAM + 1))


def _numbers(text: str, *, words: bool = True) -> frozenset[str]:
    """The numbers in a text; with ``words``, number words too ("三十日" has 30, "three" 3)."""
    normal = unicodedata.normalize("NFKC", text)
    if words:
        normal = normalize_numerals(normal, ordinals=True)
    return frozenset(_canonical(n) for n in _NUMBER_RE.findall(normal))


# Every sample of a chunk is judged against the same document: its grams and numbers are
# computed once (a cache of documents only, so the answers' sentences never evict them).
_source_grams = functools.lru_cache(maxsize=64)(_grams)
_source_numbers = functools.lru_cache(maxsize=64)(_numbers)


def _claimed_numbers(sentence: str, lang: str) -> frozenset[str]:
    """The numbers a sentence states: Chinese numerals count ("六十日"), English number words
    do not ("three steps" is rarely a fact taken from the source; "30 days" is)."""
    if not (_ZH_NUMERAL_RE if lang == "zh" else _DIGIT_RE).search(sentence):
        return frozenset()  # most sentences: no number, no normalising
    return _numbers(sentence, words=lang == "zh")


def _canonical(number: str) -> str:
    return number.rstrip("0").rstrip(".") if "." in number else number.lstrip("0") or "0"


def _asked(
    memo: dict[str, frozenset[str]], key: str, of: Callable[[str], frozenset[str]], question: str
) -> frozenset[str]:
    """``of(question)``, computed the first time a sentence needs it."""
    if key not in memo:
        memo[key] = of(question)
    return memo[key]


def _clip_claim(text: str) -> str:
    return text if len(text) <= _MAX_CLAIM_CHARS else text[: _MAX_CLAIM_CHARS - 1] + "…"


def _claim_sentences(output: str, lang: str) -> list[str]:
    regex = _CLAIM_SENT_RE if lang == "zh" else _EN_CLAIM_SENT_RE
    return [m.group().strip() for m in regex.finditer(output) if m.group().strip()]


def claim_check(output: str, source: str, question: str = "") -> list[dict[str, str]]:
    """The answer's sentences as claims, each with a verdict against ``source``.

    A sentence stating a number that neither the source nor the question has is
    "contradicted"; else "supported" when at least half of its distinct character 3-grams occur
    in the source or the question (a case's facts may be repeated), else "not_in_source". With
    no source every claim is "supported": a reference answer is a guide, not a source (an
    answer may rightly say more than it), and a judge checking against its own knowledge finds
    a plausible answer plausible; the simulator has no knowledge to do better.
    """
    lang = detect_language(output)
    claims: list[dict[str, str]] = []
    has_source = bool(source.strip())
    doc_grams = _source_grams(source) if has_source else frozenset()
    doc_numbers = _source_numbers(source) if has_source else frozenset()
    # The question's grams and numbers, computed only when a sentence needs them; never joined
    # with the document's (a union would copy the document's set for every sample).
    asked: dict[str, frozenset[str]] = {}
    for sentence in _claim_sentences(output, lang):
        own = _grams(sentence)
        if len(own) < _MIN_CLAIM_GRAMS:
            continue  # "是的。", a list marker: not a claim
        verdict, evidence = "supported", ""
        if has_source:
            need = _SUPPORTED_SHARE * len(own)
            new = _claimed_numbers(sentence, lang) - doc_numbers
            if new:
                new -= _asked(asked, "numbers", _numbers, question)
            hits = 0 if new else len(own & doc_grams)
            if not new and hits < need:
                hits = len(own & doc_grams | own & _asked(asked, "grams", _grams, question))
            if new:
                verdict = "contradicted"
            elif hits < need:
                verdict = "not_in_source"
            elif sentence in source and len(sentence) <= _MAX_EVIDENCE_CHARS:
                evidence = sentence
        claims.append({"claim": _clip_claim(sentence), "evidence": evidence, "verdict": verdict})
        if len(claims) == _MAX_CLAIMS:
            break
    return claims


def _standalone(instruction: str, output: str, input_text: str, rng: random.Random) -> int:
    """2 for a question pointing at a text the student lacks, 5 for an answer doing so."""
    found = find_referential(instruction, output, input=input_text)
    if found is not None:
        return 2 if found.details.get("where") == "instruction" else 5
    return min(10, max(7, round(9 + rng.uniform(-1.5, 1.0))))


_REASONS = {
    "good": (
        "回答忠实于资料，内容完整、条理清晰。",
        "Faithful to the document, complete and clear.",
    ),
    "weak": (
        "回答基本正确，但不够完整，部分表述含糊。",
        "Mostly correct but incomplete; some statements are vague.",
    ),
    "short": ("回答为空或过短，没有回应指令。", "The answer is empty or too short to help."),
    "contradicted": (
        "回答中有与资料相矛盾的内容（数字或条文不符）。",
        "A claim contradicts the document (a number or provision differs).",
    ),
    "not_in_source": (
        "回答中有资料没有的内容。",
        "The answer states something the document does not say.",
    ),
    "referential": (
        "问题依赖学生看不到的资料，不能独立成立。",
        "The question points at a text the student will not have.",
    ),
}


def _analysis(claims: list[dict[str, str]], standalone: int, zh: bool) -> str:
    n = Counter(c["verdict"] for c in claims)
    if zh:
        text = (
            f"逐条核对了{len(claims)}条陈述：{n['supported']}条有资料支持，"
            f"{n['not_in_source']}条资料中没有，{n['contradicted']}条与资料矛盾。"
        )
        return text + ("问题可以独立理解。" if standalone > 5 else "问题离开资料无法理解。")
    text = (
        f"Checked {len(claims)} claims: {n['supported']} supported, "
        f"{n['not_in_source']} not in the source, {n['contradicted']} contradicted."
    )
    return text + (
        " The question stands alone." if standalone > 5 else " The question needs the source."
    )


def question_samples(
    model: str,
    document: str,
    n: int,
    *,
    header: str = "",
    previous: Sequence[str] = (),
    cover: tuple[str, str] | None = None,
    cover_articles: bool = False,
    mix: QuestionMix | None = None,
) -> list[dict[str, Any]]:
    """Two-stage step 1: the questions ``generation_samples`` would ask, without answers."""
    items = generation_samples(
        model,
        document,
        n,
        header=header,
        previous=previous,
        cover=cover,
        cover_articles=cover_articles,
        mix=mix,
    )
    return [
        {"question_type": s.get("question_type"), "difficulty": s.get("difficulty"),
         "question": s["instruction"]}
        for s in items
    ]  # fmt: skip


def _bigrams(text: str) -> set[str]:
    t = _norm_q(text)
    return {t[i : i + 2] for i in range(len(t) - 1)}


def answer_sample(model: str, document: str, question: str, *, header: str = "") -> dict[str, Any]:
    """Two-stage step 2: the answer to ``question`` (the article it cites, else the closest)."""
    lang = detect_language(document)
    units = _units(document, None, False)
    if not units:
        none = (
            "没有提供足够的内容，无法给出具体回答。"
            if lang == "zh"
            else "There is not enough information to answer this."
        )
        return {"evidence": [], "answer": none}
    cited = {(r.kind, r.number, r.sub) for r in find_article_refs(question)}
    target = [u for u in units if u.label and any(
        (r.kind, r.number, r.sub) in cited for r in find_article_refs(u.label))]  # fmt: skip
    if not target:
        words = _bigrams(question)
        target = [max(units, key=lambda u: len(words & _bigrams(document[u.start : u.end])))]
    answer, evidence = _answer(document, target[:2], _subject(header, lang), lang)
    return {"evidence": evidence, "answer": answer}


def generation_reply(
    model: str,
    user: str,
    *,
    defects: Callable[[list[dict[str, Any]], str], list[dict[str, Any]]] | None = None,
) -> str | None:
    """The reply to a generation, question or answer prompt as JSON text; None for other prompts.

    ``defects`` (the simulator's ``--defect-rate``) may spoil generated samples, given the
    samples and the document.
    """
    if (
        SAMPLE_COUNT_MARKER not in user
        and QUESTION_COUNT_MARKER not in user
        and ("<question>" not in user)
    ):
        return None
    req = parse_generation_request(user)
    if req is None:
        return None
    if req.kind == "answer":
        reply: Any = answer_sample(model, req.document, req.question, header=req.header)
    else:
        make = generation_samples if req.kind == "samples" else question_samples
        items = make(
            model,
            req.document,
            req.n,
            header=req.header,
            previous=req.previous,
            cover=req.cover,
            cover_articles=req.cover_articles,
            mix=req.mix,
        )
        if defects is not None and req.kind == "samples":
            items = defects(items, req.document)
        reply = {"samples" if req.kind == "samples" else "questions": items}
    return json.dumps(reply, ensure_ascii=False)


def evaluation_reply(
    model: str,
    instruction: str,
    output: str,
    *,
    score_bias: float = 0.0,
    document: str = "",
    input_text: str = "",
) -> dict[str, Any]:
    """A judge's reply to one sample, in the eval-v2 shape: claims, analysis, reason, scores.

    Accuracy follows the claim check against ``document`` (a reference answer, a guide that may
    be wrong, is not checked against: see ``claim_check``): a contradicted claim caps it at 2,
    one not in the source at 5 (the rubric's anchors); standalone follows the referential check;
    the rest is a shared per-sample quality plus small per-model noise.
    ``score_bias`` is added to every score last.
    """
    u = unit("quality", instruction, output)
    text_len = len(output.strip())
    if text_len < 5:
        quality, grade = 1.5 + 1.5 * u, "short"
    elif u < 0.8:
        quality, grade = 7.4 + 2.2 * (u / 0.8), "good"
    else:
        quality, grade = 5.0 + 1.8 * ((u - 0.8) / 0.2), "weak"
    rng = random.Random(seed_of("judge", model, instruction, output))
    shift = rng.uniform(-0.5, 0.5)
    raw: dict[str, float] = {}
    for dim in _DIMENSIONS[:5]:
        base = quality + shift + rng.uniform(-0.8, 0.8)
        if dim == "safety" and grade != "short":
            base += 1.0
        raw[dim] = round(min(10.0, max(0.0, base)))
    claims = claim_check(output, document, f"{instruction}\n{input_text}")
    verdicts = {c["verdict"] for c in claims}
    if "contradicted" in verdicts:
        raw["accuracy"] = min(raw["accuracy"], 2)
        grade = "contradicted" if grade != "short" else grade
    elif "not_in_source" in verdicts:
        raw["accuracy"] = min(raw["accuracy"], 5)
        grade = "not_in_source" if grade != "short" else grade
    raw["standalone"] = _standalone(instruction, output, input_text, rng)
    if raw["standalone"] <= 2 and grade in ("good", "weak"):
        grade = "referential"
    scores: dict[str, float] = {}
    for dim in _DIMENSIONS:
        score = min(10.0, max(0.0, raw[dim] + score_bias))
        scores[dim] = int(score) if score == int(score) else round(score, 2)
    zh = detect_language(instruction + output) == "zh"
    return {
        "claims": claims,
        "analysis": _analysis(claims, raw["standalone"], zh),
        "reason": _REASONS[grade][0 if zh else 1],
        "scores": scores,
    }


def batch_faults(content: str, seed: str) -> str:
    """A batched judging reply with one entry left out and another spoiled (3+ entries).

    The two entries are chosen by ``seed`` (the simulator's seed and the prompt), so a test
    knows them from the reply it would otherwise get; the spoiled one scores accuracy 2017,
    which no reading accepts (wire.md: a judge without a schema replied that).
    """
    try:
        data = json.loads(content)
    except ValueError:
        return content
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list) or len(results) < 3:
        return content
    rng = random.Random(seed_of("judge-batch-faults", seed))
    omit, spoil = rng.sample(range(len(results)), 2)
    bad = dict(results[spoil])
    bad["scores"] = {**(bad.get("scores") or {}), "accuracy": 2017}
    kept = [bad if i == spoil else r for i, r in enumerate(results) if i != omit]
    return json.dumps({**data, "results": kept}, ensure_ascii=False)


_MALFORMED = (
    "I cannot produce JSON right now.",
    "抱歉，我暂时无法按要求输出。",
    "Sure! The first sample is about the rules and the answer is that they apply.",
)


def _trailing_comma(content: str) -> str:
    return content[:-1] + ",\n" + content[-1] if content[-1:] in "]}" else content


def messy_wrap(content: str, key: bytes) -> str:
    """Wrap JSON content the way real models do; ``key`` picks the variant deterministically."""
    variant = key[0] % 6
    if variant == 1:
        return f"```json\n{content}\n```"
    if variant == 2:
        think = "Let me read the material carefully and pick the key points."
        return f"<think>\n{think}\n</think>\n\n{content}"
    if variant == 3:
        return f"Here is the JSON you asked for:\n\n{content}\n\nI hope this helps!"
    if variant == 4:
        return _trailing_comma(content)
    if variant == 5:
        return f"思考过程省略。</think>\n```json\n{_trailing_comma(content)}\n```\n以上是结果。"
    return content


def embed_text(text: str) -> list[float]:
    """256-dim L2-normalised signed hash of character 3-grams (near-duplicates -> high cosine)."""
    vec = [0.0] * EMBED_DIM
    t = f" {text.lower()} "
    grams = _EMBED_GRAMS
    if len(grams) > 500_000:
        grams.clear()
    for i in range(max(1, len(t) - 2)):
        g = t[i : i + 3]
        b = grams.get(g)
        if b is None:
            b = grams[g] = zlib.crc32(g.encode("utf-8", "surrogatepass")) & 511
        vec[b & 255] += 1.0 if b & 256 else -1.0
    norm = math.sqrt(sum(x * x for x in vec))
    if norm == 0.0:
        vec[0] = 1.0
        return vec
    return [x / norm for x in vec]


_EMBED_GRAMS: dict[str, int] = {}
