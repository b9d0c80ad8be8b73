"""What the simulator answers: a pure function of the prompt, the same on every rerun.

Generation prompts get samples drawn from the prompt's own text (Text2SQL pairs for a schema),
evaluation prompts a judge's reply (a crude claim check, then scores), embedding requests unit
vectors of hashed n-grams.
"""

from __future__ import annotations

import functools
import math
import random
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any

from ..config.defaults import DIMENSIONS
from ..llm.prompts import detect_language
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


_ZH_TEMPLATES = (
    "请解释以下规定：{h}",
    "根据资料，“{h}”是什么意思？",
    "资料中关于“{h}”是如何规定的？",
    "请结合资料说明：{h}",
    "在实际情况中，应如何理解“{h}”？",
    "请概括下面这段内容的要点：{h}",
)


_EN_TEMPLATES = (
    "Explain: {h}",
    'What does the material say about "{h}"?',
    'Summarise the passage that begins "{h}".',
    'According to the material, how should one understand "{h}"?',
    'In practice, what follows from "{h}"?',
    'Which rule in the material covers "{h}"?',
)


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


def generation_samples(model: str, document: str, n: int) -> list[dict[str, str]]:
    """``n`` samples drawn from the document's own sentences; a pure function of the arguments."""
    if sql_samples := text2sql_samples(model, document, n):  # a schema: Text2SQL pairs
        return sql_samples
    rng = random.Random(seed_of("gen", model, str(n), document))
    lang = detect_language(document)
    templates = _ZH_TEMPLATES if lang == "zh" else _EN_TEMPLATES
    spans = _sentences(document)
    m = len(spans)
    samples: list[dict[str, str]] = []
    if m == 0:
        for k in range(n):
            if lang == "zh":
                instr = f"请概述资料的第{k + 1}个要点。"
                out = "资料没有提供足够的内容，无法给出具体回答。"
            else:
                instr = f"Summarise key point {k + 1} of the material."
                out = "The material does not contain enough information to answer this."
            samples.append({"instruction": instr, "input": "", "output": out})
        return samples
    t0 = rng.randrange(len(templates))
    if m >= n:
        offset = rng.random()
        picks = [min(m - 1, int((k + offset) * m / n)) for k in range(n)]
    else:
        picks = [k % m for k in range(n)]
    for k, i in enumerate(picks):
        j = i + 1 if i + 1 < m else i - 1
        if k >= m and i > 0:  # reused sentence: use the other neighbour for variety
            j = i - 1
        start = min(spans[i][0], spans[j][0]) if j >= 0 else spans[i][0]
        end = max(spans[i][1], spans[j][1]) if j >= 0 else spans[i][1]
        sentence = document[spans[i][0] : spans[i][1]]
        template = templates[(t0 + k + k // len(templates)) % len(templates)]
        instr = template.format(h=_head(sentence, lang))
        if k >= len(templates) * max(m, 1):
            instr += f" ({k + 1})"
        inp = ""
        if i > 0 and rng.random() < 0.12:
            inp = document[spans[i - 1][0] : spans[i - 1][1]].strip()
        samples.append({"instruction": instr, "input": inp, "output": document[start:end].strip()})
    # About one reply in ten repeats a sample with a one-character change, so dedup has work.
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


def _cut(text: str) -> str:
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
        claims.append({"claim": _cut(sentence), "evidence": evidence, "verdict": verdict})
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
