"""What the simulator answers: a pure function of the prompt, the same on every rerun.

Generation prompts get samples drawn from the prompt's own text (Text2SQL pairs for a schema),
evaluation prompts deterministic scores, embedding requests unit vectors of hashed n-grams.
"""

from __future__ import annotations

import math
import random
import re
import zlib
from typing import Any

from ..llm.prompts import detect_language
from .seeds import seed_of, unit
from .text2sql import text2sql_samples

EMBED_DIM = 256


_DIMENSIONS = ("accuracy", "completeness", "logicality", "helpfulness", "safety")


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


def evaluation_reply(
    model: str, instruction: str, output: str, *, score_bias: float = 0.0
) -> dict[str, Any]:
    """Scores for one sample: shared per-sample quality plus small per-model noise, then bias."""
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
    reply: dict[str, Any] = {}
    for dim in _DIMENSIONS:
        base = quality + shift + rng.uniform(-0.8, 0.8)
        if dim == "safety" and grade != "short":
            base += 1.0
        score = min(10.0, max(0.0, round(min(10.0, max(0.0, base))) + score_bias))
        reply[dim] = int(score) if score == int(score) else round(score, 2)
    zh = detect_language(instruction + output) == "zh"
    reasons = {
        "good": (
            "回答忠实于资料，内容完整、条理清晰。",
            "Faithful to the document, complete and clear.",
        ),
        "weak": (
            "回答基本正确，但不够完整，部分表述含糊。",
            "Mostly correct but incomplete; some statements are vague.",
        ),
        "short": ("回答为空或过短，没有回应指令。", "The answer is empty or too short to help."),
    }
    reply["reason"] = reasons[grade][0 if zh else 1]
    return reply


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
