"""Referential questions: a question (or answer) that leans on a text the student will not have.

"根据上述资料", "本合同" with no product or law named, "according to the passage above"; a
question whose material is in ``input``, or follows inline, may point at it.
"""

from __future__ import annotations

import re

from .base import CJK, Finding, nfkc, strip_quoted

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
    # 上面/前面/下面 (+ 关于…的) + a document noun: "按照上面关于承诺的规定".
    rf"(?:上面|前面|下面)(?:的|所述的?|所说的?|提到的|列出的)?(?:关于[^，。？?！!]{{1,20}}?的)?"
    rf"(?:{_ZH_DOC}|规定|条款|解释|办法|条例|合同|政策|要求)",
    rf"(?:这|那|该|此|本)(?:一|几|两)?(?:段|篇|则|份|部分)(?:{_ZH_DOC}|话|中|里|内|所|提到|的内容)",
    rf"(?:这|那|该|此)(?:一|份|篇|则|段)?{_ZH_DOC}",
    rf"(?:所给|给定|给出|提供|所提供|所列|所附|附带)的?(?:{_ZH_DOC}|条款|规定|法条)",
    r"(?<![申请证明有关提交相关])(?:材料|资料|文本|文章|原文|文段|段落)(?:中|里|内)?"
    r"(?:提到|提及|指出|所述|显示|表明|记载|描述|所说|所讲|介绍|说明了?|列举|规定的|中的|里的"
    r"|说的|讲的|写的|提的|谈到|说到|写到|讲到)",
    r"作者(?:认为|指出|提到|说|写道|想要|想|表达|强调|主张|的观点|的态度|的意图|的看法)",
    # A place in the text: "此处所说的", "这里的“前款”", "同上".
    r"(?:这里|本处|此段|该段)(?:的|所|说|提|规定|指|列|中|讲|写|关于|有关|对)|此处|该处|同上|如上",
    # "文件里提到的…", "文件中规定的": the document the question was written from.
    r"(?<![申请证明有关提交相关规范性书面电子])文件(?:中|里|内)(?:提到|提及|所|说|讲|写|规定|列|的)",
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
    rf"((?<![基根日资成样范版副账蓝标课脚读剧原文])本|(?<![应活])该|(?<![因彼如从由借据就特对于为])此"
    rf"|这(?:一|份|个|款|项|部|条|种)?)"
    rf"({_ZH_LEGAL_NOUN})(?![人件院律关系务方面者费率额金式国语文术子师]|所(?!说|称|述|列|指|规定))"
)
# 这/该/此 (+ a measure word) + a few words of description + a document or product noun:
# "这个医疗险", "这份附加条款", "该重疾险条款", "这款百万医疗保险". The noun must end the
# phrase ("该保险公司" is a company); 此 after a preposition is a pronoun ("法律对此如何规定").
_ZH_THIS_DESCRIBED = re.compile(
    rf"((?<![应活])该|(?<![因彼如从由借据就特对于为])此|这|那(?![么些样]))(?:一|份|个|款|项|部|种|类|张)?"
    # a description, not a question ("对此怎么规定", "这有何规定": 此/这 stands alone there)
    rf"(?:(?!怎|如何|何|什么|哪|是否|能否|可否)[{CJK}]){{1,4}}?"
    r"(规定|附加条款|条款|文件|解释|医疗险|险|保险|合同|政策|产品|计划|协议|办法|条例|细则|须知)"
    r"(?![人件院律关系务方面者费率额金公期种单]|所(?!说|称|述|列|指|规定))"
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
    # "the final section here", "the example here", "what it says here": a text at hand; "the
    # guide" of nothing named.
    rf"|\b(?:the|this|these|those)\s+(?:[a-z-]+\s+){{0,2}}(?:{_EN_DOC}|{_EN_PART}|rule|amendment"
    rf"|list|code)s?\s+here\b|\b(?:says?|said|states?|means?|reads?)\s+here\b"
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
    rf"|\bthe\s+(?:docs|documentation|readme|manual|guide|tutorial|handbook|faq)\b"
    rf"(?!\s+(?:of|for|on|to)\s+[A-Za-z`])"
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
# "what does the article say" right after the question named one ("Article II") points back.
_EN_ANAPHOR = re.compile(
    r"what\s+(?:does|do|did)\s+the\s+(?:article|section|clause|provision|paragraph)\b", re.I
)
_EN_PROVISION = re.compile(
    r"\b(?:Article|Section|Amendment|Clause|Paragraph)\s+[0-9IVXLC]+\b|\b[A-Z][a-z-]+\s+Amendment\b"
)
# "this article/section/contract/law...": referential unless the question names it.
_EN_THIS_NOUN = re.compile(
    r"\b(?:this|that|the\s+said|said)\s+(?:text|document|article|section|paragraph|clause"
    r"|provision|chapter|contract|policy|agreement|law|act|statute|regulation|constitution"
    r"|amendment|rule|code|plan|product|excerpt|passage|part)\b"
    r"|\b(?:these|those)\s+(?:rules|provisions|clauses|sections|articles|paragraphs|amendments"
    r"|regulations|terms)\b(?!\s+of\b)"
    # "the Act", "the Amendment": a law's generic name stands for one only when it is named
    r"|\bthe\s+(?:Act|Amendment|Statute|Regulation|Ordinance|Directive|Treaty|Convention)\b"
    r"(?!\s+(?:of|on|for)\s+(?:the\s+)?[A-Z])"
    # "the article", "the provision" that does something ("Which powers does the article
    # grant?"), not "the section on timeouts"
    r"|\bthe\s+(?:article|section|clause|provision|paragraph)\b"
    r"(?!\s+(?:of|on|for|about|in|from|under|to|that|which|number|\d|[IVXLC]+\b)|-"
    r"|\s*[\"'“‘`(]|\s+(?-i:[A-Z]))",
    re.IGNORECASE,
)
# A provision counted from where the reader is ("the second paragraph", "the last article",
# "the present section", "the provision in question"); "the First Amendment" is a name.
_EN_POSITION = re.compile(
    r"\bthe\s+(?:(?:first|second|third|fourth|fifth)\s+(?:article|section|paragraph|clause"
    r"|provision|chapter|part|rule)s?|(?:last|final|next|previous|preceding|present|current|same)"
    r"\s+(?:article|section|paragraph|clause|provision|chapter|part|rule|amendment)s?)\b"
    r"(?!\s+of\b)"
    r"|\b(?:article|section|paragraph|clause|provision|rule|text|document|passage)\s+in\s+question\b"
    # "Section 3 of this article": the part is numbered, the whole is not named
    r"|\b(?:Section|Clause|Paragraph|Article)\s+\d+\s+of\s+(?:this|that|the)\s+(?:article"
    r"|amendment|act|law|chapter|document|text|section)\b"
    r"|^\s*as\s+(?:described|stated|mentioned|noted|shown|explained|discussed|outlined)\s*,",
    re.IGNORECASE,
)
_LOWER_POSITION = re.compile(
    r"\bthe\s+(?:first|second|third|fourth|fifth|last|final|next|previous|preceding|present"
    r"|current|same)\s+[a-z]"
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

# --- named documents ---------------------------------------------------------------------------
# A document is named when the question gives it a proper name: a 《title》, or a name ending in
# a document noun ("泰康在线个人重大疾病保险I款（互联网专属）条款", "工伤保险条例",
# "保险法解释（一）"), with an optional version ("I款", "2023版") and bracketed qualifiers.
_ZH_DOC_NOUN = re.compile(
    r"(?:法典|(?<![方办做说看用想写算手疗语立执司依违合非守本该此这有关相述列些哪么体他无])法"
    r"(?![院人律规定官庭治])|条例|细则|规定|解释|办法|章程|规则|条款|合同|协议|政策|须知|公约"
    r"|计划|方案|(?<![风危冒惊凶探抢脱天])(?:保)?险(?=[A-Za-z0-9]{1,4}款|[（(]|条款|合同|产品"
    r"|[，,。？?、的中里第]|$))"
    r"(?:[A-Za-z0-9]{1,4}款|[A-Za-z0-9]{2,6}版)?(?:\s*[（(][^）)\n]{1,16}[）)])*"
)
# Where a name starts: after punctuation, or after a verb or preposition that introduces it.
# A name is a noun phrase: it does not run across a verb or a question word ("一并解除合同").
_ZH_NAME_CUT = re.compile(
    r"[^{CJK}A-Za-z0-9]|根据|依据|依照|按照|参照|对照|关于|有关|购买了?|投保了?|参加了?|办理了?"
    r"|签订了?|签署|订立|买了?|解除|履行|变更|终止|违反|撤销|转让|续保|退保|适用|遵守|执行|制定"
    r"|修改|废止|发布|颁布|公布|实施|施行|什么|哪|怎么|如何|是否|多少|可以|应当|能否|能|会|要"
    r"|第\s*[0-9一二三四五六七八九十百千零〇两]+\s*[条款项章节编]|想知道|知道|请问"
    r"|(?:(?<![日版资基成根样范副账脚剧课])本|该|(?<![因彼如从由借据就特对于为])此|这|那)"
    r"(?:一|份|个|款|项|部|种|类|张|些)?"
    r"|[按依据照在对于和与及或是的把被向给从由为了就我你他她它们]".replace("{CJK}", CJK)
)
# A name does not start with a demonstrative ("这份重疾险条款", "上述规定", "相关规定").
_ZH_NOT_A_NAME = re.compile(
    r"^(?:本|该|此|这|那|上述|前述|上面|前面|下面|以上|以下|下列|其|相关|有关|各|每|任何|同一|原|现行"
    r"|第\s*[0-9一二三四五六七八九十百千零〇两]+\s*[条款项章节])"
)
# Laws are short ("保险法", "工伤保险条例"); other documents need a longer name ("劳动合同" is
# a kind of contract, "泰康在线个人重大疾病保险" a product).
_ZH_NAME_LEN = {"法典": 1, "法": 2, "条例": 2, "解释": 3, "规定": 3, "办法": 3, "细则": 3}
# Which demonstrated nouns a named document can stand for (本法 → a named 法, 本合同 → a named
# contract, policy or insurance product).
_ZH_NOUN_FAMILY = {
    **dict.fromkeys(("法", "法典", "法律", "法规"), "law"),
    **dict.fromkeys(
        ("合同", "条款", "保险单", "保单", "保险", "险", "产品", "计划", "险种", "附加险", "主险",
         "协议", "方案"),
        "contract",
    ),
}  # fmt: skip


def _family(noun: str) -> str:
    """The family of a document noun: 'law', 'contract', else the noun itself (规定, 解释)."""
    return _ZH_NOUN_FAMILY.get(noun, "contract" if noun.endswith("险") else noun)


def _noun_of(m: re.Match[str]) -> str:
    """The document noun of a ``_ZH_DOC_NOUN`` match, without version and qualifiers."""
    return re.sub(r"[A-Za-z0-9（(\s].*$", "", m.group(), flags=re.DOTALL)


def _zh_named_documents(question: str) -> set[str]:
    """Families of the documents ``question`` names ('law', 'contract', '解释', …)."""
    found = set()
    for m in re.finditer(r"《([^》]{2,})》", question):
        title = re.sub(r"[（(][^）)]*[）)]\s*$", "", m.group(1)).strip()
        nouns = [_noun_of(n) for n in _ZH_DOC_NOUN.finditer(title)]
        found.add(_family(nouns[-1]) if nouns else "law")
    for m in _ZH_DOC_NOUN.finditer(question):
        head = question[max(0, m.start() - 30) : m.start()]
        noun = _noun_of(m)
        if re.search(r"[“「\"][^”」\"]{2,}[”」\"]$", head):
            found.add(_family(noun))  # “安心保”保险条款
            continue
        cuts = list(_ZH_NAME_CUT.finditer(head))
        name = head[cuts[-1].end() :] if cuts else head
        if _ZH_NOT_A_NAME.match(name) or (cuts and cuts[-1].group()[:1] in "本该此这那"):
            continue  # "这款百万医疗险": described, not named
        if len(name) >= _ZH_NAME_LEN.get(noun, 4):
            found.add(_family(noun))
    if _ZH_COMPANY.search(question):
        found.add("contract")
    return found


# An insurer or bank named ("平安人寿", "人保财险"): its policy is named.
_ZH_COMPANY = re.compile(rf"[{CJK}A-Za-z]{{2,}}(?<!保险)(?:人寿|财险|集团|银行|证券)")


def _zh_this_noun(question: str) -> str | None:
    """'本合同' etc. when nothing in the question says which contract or law it is."""
    named = _ZH_NAMED.search(question)
    docs = _zh_named_documents(question)
    found = [*_ZH_THIS_NOUN.finditer(question), *_ZH_THIS_DESCRIBED.finditer(question)]
    for m in sorted(found, key=lambda m: m.start()):
        if "的" in m.group() or "\n" in question[: m.start()].lstrip():
            continue  # inside material given after the instruction ("改写下面的句子：\n……")
        noun = m.group(2)
        if noun in _ZH_PROVISION_NOUNS:
            # 本条, 该款: any named document says where; a quoted term alone does not.
            quoted_term = named is not None and named.group().startswith(("“", "「", '"'))
            if docs or (named and not quoted_term):
                return None
        elif _family(noun) in docs or (docs and _family(noun) not in _KNOWN_FAMILIES):
            # 本法 with a law named, 本合同 with a product named, 该解释 with an 解释 named.
            return None
        det = m.group(1)
        if det != "本":
            before = question[: m.start()]
            # "某公司与张某签订的合同……该合同": the 该 points back inside the question.
            noun_core = noun[-2:] if len(noun) > 1 else noun
            if _ZH_ANTECEDENT.search(before) or noun_core in before:
                continue
        if _INLINE_MATERIAL.search(question[m.end() :]):
            continue  # "阅读本合同条款：……" quotes the text it asks about
        return m.group()
    return None


# Families a named document must match; for other nouns (本章程, 该通知) any name will do.
_KNOWN_FAMILIES = frozenset({"law", "contract", "条例", "规定", "解释", "办法", "细则", "规则"})


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
    if _zh_named_documents(question):
        return None  # "泰康在线……保险I款（互联网专属）条款第十四条", "……按条款第五条"
    if _ZH_NAME_BEFORE.search(question[: m.start()]):
        return None
    return m.group()


def _en_position(question: str) -> re.Match[str] | None:
    """A provision counted from the reader's place; an ordinal must be in lower case ("the
    First Amendment" names one)."""
    for m in _EN_POSITION.finditer(question):
        if m.group().lower().startswith("the ") and not _LOWER_POSITION.match(m.group()):
            continue
        return m
    return None


def find_referential(instruction: str, output: str = "", *, input: str = "") -> Finding | None:
    """A question (or answer) that points at a text the student will not have; zh and en.

    A question with its own material in ``input`` may point at it ("根据下面的材料"). Words that
    point at a text ("上述", "the passage above", "the next section", a follow-up "那…呢") are
    certain; "本合同", "第N条", "this policy" with no name found near are only suspect (the name
    may be written in a way the patterns do not know).
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
        # "本合同" counts as unnamed when no name the patterns know is near: an inference
        return Finding(
            f"referential question: {found!r} without naming which one",
            {"where": "instruction"},
            certain=False,
        )
    m = _pointing(_EN_DEIXIS_RE, question)
    if m and _EN_ANAPHOR.match(m.group()) and _EN_PROVISION.search(question[: m.start()]):
        # "Under Article II …, what does the article say": the provision just named
        m = _pointing(_EN_DEIXIS_RE, question[m.end() :])
    if m:
        return Finding(f"referential question: {m.group()!r}", {"where": "instruction"})
    m = _ZH_FOLLOW_UP.search(question) or _EN_FOLLOW_UP.search(question)
    if m:
        return Finding(f"follow-up question: {m.group()!r}", {"where": "instruction"})
    found = _zh_bare_article(question)
    if found:
        return Finding(
            f"referential question: {found!r} without naming the law",
            {"where": "instruction"},
            certain=False,
        )
    m = _en_position(question)
    if m and not _INLINE_MATERIAL.search(question[m.end() :]):
        return Finding(f"referential question: {m.group()!r}", {"where": "instruction"})
    m = _EN_THIS_NOUN.search(question)
    if m and not _EN_NAMED.search(question) and not _INLINE_MATERIAL.search(question[m.end() :]):
        return Finding(
            f"referential question: {m.group()!r} without naming which one",
            {"where": "instruction"},
            certain=False,
        )
    m = _ZH_ANSWER_DEIXIS.search(answer) or _EN_ANSWER_DEIXIS.search(answer)
    if m:
        return Finding(f"answer refers to the source text: {m.group()!r}", {"where": "output"})
    return None
