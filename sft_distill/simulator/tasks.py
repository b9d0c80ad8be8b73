"""Replies to the modes' task prompts (``prompts.task_messages``): kind -> (model, fields) -> text.

Each is a deterministic function of its arguments, like the generation replies: plausible,
distinct topic names and questions derived from the topic path (never one the prompt lists as a
sibling or as already made, so tests can check the client-side rules), rephrasings and answers.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable

from ..llm.prompts import detect_language
from .content import _tweak
from .seeds import seed_of, unit

TaskResponder = Callable[[str, dict[str, str]], str]


TASK_RESPONDERS: dict[str, TaskResponder] = {}


_TOPIC_WORDS_ZH = (
    "基础知识",
    "历史发展",
    "规则",
    "技术要领",
    "战术",
    "装备",
    "训练方法",
    "赛事",
    "代表人物",
    "文化",
    "科学原理",
    "健康与安全",
    "组织管理",
    "发展趋势",
    "教育",
    "产业经济",
    "媒体传播",
    "心理",
    "常见误区",
    "案例分析",
)


_TOPIC_WORDS_EN = (
    "Basics",
    "History",
    "Rules",
    "Techniques",
    "Tactics",
    "Equipment",
    "Training",
    "Competitions",
    "Key Figures",
    "Culture",
    "Science",
    "Health and Safety",
    "Organisation",
    "Trends",
    "Education",
    "Economics",
    "Media",
    "Psychology",
    "Common Mistakes",
    "Case Studies",
)


_TOPIC_QUESTIONS_ZH = (
    "什么是{t}？它主要包括哪些内容？",
    "{t}的基本原理是什么？",
    "{t}有哪些常见的类型或分类？",
    "{t}在实际中有哪些典型应用？",
    "学习{t}时常见的误区有哪些？",
    "{t}的发展历程是怎样的？",
    "{t}与相关概念有何区别和联系？",
    "评价{t}的水平应关注哪些指标？",
    "{t}目前面临哪些主要挑战？",
    "请举例说明{t}的一个典型案例。",
    "初学者应如何入门{t}？",
    "{t}涉及哪些重要的规则或标准？",
)


_TOPIC_QUESTIONS_EN = (
    "What is {t}, and what does it cover?",
    "What are the basic principles of {t}?",
    "What are the common types or categories of {t}?",
    "Where is {t} typically applied in practice?",
    "What are common misconceptions when learning about {t}?",
    "How has {t} developed over time?",
    "How does {t} differ from related concepts?",
    "Which criteria matter when evaluating {t}?",
    "What are the main challenges facing {t} today?",
    "Can you give a typical example that illustrates {t}?",
    "How should a beginner get started with {t}?",
    "Which important rules or standards apply to {t}?",
)


_TOPIC_ANSWER_ZH = (
    "{t}是{p}中的一个重要方面，理解它首先要掌握其基本概念和适用范围。",
    "从实践角度看，{t}通常涉及规范、方法和经验三个层面，三者相互配合、缺一不可。",
    "常见的误区是只关注{t}的表面现象，而忽视其背后的原理和适用条件。",
    "建议先系统学习{t}的基础知识，再通过具体案例和练习逐步加深理解。",
    "{t}也在不断发展，应关注相关领域的最新研究成果和行业标准。",
    "评价{t}时，可以从有效性、安全性和可持续性几个维度进行比较。",
    "在{p}的整体框架下，{t}与其他分支相互联系，需要放在全局中理解。",
    "历史经验表明，对{t}的认识往往随着实践的积累而不断深化。",
)


_TOPIC_ANSWER_EN = (
    "{t} is an important part of {p}; understanding it starts with its basic concepts and scope.",
    "In practice, {t} involves rules, methods and experience, which work together.",
    "A common mistake is to look only at the surface of {t} and ignore its principles and limits.",
    "It helps to learn the fundamentals of {t} first and then deepen them with worked examples.",
    "{t} keeps evolving, so it is worth following recent research and current standards.",
    "When assessing {t}, compare effectiveness, safety and sustainability.",
    "Within {p} as a whole, {t} connects to the other branches and is best seen in context.",
    "Experience shows that understanding of {t} deepens as practice accumulates.",
)


def _topic_key(text: str) -> str:
    return re.sub(r"[\s\W_]+", "", text.casefold())


def _topic_fields(fields: dict[str, str]) -> tuple[list[str], int, str]:
    """(path, count, language) of a topic task prompt."""
    from ..llm.prompts import TOPIC_PATH_SEP

    path = [p for p in fields.get("path", "").split(TOPIC_PATH_SEP) if p] or ["topic"]
    try:
        n = max(0, int(fields.get("count", "1")))
    except ValueError:
        n = 1
    return path, n, detect_language(TOPIC_PATH_SEP.join(path))


def _fresh_items(candidates: Callable[[int], str], n: int, avoid: set[str]) -> list[str]:
    """The first ``n`` candidates whose keys are not in ``avoid`` (nor repeated)."""
    out: list[str] = []
    seen = set(avoid)
    k = 0
    while len(out) < n and k < 100 * (n + len(avoid) + 1):
        item = candidates(k)
        k += 1
        if _topic_key(item) not in seen:
            seen.add(_topic_key(item))
            out.append(item)
    return out


def topic_expand_reply(model: str, fields: dict[str, str]) -> str:
    """A JSON list of sub-topic names of the path's last topic, none among siblings/existing."""
    from ..llm.prompts import parse_topic_list

    path, n, lang = _topic_fields(fields)
    last = path[-1]
    # Names derive from the last word only, so they stay short however deep the tree goes.
    base = last.rsplit("之", 1)[-1] if lang == "zh" else last.split(" in ")[0]
    pool = _TOPIC_WORDS_ZH if lang == "zh" else _TOPIC_WORDS_EN
    words = [w for w in pool if w not in base] or list(pool)
    random.Random(seed_of("topic_expand", model, *path)).shuffle(words)

    def name(k: int) -> str:
        word = words[k % len(words)]
        round_ = k // len(words)
        if round_:
            word = f"{word}{round_ + 1}" if lang == "zh" else f"{word} {round_ + 1}"
        return f"{base}之{word}" if lang == "zh" else f"{word} in {base}"

    avoid = {
        _topic_key(x)
        for x in (
            *path,
            *parse_topic_list(fields.get("siblings", "")),
            *parse_topic_list(fields.get("existing", "")),
        )
    }
    return json.dumps(_fresh_items(name, n, avoid), ensure_ascii=False)


def topic_questions_reply(model: str, fields: dict[str, str]) -> str:
    """A JSON list of questions about the path's last topic, none among the existing ones."""
    from ..llm.prompts import parse_topic_list

    path, n, lang = _topic_fields(fields)
    templates = list(_TOPIC_QUESTIONS_ZH if lang == "zh" else _TOPIC_QUESTIONS_EN)
    random.Random(seed_of("topic_questions", model, *path)).shuffle(templates)
    t = path[-1]

    def question(k: int) -> str:
        if k < len(templates):
            return templates[k].format(t=t)
        if lang == "zh":
            return f"请从第{k - len(templates) + 1}个角度谈谈你对{t}的理解。"
        return f"From angle {k - len(templates) + 1}, what is your understanding of {t}?"

    avoid = {_topic_key(q) for q in parse_topic_list(fields.get("existing", ""))}
    return json.dumps(_fresh_items(question, n, avoid), ensure_ascii=False)


def topic_answer_reply(model: str, fields: dict[str, str]) -> str:
    """A few plain-text sentences about the question, naming its topic and quoting it."""
    path, _, _ = _topic_fields(fields)
    q = fields.get("question", "").strip()
    lang = detect_language(q + "".join(path))
    t, p = path[-1], path[0]
    pool = list(_TOPIC_ANSWER_ZH if lang == "zh" else _TOPIC_ANSWER_EN)
    rng = random.Random(seed_of("topic_answer", model, q, *path))
    joiner = "" if lang == "zh" else " "
    body = joiner.join(s.format(t=t, p=p) for s in rng.sample(pool, 3))
    core = q.rstrip("？?。.！! ")
    if lang == "zh":
        return (
            f"关于“{core}”，可以从以下几个方面来理解。{body}"
            "总之，回答这一问题需要把概念、原理与应用结合起来。"
        )
    return (
        f'Regarding "{core}", several points matter. {body} In short, a good answer combines '
        "concepts, principles and applications."
    )


TASK_RESPONDERS["topic_expand"] = topic_expand_reply


TASK_RESPONDERS["topic_questions"] = topic_questions_reply


TASK_RESPONDERS["topic_answer"] = topic_answer_reply


_ISET_REPHRASE_ZH = (
    "请问，{c}？",
    "能否说明一下：{c}？",
    "简单来说，{c}是怎么回事？",
    "请详细解释：{c}。",
    "从实际应用的角度看，应该如何理解{c}？",
    "用通俗的话讲一讲：{c}。",
    "假设你是初学者，该怎样理解{c}？",
    "请结合一个具体例子说明：{c}。",
)


_ISET_REPHRASE_EN = (
    "Explain: {c}.",
    "In simple terms, {c}?",
    "Could you clarify the following: {c}?",
    "From a practical point of view, {c}?",
    "For a beginner, how would you put this: {c}?",
    "In detail, {c}.",
    "Briefly, {c}?",
    "With a concrete example, {c}.",
)


_ISET_ANSWER_ZH = (
    "理解“{c}”，首先要弄清其中涉及的基本概念和适用范围。",
    "从实践角度看，{c}通常需要结合具体情形来判断，不能一概而论。",
    "常见的误区是只看{c}的字面意思，而忽视其背后的条件和例外。",
    "可以分三步来回答：先说明概念，再分析适用条件，最后给出结论。",
    "如果情况较复杂，建议对照相关规定或资料逐条核对。",
    "总的来说，{c}的关键在于把握要点、厘清前提，并注意与相近情形的区别。",
    "举例来说，在典型情形下，{c}的结论通常比较明确；在边界情形下则需要具体分析。",
    "回答时应当条理清楚、依据充分，避免笼统的表述。",
)


_ISET_ANSWER_EN = (
    "Understanding {c} starts with its basic concepts and where they apply.",
    "In practice, {c} depends on the specific situation and cannot be judged in general.",
    "A common mistake is to read {c} literally and ignore its conditions and exceptions.",
    "A good answer has three steps: define the terms, check the conditions, then conclude.",
    "When the case is complex, check the relevant rules or sources point by point.",
    "Overall, the key to {c} is to grasp the main points and state the premises clearly.",
    "For example, in a typical case the answer to {c} is clear; edge cases need analysis.",
    "The answer should be clear and well supported, avoiding vague statements.",
)


_ISET_QUOTES = "“”\"'「」『』‘’"


_ISET_TRAIL = "？?。.！!；;：:，, "


_ISET_QUOTED_RE = re.compile(r'[“"「『]([^”"」』\n]{4,})[”"」』]')


_ISET_AFFIXES = tuple(
    (t.split("{c}")[0], t.split("{c}")[1]) for t in _ISET_REPHRASE_ZH + _ISET_REPHRASE_EN
)


def _iset_core(instruction: str, lang: str) -> str:
    """The subject of an instruction: its quoted part, or the text after a colon, or itself
    without one of our rephrasing templates (so rephrasing a rephrasing does not stack them)."""
    text = instruction.strip().split("\n\n")[0]  # a ShareGPT human turn: instruction + input
    quoted = _ISET_QUOTED_RE.search(text)
    if quoted:
        text = quoted.group(1)
    else:
        for prefix, suffix in _ISET_AFFIXES:
            if text.startswith(prefix) and prefix and len(text) > len(prefix) + 4:
                text = text[len(prefix) :]
                if suffix and text.endswith(suffix):
                    text = text[: -len(suffix)]
                break
        else:
            for sep in ("：", ": "):
                head, found, tail = text.rpartition(sep)
                if found and head and len(tail.strip(_ISET_QUOTES + _ISET_TRAIL)) >= 4:
                    text = tail
                    break
    core = text.strip().strip(_ISET_QUOTES + _ISET_TRAIL).strip(_ISET_QUOTES)
    core = core.rstrip("…") or instruction.strip()
    if lang == "en" and core[:1].isupper() and core[1:2].islower():
        core = core[0].lower() + core[1:]
    return core


def _iset_key(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.casefold())


def iset_rephrase_reply(model: str, fields: dict[str, str]) -> str:
    """A JSON list of ``count`` distinct rephrasings, none equal to the instruction.

    About one reply in five makes its last rephrasing the instruction with one character
    changed, so the augment mode's near-copy check has work.
    """
    instruction = fields.get("instruction", "").strip()
    try:
        n = max(0, int(fields.get("count", "1")))
    except ValueError:
        n = 1
    lang = detect_language(instruction + fields.get("input", ""))
    core = _iset_core(instruction, lang)
    templates = _ISET_REPHRASE_ZH if lang == "zh" else _ISET_REPHRASE_EN
    t0 = random.Random(seed_of("iset_rephrase", model, instruction)).randrange(len(templates))
    # Compared without case, spaces and punctuation: "Explain: x." must not repeat "Explain: x?"
    seen = {_iset_key(instruction)}
    out: list[str] = []
    k = 0
    while len(out) < n:
        text = templates[(t0 + k) % len(templates)].format(c=core)
        if k >= len(templates):
            text += f"（{k + 1}）" if lang == "zh" else f" ({k + 1})"
        k += 1
        if _iset_key(text) not in seen:
            seen.add(_iset_key(text))
            out.append(text)
    if n >= 2 and unit("iset_rephrase_copy", model, instruction) < 0.2:
        out[-1] = _tweak(instruction)
    return json.dumps(out, ensure_ascii=False)


def iset_answer_reply(model: str, fields: dict[str, str]) -> str:
    """A plain-text answer of a few sentences naming the instruction's subject."""
    instruction = fields.get("instruction", "").strip()
    inp = fields.get("input", "").strip()
    lang = detect_language(instruction + inp)
    core = _iset_core(instruction, lang)
    pool = _ISET_ANSWER_ZH if lang == "zh" else _ISET_ANSWER_EN
    rng = random.Random(seed_of("iset_answer", model, instruction, inp))
    joiner = "" if lang == "zh" else " "
    body = joiner.join(s.format(c=core) for s in rng.sample(pool, 3))
    if lang == "zh":
        lead = f"结合所给材料（{inp[:40]}），" if inp else ""
        return f"关于“{core}”：{lead}{body}"
    lead = f'Based on the given input ("{inp[:60]}"), ' if inp else ""
    return f'On "{core}": {lead}{body}'


TASK_RESPONDERS["iset_rephrase"] = iset_rephrase_reply


TASK_RESPONDERS["iset_answer"] = iset_answer_reply
