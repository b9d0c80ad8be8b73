"""Deterministic checks of one generated sample, run before any judge is paid (zh and en).

Pure functions, no I/O. Each returns None when the sample passes, or a ``Finding`` with a short
reason and details:

- ``find_referential``: the question (or answer) leans on a text the student will never see
  ("根据上述资料", "本合同" with no product named, "according to the passage above").
- ``check_evidence``: the teacher's verbatim evidence quotes are in the chunk (fuzzy, NFKC,
  case, spaces and punctuation ignored).
- ``check_numbers``: a rule quantity, cited article or law of the answer that contradicts the
  source (``number_check``); a number the source merely lacks is not flagged.
- ``find_truncation``: the answer stops mid-sentence (or ``finish_reason`` was ``length``).
- ``find_non_answer``: "资料中没有提及", "I cannot determine", "请咨询专业人士" and nothing else,
  or (given the question) a "how long?" answered without an amount, repeating the question.
- ``find_unsupported``: an invented rule sentence (or rule quantity, or API name), or an answer
  restating another provision (``support_check``).

``quality_gates`` wraps each in a gate; ``benchmarks/bench_quality.py`` measures them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from .check_base import CJK, Finding, detect_lang, nfkc, squash, strip_quoted
from .number_check import Quantity, check_numbers, extract_quantities
from .numerals import normalize_numerals
from .provisions import is_case_question, target_passage
from .rule_gates import strip_code
from .support_check import find_unsupported, sentence_support

__all__ = [
    "EvidenceResult",
    "Finding",
    "Quantity",
    "check_evidence",
    "check_numbers",
    "detect_lang",
    "extract_quantities",
    "find_non_answer",
    "find_referential",
    "find_truncation",
    "find_unsupported",
    "is_case_question",
    "normalize_numerals",
    "quote_score",
    "sentence_support",
    "strip_quoted",
    "target_passage",
]


# =============================================================================== referential

# Nouns for "a text" (what a student does not have).
_ZH_DOC = (
    r"(?:文字|文本|文章|文段|段落|材料|资料|内容|条文|原文|片段|摘录|节选|选段|语段|段话|文件"
    r"|信息|章节|文献|篇章|这段|法条)"
)
_ZH_DEIXIS = [
    # 上述 / 上文 / 前文 / 下文 / 文中 / 原文 / 本文, not the words that contain them (基本文件).
    r"(?<![基根日资成样范版副账蓝标课脚读剧])本文(?![件化具])",
    r"(?<![论公作译英中日法韩德俄散课碑铭诗经正条])文中",
    r"上述|上文|前文|前述|下文|如上所述|原文(?!件)",
    r"(?:根据|依据|按照|结合|参照|基于|综合|对照|从|由|据|就)以上",
    rf"以上(?:{_ZH_DOC}|所述|所列|所说|规定|条款|几条|各条|两条|条款)",
    rf"(?:上面|下面|下列|下述|以下)(?:的|这|那|一)?(?:段|篇|则|份)?{_ZH_DOC}",
    r"上面(?:提到|所说|说的|讲的|列出|给出)",
    rf"(?:这|那|该|此|本)(?:一|几|两)?(?:段|篇|则|份|部分)(?:{_ZH_DOC}|话|中|里|内|所|提到|的内容)",
    rf"(?:这|那|该|此)(?:一|份|篇|则|段)?{_ZH_DOC}",
    rf"(?:所给|给定|给出|提供|所提供|所列|所附|附带)的?(?:{_ZH_DOC}|条款|规定|法条)",
    r"(?<![申请证明有关提交相关])(?:材料|资料|文本|文章|原文|文段|段落)(?:中|里|内)?"
    r"(?:提到|提及|指出|所述|显示|表明|记载|描述|所说|所讲|介绍|说明了?|列举|规定的|中的|里的"
    r"|说的|讲的|写的|提的|谈到|说到|写到|讲到)",
    r"作者(?:认为|指出|提到|说|写道|想要|想|表达|强调|主张|的观点|的态度|的意图|的看法)",
    # A place in the text: "此处所说的", "这里的“前款”", "同上".
    r"(?:此处|这里|该处|本处|此段|该段)(?:的|所|说|提|规定|指|列|中|讲|写)|同上|如上",
    # Parts of a text or an exercise: "如案例所述", "以上案例", "这份仲裁案例", "题干中".
    r"题干|本题|上一?题|前一?题|(?:这|该|此|本|上述|以上|上面|前面|前述|下面|下列|所给|给出的|如)"
    r"[一份个则段起项张]?[^，。？！\s的]{0,2}?(?:案例|例子|示例|表格|图表|事例)",
    # Provisions counted from where the reader is: 前款, 本款, 上一条.
    r"前款|上款|本款|该款|此款|前项|上项|本项|前条|上条|上一条|下一条|前两款|前三款|前几条",
]
_ZH_DEIXIS_RE = re.compile("|".join(f"(?:{p})" for p in _ZH_DEIXIS))
# The answer referring to "the text": only unambiguous forms ("上述规定" in an answer quotes law).
_ZH_SAYS = r"(?:提到|提及|指出|所述|所说|规定|说明|没有|未|并未|明确|写道|列出|显示|表明|记载|描述)"
_ZH_ANSWER_DEIXIS = re.compile(
    rf"(?<![论公作译英中日法韩德俄散课碑铭诗经正条])文中{_ZH_SAYS}"
    rf"|(?<![基根日资成样范版副账蓝标课脚读剧])本文(?:中|里)?{_ZH_SAYS}|上文|前文"
    rf"|原文(?:中|里)?{_ZH_SAYS}"
    rf"|(?:上述|以上|所给|给定|所提供|提供的)(?:{_ZH_DOC})(?:中|里)?{_ZH_SAYS}"
    rf"|(?:根据|依据|结合|按照)(?:上述|以上|所给|给定|所提供|提供的)?(?:{_ZH_DOC})"
    r"(?:[，,]|来看|可知|所述)"
    rf"|从(?:{_ZH_DOC})(?:来看|可知|中可以看出|中可知)"
    r"|(?<![申请证明有关提交相关])(?:材料|资料|文本|文章|文段|段落)(?:中|里)(?:提到|提及|指出|所述|"
    r"显示|表明|记载|描述|没有|未|并未)"
)
# 本/该/此/这 + a legal or contract noun: referential unless the question names the thing.
_ZH_LEGAL_NOUN = (
    r"(?:判决书|裁定书|判决|裁定|通知书|说明书|报告|文件|公告|清单"
    r"|合同|条款|保险单|保单|保险|法律|法规|法典|法|条例|规定|办法|细则|解释|须知|声明|协议|产品"
    r"|计划|险种|附加险|主险|章程|规则|政策|通知|决定|章|节|条|款)"
)
_ZH_THIS_NOUN = re.compile(
    rf"(?<![基根日资成样范版副账蓝标课脚读剧原文])(本|该|此|这(?:一|份|个|款|项|部|条|种)?)"
    rf"({_ZH_LEGAL_NOUN})(?![人件院律关系务方面者费率额金]|所(?!说|称|述|列|指|规定))"
)
# A named law or product in the question makes 本合同 / 本法 / 该条款 unambiguous.
_ZH_NAMED = re.compile(
    r"《[^》]{2,}》|“[^”]{2,}”|「[^」]{2,}」"
    rf"|(?<![本该此这])[{CJK}A-Za-z0-9]{{2,}}(?<![方办做说看用想写算手疗语立执司依违合非守本该此"
    rf"这有关相述列些哪么体他])(?:法(?![院人律规定])|法典|条例|细则|司法解释)"
    rf"|[{CJK}A-Za-z]{{2,}}(?<!保险)(?:人寿|财险|集团|银行|证券)"
)
# Something in the question the 该/此 can point back to: a case ("某", "甲", "一份").
_ZH_ANTECEDENT = re.compile(r"某|[甲乙丙丁](?:方|公司|某)?|一(?:份|家|名|位|个|辆|款|项|起|种|张)")

_EN_DOC = (
    r"(?:text|passage|document|excerpt|extract|article|section|paragraph|context|material|materials"
    r"|reading|snippet|clause|provision|content|information|data|statement|story|report"
    r"|description|source|chapter|page|transcript|essay)"
)
_EN_PART = (
    r"(?:examples?|table|figure|snippet|code\s+(?:sample|snippet|block|example)|page|docs"
    r"|documentation|readme|diagram|chart|listing|screenshot)"
)
_EN_DEIXIS_RE = re.compile(
    rf"\b(?:the|this|that|these|those)\s+(?:above|preceding|foregoing|following|given|provided"
    rf"|attached|accompanying|aforementioned|aforesaid|previous|below|earlier|quoted|cited"
    rf"|supplied|source|reference|original|referenced|shown|presented)\s+{_EN_DOC}s?\b"
    rf"|\b(?:text|passage|document|excerpt|extract|paragraph|context|material|reading|snippet"
    rf"|section|article|content|information|clause|provision)s?\s+(?:above|below|provided|given"
    rf"|shown|presented|quoted|supplied)\b"
    rf"|\b(?:above|aforementioned|foregoing)\s+{_EN_DOC}s?\b"
    rf"|\b(?:in|from|according\s+to|based\s+on|per|by|within|throughout|referring\s+to|given"
    rf"|using|(?:as\s+)?(?:stated|described|mentioned|noted|given|discussed|outlined|explained"
    rf"|presented|shown|defined|set\s+out|laid\s+out|specified)\s+in)\s+(?:the|this)\s+"
    rf"(?:text|passage|document|excerpt|extract|context|reading|snippet|material|materials"
    rf"|source|paragraph)(?!\s+of\b)\b"
    rf"|\bthe\s+(?:passage|excerpt|extract|snippet)\b"
    rf"|\b(?:the|this)\s+(?:author|writer|narrator)(?:'s)?\b(?!\s+of\b)"
    rf"|\b(?:mentioned|listed|shown|described|given|stated|defined|discussed|presented|covered"
    rf"|documented|explained|outlined|referenced|specified|quoted|cited|used|read)\s+(?:here|above"
    rf"|below|earlier|previously|before)\b"
    # Parts of a document: "this page", "the second example", "the table lists", "in the
    # example", "the docs" (of nothing named).
    rf"|\b(?:this|that|these|those)\s+(?:(?:first|second|third|last|final|next|previous|two"
    rf"|three)\s+)?{_EN_PART}\b(?!\s+(?:of|for|on)\s+[A-Za-z`])"
    rf"|\bthe\s+(?:first|second|third|last|final|next|previous|following|above|preceding"
    rf"|earlier|latter|former|same|two|three)\s+{_EN_PART}\b"
    rf"|\b(?:in|from|per|according\s+to|based\s+on|(?:as\s+)?(?:shown|given|used|described)\s+in)"
    rf"\s+the\s+(?!table|chart)(?:{_EN_PART})\b(?!\s+(?:of|for|on)\s+[A-Za-z`])"
    rf"|\bthe\s+{_EN_PART}\s+(?:shows?|lists?|says|gives|contains|mentions|describes|illustrates"
    rf"|uses|demonstrates)\b"
    rf"|\bthe\s+(?:docs|documentation|readme|manual)\b(?!\s+(?:of|for|on)\s+[A-Za-z`])"
    # A conversation the student never had: "same question as before", "the docs you just read".
    rf"|\b(?:same\s+question|as\s+before|as\s+above|like\s+before|as\s+(?:I|we)\s+(?:asked"
    rf"|said|mentioned)|you\s+(?:just|previously|already)\s+(?:read|saw|looked\s+at|were\s+shown"
    rf"|were\s+given))\b"
    rf"|\b(?:docs|documentation|text|page|document|passage|section|example)\s+you\s+(?:read|saw"
    rf"|were\s+given|were\s+shown|have)\b"
    rf"|\bwhat\s+(?:does|do|did)\s+the\s+(?:text|document|context|material|source|article"
    rf"|section|clause|provision|paragraph)\s+(?:say|state|mention|describe|provide|indicate"
    rf"|specify|require|establish|set)\b",
    re.IGNORECASE,
)
# "this article/section/contract/law...": referential unless the question names it.
_EN_THIS_NOUN = re.compile(
    r"\b(?:this|that|the\s+said|said)\s+(?:text|document|article|section|paragraph|clause"
    r"|provision|chapter|contract|policy|agreement|law|act|statute|regulation|constitution"
    r"|amendment|rule|code|plan|product|excerpt|passage)\b"
    # "the Act", "the Amendment": a law's generic name stands for one only when it is named
    r"|\bthe\s+(?:Act|Amendment|Statute|Regulation|Ordinance|Directive|Treaty|Convention)\b"
    r"(?!\s+(?:of|on|for)\s+(?:the\s+)?[A-Z])",
    re.IGNORECASE,
)
_EN_NAMED = re.compile(
    r"\b(?:Article|Section|Amendment|Clause|Title|Chapter|Rule|Regulation|Part)\s+[0-9IVXLC]+\b"
    r"|\b[A-Z][A-Za-z.]*(?:\s+(?:of\s+)?[A-Z][A-Za-z.]*)*\s+(?:Act|Code|Constitution|Convention"
    r"|Treaty|Regulations?|Policy|Plan|Law|Statute|Amendment|Charter)\b"
    r"|\b(?:Constitution|Act|Code|Charter)\s+of\s+(?:the\s+)?[A-Z]"
    r"|\b(?:First|Second|Third|Fourth|Fifth|Sixth|Seventh|Eighth|Ninth|Tenth|Eleventh|Twelfth"
    r"|Thirteenth|Fourteenth|Fifteenth|Sixteenth|[0-9]+(?:st|nd|rd|th))\s+Amendment\b"
    r"|\"[^\"]{3,}\"|“[^”]{3,}”"
)
_EN_ANSWER_DEIXIS = re.compile(
    r"\b(?:the|this)\s+(?:provided\s+|given\s+|above\s+|preceding\s+|original\s+|source\s+)?"
    r"(?:text|passage|excerpt|extract|snippet|context|material|document)\s+(?:says|states|said"
    r"|mentions|notes|indicates|describes|explains|suggests|shows|does\s+not|doesn't|makes"
    r"|is\s+silent|only|also|clearly|above|provided|given)\b"
    r"|\b(?:according\s+to|based\s+on|as\s+(?:stated|mentioned|described|noted|shown|given)"
    r"\s+(?:in|by))\s+the\s+(?:provided\s+|given\s+|above\s+)?(?:text|passage|excerpt|extract"
    r"|snippet)(?!\s+of\b)\b"
    r"|\bthe\s+(?:above|preceding|foregoing|provided|given|aforementioned)\s+(?:text|passage"
    r"|excerpt|extract|snippet|context|material|document)\b"
    r"|\b(?:in|from)\s+the\s+(?:passage|excerpt|extract|snippet)\b",
    re.IGNORECASE,
)


# What names a provision (本条, 该款): a law's title, not a quoted term ("本条所说的“情节严重”").
_ZH_NAMED_LAW = re.compile(r"《[^》]{2,}》")
_ZH_PROVISION_NOUNS = frozenset("条款项章节")


def _zh_this_noun(question: str) -> str | None:
    """'本合同' etc. when nothing in the question says which contract or law it is."""
    named = _ZH_NAMED.search(question)
    for m in _ZH_THIS_NOUN.finditer(question):
        if "\n" in question[: m.start()].strip():
            continue  # inside material given after the instruction ("改写下面的句子：\n……")
        provision = m.group(2) in _ZH_PROVISION_NOUNS
        quoted_term = named is not None and named.group().startswith(("“", "「", '"'))
        # A name settles which one; for a provision (本条) a quoted term does not.
        if named and (not provision or not quoted_term or _ZH_NAMED_LAW.search(question)):
            return None
        det = m.group(1)
        if det != "本":
            before = question[: m.start()]
            # "某公司与张某签订的合同……该合同": the 该 points back inside the question.
            noun_core = m.group(2)[-2:] if len(m.group(2)) > 1 else m.group(2)
            if _ZH_ANTECEDENT.search(before) or noun_core in before:
                continue
        if _INLINE_MATERIAL.search(question[m.end() :]):
            continue  # "阅读本合同条款：……" quotes the text it asks about
        return m.group()
    return None


# "The following statement: …", "将以下内容分类：香蕉、橙子": the text pointed at comes next.
_FORWARD = re.compile(r"following|below|下列|以下|下面|下述|如下", re.IGNORECASE)
_GIVEN_AFTER = re.compile(
    r"^[^:：\n]{0,40}[:：\n]\s*\S.{6,}|^[^\"“「]{0,40}[\"“「][^\"”」]{4,}", re.DOTALL
)


# "Summarize this paragraph: Scientists now know…", "识别该段落中的情绪。\n\n帮助别人……": the
# text is in the question itself.
# "上述/above" points back, at something no later text can be.
_BACKWARD = re.compile(
    r"上述|上文|前文|前述|以上|如上|上面|above|preceding|foregoing|aforementioned|aforesaid|previous"
    r"|earlier",
    re.IGNORECASE,
)
_INLINE_MATERIAL = re.compile(r"[:：\n]\s*\S.{19,}", re.DOTALL)
_QUOTED_SPAN = re.compile(r"“[^”]*”|「[^」]*」|『[^』]*』|\"[^\"]*\"")


def _pointing(regex: re.Pattern[str], question: str) -> re.Match[str] | None:
    """The first deixis in ``question`` that points at a text the question does not include."""
    quoted = [q.span() for q in _QUOTED_SPAN.finditer(question)]
    for m in regex.finditer(question):
        if any(a <= m.start() < b for a, b in quoted):
            continue  # inside quoted material: "将这句话归类：“这里的服务很糟糕”"
        rest = question[m.end() :]
        if _FORWARD.search(m.group()) and _GIVEN_AFTER.match(rest):
            continue
        if not _BACKWARD.search(m.group()) and _INLINE_MATERIAL.search(rest):
            continue
        return m
    return None


# A follow-up that only makes sense after an earlier turn or text: "那如果是在试用期内呢？",
# "它对……是怎么规定的？", "And what about streaming requests?".
_ZH_FOLLOW_UP = re.compile(
    r"^\s*(?:那么?|那要是|那如果|要是换成|换成)[^。？?！!]{0,30}呢\s*[？?]?"
    r"|^\s*(?:它们?|其(?=中|对|规定|要求|适用|所)|上述|前述)"
)
_EN_FOLLOW_UP = re.compile(
    r"^\s*(?:and|but|also)\s+(?:what|how|if|which|who|when|is|are|does|do|can|why)\b"
    r"|^\s*(?:what|how)\s+about\b",
    re.IGNORECASE,
)
# 第N条 (or 第N款/项) with no law named: in a knowledge base of several laws it is ambiguous.
_ZH_BARE_ARTICLE = re.compile(r"第\s*[0-9一二三四五六七八九十百千零〇两]+\s*(?:条|款)")
# Who a case is about: the article then only supports a story the question tells.
_ZH_PARTY = re.compile(
    rf"某|[甲乙丙丁](?:方|公司|某|与|向|的)|(?:小|老|阿)[{CJK}](?=[的在因向与为是想已从跟和被把])"
    r"|我(?!想|要|希望|需要|请问|问)|[他她你]|一(?:名|家|位|辆|份|起|个人)"
)


# "宪法第三十五条", "消保法第24条": a name right before the article names the law.
_ZH_NAME_BEFORE = re.compile(
    rf"(?<![本该此这])[{CJK}]{{1,20}}(?:法|法典|条例|规定|办法|细则|解释|章程|规则)\s*$"
)


def _zh_bare_article(question: str) -> str | None:
    """A Chinese question whose only handle is "第N条" (no law named, no case told)."""
    m = _ZH_BARE_ARTICLE.search(question)
    if m is None or _ZH_NAMED.search(question) or _ZH_PARTY.search(question):
        return None
    if _ZH_NAME_BEFORE.search(question[: m.start()]):
        return None
    return m.group()


def find_referential(instruction: str, output: str = "", *, input: str = "") -> Finding | None:
    """A question (or answer) that points at a text the student will not have; zh and en.

    A question with its own material in ``input`` may point at it ("根据下面的材料").
    """
    if input.strip():
        return None
    question = nfkc(instruction)
    answer = strip_quoted(nfkc(output))
    m = _pointing(_ZH_DEIXIS_RE, question)
    if m:
        return Finding(f"referential question: {m.group()!r}", {"where": "instruction"})
    found = _zh_this_noun(question)
    if found:
        return Finding(
            f"referential question: {found!r} without naming which one", {"where": "instruction"}
        )
    m = _pointing(_EN_DEIXIS_RE, question)
    if m:
        return Finding(f"referential question: {m.group()!r}", {"where": "instruction"})
    m = _ZH_FOLLOW_UP.search(question) or _EN_FOLLOW_UP.search(question)
    if m:
        return Finding(f"follow-up question: {m.group()!r}", {"where": "instruction"})
    found = _zh_bare_article(question)
    if found:
        return Finding(
            f"referential question: {found!r} without naming the law", {"where": "instruction"}
        )
    m = _EN_THIS_NOUN.search(question)
    if m and not _EN_NAMED.search(question) and not _INLINE_MATERIAL.search(question[m.end() :]):
        return Finding(
            f"referential question: {m.group()!r} without naming which one",
            {"where": "instruction"},
        )
    m = _ZH_ANSWER_DEIXIS.search(answer) or _EN_ANSWER_DEIXIS.search(answer)
    if m:
        return Finding(f"answer refers to the source text: {m.group()!r}", {"where": "output"})
    return None


# ================================================================================== evidence


@dataclass(frozen=True)
class EvidenceResult:
    """Which evidence quotes were found in the chunk (scores 0..1, one per quote)."""

    verified: bool | None
    failed: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)


def _ngram_index(text: str, n: int) -> dict[str, list[int]]:
    index: dict[str, list[int]] = {}
    for i in range(len(text) - n + 1):
        index.setdefault(text[i : i + n], []).append(i)
    return index


def quote_score(quote: str, source: str, *, _index: dict[str, list[int]] | None = None) -> float:
    """How well ``quote`` is found in ``source``: 1.0 verbatim (ignoring case, spaces, punctuation).

    Otherwise the best alignment of the quote inside one window of the source: characters
    matched in order, divided by the longer of the quote and the stretch of source they span
    (so a changed character costs a little, a skipped phrase as much as its length). Windows
    are found by shared character n-grams, so it stays fast on long chunks.
    """
    q, s = squash(quote), squash(source)
    if not q or q in s:
        return 1.0
    if not s:
        return 0.0
    n = 3 if len(q) >= 12 else 2
    index = _index if _index is not None else _ngram_index(s, n)
    # Vote for the offset at which the quote would start in the source.
    votes: Counter[int] = Counter()
    for i in range(len(q) - n + 1):
        for pos in index.get(q[i : i + n], ())[:200]:
            votes[(pos - i) // 8] += 1
    best = 0.0
    for bucket, _ in votes.most_common(5):
        start = max(0, bucket * 8 - len(q) // 4)
        window = s[start : bucket * 8 + len(q) + len(q) // 4 + 8]
        matcher = SequenceMatcher(None, q, window, autojunk=False)
        blocks = [b for b in matcher.get_matching_blocks() if b.size]
        if not blocks:
            continue
        matched = sum(b.size for b in blocks)
        span = blocks[-1].b + blocks[-1].size - blocks[0].b
        best = max(best, matched / max(len(q), span))
    return best


def check_evidence(
    quotes: Sequence[str], source: str, *, threshold: float = 0.85
) -> EvidenceResult:
    """Check every evidence quote against the chunk; ``verified`` is None when there are none."""
    quotes = [q for q in quotes if isinstance(q, str) and q.strip()]
    if not quotes:
        return EvidenceResult(None)
    s = squash(source)
    index3 = _ngram_index(s, 3)
    index2 = _ngram_index(s, 2)
    scores = []
    failed = []
    for q in quotes:
        score = quote_score(q, source, _index=index3 if len(squash(q)) >= 12 else index2)
        scores.append(round(score, 3))
        if score < threshold:
            failed.append(q)
    return EvidenceResult(not failed, failed, scores)


# ================================================================================ truncation

# A closing 》 is not an end: "……另外，根据《民法典》" stops mid-sentence.
_TERMINAL = set("。！？!?.…;；」』”’\"')）]】>*`~|}")
_OPENERS = {"(": ")", "【": "】", "[": "]", "《": "》", "“": "”", "「": "」", "『": "』"}
_ZH_DANGLING = set("的和与或及并但而由对在向从将把被其之为是即自至于若则且、，,：:（(“「《【-—")
# fmt: off
_EN_DANGLING = frozenset([
    "the", "a", "an", "of", "to", "and", "or", "but", "in", "on", "for", "with", "by", "from",
    "that", "which", "who", "whom", "whose", "if", "as", "at", "than", "under", "shall", "may",
    "must", "be", "is", "are", "was", "were", "not", "such", "any", "each", "every", "their",
    "its", "his", "her", "our", "your", "into", "upon", "onto", "unless", "until", "because",
    "while", "although", "whether", "nor", "so", "both", "either", "neither", "including",
    "include", "includes", "between", "among", "without", "within", "during", "after", "before",
    "via", "than", "whose", "my", "toward", "towards",
])
# fmt: on
_CITING = re.compile(r"(?:根据|依据|依照|按照|参照|参见|详见|见|适用|和|与|及|或者|或|以及)\s*$")
_LIST_LINE = re.compile(r"^\s*(?:[-*•+]|\d+[.)、]|[(（][0-9一二三四五六七八九十]+[)）]|#+)\s*")
_FENCE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)


def _cut_list_item(lines: list[str]) -> bool:
    """The last item of a list whose other items all end in punctuation ends without any."""
    items = [line for line in lines if _LIST_LINE.match(line)]
    if len(items) < 3 or not _LIST_LINE.match(lines[-1]):
        return False
    last = lines[-1].rstrip(" *_~")
    earlier = [line.rstrip(" *_~")[-1:] for line in items[:-1]]
    return all(ch in _ITEM_END for ch in earlier) and last[-1:].isalpha()


# How an item of a punctuated list ends.
_ITEM_END = set("。；;，,、.")


def _unclosed_markup(last_line: str, prose: str) -> str | None:
    """Inline code, emphasis or a table row the answer opened in its last line and never closed."""
    code_free = re.sub(r"```.*?```", " ", prose, flags=re.DOTALL)
    if code_free.count("`") % 2 == 1 and last_line.count("`") % 2 == 1:
        return "inline code `"
    prose_line = strip_code(last_line)
    # "**bold" opened after a space or a list marker (not "2**10", a power)
    opened = re.search(r"(?:^|[\s(\[-])\*\*(?=\S)(?!.*\*\*)", prose_line)
    if prose_line.count("**") % 2 == 1 and opened:
        return "emphasis **"
    if prose_line.lstrip().startswith("|") and not prose_line.rstrip().endswith("|"):
        return "table row |"
    return None


def find_truncation(output: str, finish_reason: str | None = None) -> Finding | None:
    """An answer cut off mid-sentence (or generation stopped at ``max_tokens``).

    Signs: an unclosed code block, bracket, quote, inline code, emphasis or table row; a last
    character or word that cannot end a sentence (",", "的", "and", "the"); no closing
    punctuation in prose; a list whose items end in punctuation but whose last item does not.
    A code block, link, number, table or heading may end an answer without a full stop.
    """
    if finish_reason == "length":
        return Finding("generation stopped at max_tokens (finish_reason 'length')")
    text = nfkc(output).rstrip()
    if not text:
        return None
    if len(_FENCE.findall(text)) % 2 == 1:
        return Finding("ends inside an unclosed code block")
    prose = re.sub(r"```.*?```", " ", text, flags=re.DOTALL)
    for opener, closer in _OPENERS.items():
        # More opened than closed, and an opener after the last closer: it stopped inside.
        if prose.count(opener) > prose.count(closer) and prose.rfind(opener) > prose.rfind(closer):
            return Finding(f"ends inside an unclosed {opener}{closer}")
    last_line = text.splitlines()[-1]
    if not text.endswith("```"):
        markup = _unclosed_markup(last_line, prose)
        if markup:
            return Finding(f"ends inside an unclosed {markup}")
    tail = text.rstrip("*_~ ")
    if not tail:
        return None
    last = tail[-1]
    last_line = tail.splitlines()[-1]
    if last in "，,、：:（(“「《【-—–/&+=" or re.search(r"(?:^|\s)[$€£¥]$", tail):
        return Finding(f"ends with {last!r}")
    # "……另外，根据《民法典》": a title after a preposition opens a clause that never came.
    if last == "》" and _CITING.search(tail[: tail.rfind("《")]):
        return Finding(f"ends mid-sentence after {tail[-12:]!r}")
    marker = _LIST_LINE.match(last_line)
    if marker and not last_line[marker.end() :].strip():
        return Finding(f"ends with an empty list item {last_line.strip()!r}")
    if last in _TERMINAL or last_line.lstrip().startswith("|"):
        return None
    if re.search(r"https?://\S+$|(?:^|\s)#\S+$", tail) or not strip_code(last_line).strip():
        return None  # a link, a hashtag, a line of code
    lang = detect_lang(text)
    words = re.findall(r"[A-Za-z']+", tail[-40:])
    item_words = len(last_line[marker.end() :].split()) if marker else 99
    if re.search(r"(?:^|\s)\d+[.)、]\s*\S+$", tail):
        item_words = 1  # "1. the 2. fox 3. a": a list of words, inline
    dangling = words and tail[-1].isalpha() and words[-1].lower() in _EN_DANGLING
    if lang == "en" and dangling and item_words >= 2:
        return Finding(f"ends mid-sentence after {' '.join(words[-3:])!r}")
    # (A Chinese list item may end in 的: "保险标的".)
    if lang == "zh" and last in _ZH_DANGLING and len(squash(text)) > 20 and not marker:
        return Finding(f"ends mid-sentence after {tail[-6:]!r}")
    lines = [line.rstrip(" *_~") for line in tail.splitlines() if line.strip()]
    if _cut_list_item(lines):
        return Finding(f"the list's last item is cut: {last_line.strip()[-20:]!r}")
    if marker and len(last_line) < 80:
        return None  # a list item or heading may end without a full stop
    # Lines that mostly end without a full stop are a list or verse: only a dangling word or
    # character at the very end says it was cut.
    unpunctuated_style = (
        len(lines) >= 2 and sum(line[-1] in _TERMINAL for line in lines) < len(lines) / 2
    )
    if lang == "zh":
        if len(squash(text)) <= 20 and "\n" not in text:
            return None  # a terse answer ("二年") needs no full stop
        if unpunctuated_style:
            return None
        return Finding(f"no closing punctuation: ends with {tail[-8:]!r}")
    if unpunctuated_style or (len(text.split()) <= 8 and "\n" not in text):
        return None
    return Finding(f"no closing punctuation: ends with {tail[-20:]!r}")


# ================================================================================= non-answer

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


def _circular(question: str, text: str) -> bool:
    """An answer to "how long/how many/what is the default" that gives no amount and mostly
    repeats the question's own words ("The default timeout is the timeout applied by default")."""
    from .support_check import support_tokens

    zh = detect_lang(question, text) == "zh"
    asks = (_ZH_ASKS_AMOUNT if zh else _EN_ASKS_AMOUNT).search(question)
    if not asks or _AMOUNT.search(normalize_numerals(text)):
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
