"""Non-answers: "资料中没有提及", "I cannot determine", or a deflection with nothing else said."""

from __future__ import annotations

import re

from .base import Finding, detect_lang, nfkc, squash, strip_quoted
from .numerals import normalize_numerals

_ZH_NON_ANSWER = re.compile(
    # "资料中没有提及", "文中未说明", "现有信息无法确定", "所给材料并未给出"
    r"(?:资料|材料|文中|原文|上文|文本|文章|所给|提供的|现有|给定的|已知|条文|法条|上述内容|以上内容"
    r"|内容)[^。！？\n]{0,8}?(?:并|均|都|也)?(?:没有|未|无|不)(?:有)?(?:提及|提到|说明|涉及|包含|给出|记载|"
    r"明确|列出|显示|介绍|相关|具体|关于|足够|充分|直接)"
    # "我无法回答", "我没有找到…的相关信息"
    r"|(?:我|笔者|本人)(?:目前|暂时|并|实在|也)?(?:无法|不能|没法|没有办法|难以)(?:回答|确定|判断|提供|给出"
    r"|找到|得知|解答|作答|查到|说明|告诉)"
    r"|(?:我|笔者|本人)(?:目前|暂时|并|实在|也)?(?:没有找到|没能找到|未能找到|未找到|查不到|没有查到|未能查到)"
    r"|无法(?:回答|作答|给出(?:答案|准确|具体|明确)|确定答案|判断答案|提供(?:答案|准确|具体|相关)|得知|从中)"
    r"|(?:没有|未能|未|无法|没能)(?:在[^。，！？\n]{0,12})?(?:找到|查到|检索到|查询到|获取到)"
    r"|(?:我|笔者)[^。，！？\n]{0,4}没有(?:这方面|相关|有关|足够|具体)的?(?:信息|资料|数据|知识|内容)"
    r"|超出(?:了)?(?:我的|本)?(?:知识|能力|回答|服务)?范围"
    r"|不得而知|无从得知|无从判断|无从知晓|尚不明确|暂无相关|没有相关(?:信息|资料|内容|说明)"
    r"|信息不足|资料不足|没有足够(?:的)?(?:信息|资料)"
)
_ZH_DEFLECT = re.compile(
    r"请?(?:您)?(?:咨询|询问|联系|查阅|参阅|参考)(?:专业人士|律师|专业律师|保险公司|客服|相关部门"
    r"|有关部门|专业机构|当地|相关|有关)[^。！？]{0,16}"
    r"|建议(?:您)?(?:咨询|联系|询问|查阅|参阅)[^。！？]{0,16}|视(?:具体)?情况而定|具体情况具体分析"
    # "请参照您所在小区的合同": sends the reader to a document of their own
    r"|请(?:您)?(?:参照|参考|查阅|参阅|查看|核实|确认|咨询|询问|联系)(?:您|你|所在|当地|自己|具体)"
    r"[^。！？]{0,20}"
    # talk about the question instead of an answer: "您的问题是……", "这是一个关于……的问题"
    r"|(?:您|你)(?:的问题|问的|想问的)是[^。！？]{0,40}|(?:这|此)(?:是|属于)(?:一个)?(?:关于|有关)[^。！？]{0,30}的"
    r"问题|(?:这|此)是一个(?:复杂|很复杂|比较复杂|专业|敏感)的问题"
    # "这取决于……": what it depends on, as a clause of its own
    r"|(?:^|(?<=[。！？，,；;]))[^。！？，,；;：:]{0,12}?(?:要|需要)?(?:取决于|视[^。！？，,]{1,12}而定)"
    r"[^。！？，,；;]{0,24}(?=[。！？，,；;]|$)"
    r"|(?:难以|无法|不能)一概而论|请以[^。！？]{0,16}为准"
    # an estimate word is a deflection only as a clause of its own ("不一定。"), not inside one
    # ("闪光的不一定都是金子", "尽管这取决于……")
    r"|(?:^|(?<=[。！？，,；;]))\s*(?:不一定|看情况|因人而异|这(?:要)?(?:取决于|看)[^。！？，,]{0,10})"
    r"\s*(?=[。！？，,；;]|$)"
)
# An inability word in a short answer ("根据现有信息，无法判断。"); in a long answer it may be law
# text ("保险人对无法确定的部分……").
_CLAUSE_END = re.compile(r"(?<=[。！？!?；;.])\s*|\n+")
_ZH_SHORT_NON_ANSWER = re.compile(
    r"(?:无法|难以|不能|没法)(?:判断|确定|回答|得知|说明|给出|提供|作答)|我(?:也)?(?:不太?清楚|不知道|不确定)"
)
_EN_NON_ANSWER = re.compile(
    r"\b(?:the|this)\s+(?:provided\s+|given\s+|above\s+|available\s+|source\s+|supplied\s+)?"
    r"(?:text|passage|document|excerpt|extract|context|information|material|materials|source"
    r"|snippet|documentation|docs|readme|page|guide|manual|section|article)\s+(?:does\s+not"
    r"|doesn't|did\s+not|do\s+not|don't|fails\s+to|is\s+silent|contains\s+no|provides\s+no"
    r"|gives\s+no|says\s+nothing|makes\s+no)"
    r"|\b(?:is|are|was|were)\s+not\s+(?:available|provided|included|found|given|present|covered"
    r"|mentioned|specified|stated)\s+in\s+the\s+(?:provided\s+|given\s+|available\s+)?(?:text"
    r"|passage|document|excerpt|context|material|information|source|data)"
    r"|\bno\s+(?:relevant\s+|specific\s+|such\s+|further\s+)?(?:information|details?|mention)\s+"
    r"(?:is\s+|was\s+)?(?:given|provided|available|found|about|on|regarding|in)"
    r"|\bnot\s+(?:specified|mentioned|stated|provided|addressed|covered|given|included|discussed"
    r"|described)\s+in\s+the\s+(?:provided\s+|given\s+)?(?:text|passage|document|excerpt|context"
    r"|material|information|source)"
    r"|\bI(?:\s+|(?='))(?:cannot|can't|can\s+not|am\s+unable\s+to|'m\s+unable\s+to|am\s+not\s+able\s+to"
    r"|'m\s+not\s+able\s+to|do\s+not|don't|could\s+not|couldn't|was\s+unable\s+to)\s+(?:determine"
    r"|answer|find|say|tell|provide|confirm|locate|identify|access|be\s+certain|be\s+sure"
    r"|know(?=\s*[.!,]|\s*$|\s+(?:the|this|that|enough|whether|how|what|which|if|about|where|when"
    r"|who|why|for\s+sure)\b))\b"
    r"|\bI(?:\s+|(?='))(?:have|had|'ve)\s+no\s+(?:information|knowledge|data|details)\b"
    r"|\bI(?:\s+|(?='))(?:do\s+not|don't|did\s+not|didn't)\s+have\s+(?:enough|sufficient|the|any)"
    r"\s+(?:\w+\s+)?(?:context|information|details|data|knowledge)\b"
    r"|\b(?:information|details|answer|context|data)\b[^.]{0,40}\b(?:is|are)\s+not\s+(?:included"
    r"|provided|available|given|present|specified|stated|mentioned)\s*[.!]?\s*$"
    r"|\b(?:cannot|can't|could\s+not|unable\s+to)\s+be\s+(?:determined|answered|established"
    r"|found)\s+(?:from|based|with|given)"
    r"|\b(?:not|insufficient|isn't)\s+enough\s+information\b|\binsufficient\s+information\b"
    r"|\bimpossible\s+to\s+(?:say|determine|tell|know)\b|\bbeyond\s+(?:my|the\s+scope\s+of\s+my)"
    r"\s+(?:knowledge|ability|abilities|scope)\b"
    r"|\bthere\s+is\s+no\s+(?:information|mention|indication)\b",
    re.IGNORECASE,
)
_EN_DEFLECT = re.compile(
    r"(?:^|(?<=[.!?;,]))\s*it\s+(?:all\s+)?depends\b[^.]{0,40}|\b(?:please\s+)?(?:consult|contact|ask|see|refer\s+to)"
    r"\s+(?:a|an|your|the)\s+(?:qualified\s+|licensed\s+|relevant\s+)?(?:lawyer|attorney"
    r"|professional|legal\s+professional|expert|advisor|adviser|insurer|agent|authorities"
    r"|statute|law)\b[^.]{0,40}|\bseek\s+(?:professional\s+|legal\s+)?advice\b[^.]{0,30}"
    r"|\b(?:best|better|advisable|recommended)\s+to\s+(?:ask|consult|contact|check\s+with"
    r"|reach\s+out\s+to)\b[^.]{0,60}|\bopen\s+an?\s+(?:issue|ticket)\b[^.]{0,40}"
    r"|\b(?:is|are)\s+(?:a\s+|an\s+)?(?:nuanced|complex|complicated|tricky|subtle|difficult)"
    r"\s+(?:topic|question|issue|matter|area|subject)\b[^.]{0,40}"
    r"|\b(?:your|the)\s+question\s+(?:is|asks)\b[^.]{0,60}|\byou(?:'re|\s+are)\s+asking\b[^.]{0,60}"
    r"|\bvaries\s+(?:by|from)\s+case\s+to\s+case\b|\bdepends\s+on\s+the"
    r"\s+(?:circumstances|situation|case)\b",
    re.IGNORECASE,
)


# A question asking for an amount, a period or a default value, and what answers one.
_ZH_ASKS_AMOUNT = re.compile(
    r"多久|多长时间|多长|多少|几(?:天|日|个|年|倍|次|项|名|人|种|周|小时|分钟)[？?吗呢]|期限是|最晚|最长|最多"
)
_EN_ASKS_AMOUNT = re.compile(
    r"\bhow\s+(?:long|many|much|often|old)\b|\bwhat\s+is\s+the\s+default\b"
    r"|\bwhat\s+(?:percentage|fraction|proportion|age)\b",
    re.IGNORECASE,
)
_AMOUNT = re.compile(
    r"\d|\bNone\b|(?i:\b(?:unlimited|forever|indefinitely|immediately|never|once|twice"
    r"|no\s+limit)\b)|半|无限|不限|立即|立刻|合理|及时|随时|不得超过|以内"
)


# "one" as a pronoun ("when you have not configured one yourself"), 一个 as an article ("没有另外
# 设置一个的时候") is no amount.
_PRONOUN_ONE = re.compile(
    r"\bone\b(?!\s+(?:second|minute|hour|day|week|month|year|time|retr|attempt|request"
    r"|connection|percent|dollar|cent)|\s*[-/])|一个(?!月|小时|工作日|星期|季度)",
    re.IGNORECASE,
)


def _circular(question: str, text: str) -> bool:
    """An answer to "how long/how many/what is the default" that gives no amount and mostly
    repeats the question's own words ("The default timeout is the timeout applied by default")."""
    from .support import support_tokens

    zh = detect_lang(question, text) == "zh"
    asks = (_ZH_ASKS_AMOUNT if zh else _EN_ASKS_AMOUNT).search(question)
    if not asks or _AMOUNT.search(normalize_numerals(_PRONOUN_ONE.sub(" ", text))):
        return False
    lang = "zh" if zh else "en"
    toks = support_tokens(text, lang)
    asked = set(support_tokens(question, lang))
    limit = 40 if zh else 30
    return 4 <= len(toks) <= limit and sum(t in asked for t in toks) / len(toks) >= 0.5


def find_non_answer(output: str, question: str = "") -> Finding | None:
    """An answer that says it cannot answer, or only deflects ("请咨询专业人士", "it depends"),
    or (given the ``question``) answers "how long?" by repeating the question without an amount.
    """
    text = strip_quoted(nfkc(output)).strip()
    if not text:
        return None
    m = _ZH_NON_ANSWER.search(text) or _EN_NON_ANSWER.search(text)
    if m:
        return Finding(f"non-answer: {m.group()!r}")
    if len(squash(text)) <= 30:
        m = _ZH_SHORT_NON_ANSWER.search(text)
        if m:
            return Finding(f"non-answer: {m.group()!r}")
    # A deflection is a non-answer only when nothing else is said: the sentences left once the
    # deflecting ones are gone hold (almost) no content.
    zh = detect_lang(text) == "zh"
    sentences = [p for p in _CLAUSE_END.split(text) if p.strip()]
    for regex in (_ZH_DEFLECT, _EN_DEFLECT):
        if not regex.search(text):
            continue
        if regex is _ZH_DEFLECT:
            # Chinese deflections are phrases ("这取决于……，请参照……"): what is left without them.
            rest = regex.sub("", text)
        else:
            rest = "".join(p for p in sentences if not regex.search(p))
        if len(squash(rest)) < (8 if zh else 20):
            return Finding(f"non-answer: only deflects ({text[:40]!r})")
    if question and _circular(nfkc(question), text):
        return Finding(f"non-answer: repeats the question without an amount ({text[:40]!r})")
    return None
