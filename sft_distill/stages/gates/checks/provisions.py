"""Which provision a question is about, what an answer cites, and whether a question is a case.

References are read from text normalised by ``numerals.normalize_numerals`` (第一百零五条 is
``第105条``, "Article IV" is ``Article 4``) as pairs such as ``("条", 105)`` or
``("section", 8)``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from ....sources.headings import find_article_refs, find_articles, find_headings
from .base import CJK, detect_lang, nfkc, normalized, squash

ZH_REF = re.compile(r"第\s*(\d+)\s*(条|章|节|编)(?:之(\d+))?")
ZH_CLAUSE_REF = re.compile(r"第\s*(\d+)\s*(款|项)")
EN_REF = re.compile(
    r"\b(Article|Art\.|Section|Sec\.|§|Amendment|Clause|Chapter|Title|Rule|Part)\s*(\d+)\b",
    re.IGNORECASE,
)
_EN_KIND = {"art": "article", "sec": "section", "§": "section"}

Ref = tuple[str, int]


def references(text_n: str) -> set[Ref]:
    """Article/section references of a normalised text: {("条", 16), ("section", 8), ...}."""
    refs: set[Ref] = set()
    for m in ZH_REF.finditer(text_n):
        refs.add((m.group(2), int(m.group(1))))
    for m in EN_REF.finditer(text_n):
        kind = m.group(1).lower().rstrip(".")
        refs.add((_EN_KIND.get(kind, kind), int(m.group(2))))
    return refs


_HEADING_REF = re.compile(r"(?m)^#+\s*(?:\d+\.\s*)?(Article|Section|Amendment)\s*(\d+)", re.I)


# "the twelfth article of amendment", "the 2nd section": a reference written as an ordinal.
_ORDINAL_REF = re.compile(
    r"\b(\d+)(?:st|nd|rd|th)\s+(article|section|amendment|clause|chapter|title)\b"
    r"(\s+of\s+amendment\b)?",
    re.IGNORECASE,
)
# A heading naming an article or amendment ("### 25. **XXV** Amendment 25", "## Article 2").
_PROVISION_HEADING = re.compile(r"(?m)^#+[^\n]*\b(?:Article|Amendment)\s*\d+")
_NUMBERED_PARAGRAPH = re.compile(r"(?m)^[ \t]*(\d+)\.[ \t]+\S")


def source_references(source_n: str) -> set[Ref]:
    """References in a normalised source, in any form: headings ("## 1. Article I", "### Section
    8"), ordinals ("the twelfth article of amendment"), and the numbered paragraphs of an
    article or amendment, which are its sections ("2. Whenever there is a vacancy…")."""
    refs = references(source_n)
    for m in _HEADING_REF.finditer(source_n):
        refs.add((m.group(1).lower(), int(m.group(2))))
    for m in _ORDINAL_REF.finditer(source_n):
        kind = "amendment" if m.group(3) else m.group(2).lower()
        refs.add((kind, int(m.group(1))))
    if _PROVISION_HEADING.search(source_n):
        for m in _NUMBERED_PARAGRAPH.finditer(source_n):
            refs.add(("section", int(m.group(1))))
    return refs


# "Amendment 15, Section 3", "Article I, § 2", "Section 3 of the Fifteenth Amendment".
_EN_PAIR = re.compile(
    r"\b(Article|Amendment)\s*(\d+)\s*,?\s*(?:Section|Sec\.|§)\s*(\d+)\b"
    r"|\b(?:Section|Sec\.|§)\s*(\d+)\s+of\s+(?:the\s+)?(Article|Amendment)\s*(\d+)\b",
    re.IGNORECASE,
)
_ANY_HEADING = re.compile(r"(?m)^#+[^\n]*$")
_HEADING_SECTION = re.compile(r"(?mi)^[ \t#*]*(?:Section|Sec\.|§)\s*(\d+)\b")


def _sections_by_parent(source_n: str) -> dict[Ref, tuple[set[int], bool]]:
    """{(kind, number): (its section numbers, whether the chunk ends inside it)} for the articles
    and amendments of a normalised source; numbered paragraphs count as sections."""
    heads = [
        (m.start(), ref)
        for m in _ANY_HEADING.finditer(source_n)
        for ref in [re.search(r"\b(Article|Amendment)\s*(\d+)", m.group(), re.IGNORECASE)]
        if ref
    ]
    out: dict[Ref, tuple[set[int], bool]] = {}
    for i, (start, ref) in enumerate(heads):
        end = heads[i + 1][0] if i + 1 < len(heads) else len(source_n)
        block = source_n[start:end]
        numbers = {int(m.group(1)) for m in _HEADING_SECTION.finditer(block)}
        numbers |= {int(m.group(1)) for m in _NUMBERED_PARAGRAPH.finditer(block)}
        key = (ref.group(1).lower(), int(ref.group(2)))
        out[key] = (numbers, i + 1 == len(heads))
    return out


def unknown_subsections(answer_n: str, source_n: str) -> list[str]:
    """Sections an answer cites under an article or amendment of the source that does not have
    them ("Amendment 15, Section 3" where Amendment 15 has sections 1 and 2); a section past the
    last one of the chunk's last provision may have been cut off and is not counted."""
    parents = _sections_by_parent(source_n)
    out = []
    for m in _EN_PAIR.finditer(answer_n):
        kind, num, sec = (m.group(1), m.group(2), m.group(3)) if m.group(1) else (
            m.group(5), m.group(6), m.group(4))  # fmt: skip
        key = (kind.lower(), int(num))
        if key not in parents:
            continue
        sections, last = parents[key]
        section = int(sec)
        if section in sections or (not sections and section == 1):
            continue
        if last and section > max(sections, default=1):
            continue
        out.append(f"{kind.lower()} {num}, section {sec}")
    return out


def question_target(question_n: str, lang: str) -> set[Ref] | None:
    """The one provision a normalised question asks about, when it names exactly one."""
    refs = references(question_n)
    if lang == "zh":
        arts = {r for r in refs if r[0] == "条"}
        return arts if len(arts) == 1 else None
    arts = {r for r in refs if r[0] in ("article", "amendment")}
    secs = {r for r in refs if r[0] == "section"}
    if len(arts) > 1 or len(secs) > 1 or not (arts or secs):
        return None
    return arts | secs


# "根据《保险法》第十六条，" / "《保险法》第十六条规定" / "Under Article I, Section 5, ...": the
# provision an answer says it restates.
# A law's name, not "违反本条例" (a cross-reference to the same law).
_ZH_NAME = rf"(?!违反|依照|按照|根据|依据)(?:(?!本)[{CJK}]){{2,20}}?"
_ZH_LEAD = re.compile(
    rf"^\s*(?:根据|依据|依照|按照|按|据|参照|对照)?\s*(?:《([^》]+)》|({_ZH_NAME}"
    r"(?:法|条例|办法|规定|细则|解释)))?\s*第\s*(\d+)\s*条(?:第\s*\d+\s*款)?\s*(?:的?规定)?\s*[,，:：]"
    rf"|^\s*(?:《([^》]+)》|({_ZH_NAME}(?:法|条例|办法|细则)))?\s*第\s*(\d+)\s*条"
    r"(?:第\s*\d+\s*款)?\s*(?:明确)?规定"
)
_EN_LEAD = re.compile(
    r"^\s*(?:Under|According\s+to|Per|Pursuant\s+to|In|As\s+set\s+out\s+in)?\s*(?:the\s+)?"
    r"((?:Article|Amendment)\s+\d+(?:\s*,?\s*(?:Section|§)\s*\d+)?"
    r"|Section\s+\d+(?:\s+of\s+(?:the\s+)?(?:Article|Amendment)\s+\d+)?)\b",
    re.IGNORECASE,
)


def lead_citation(answer_n: str, lang: str) -> tuple[str | None, set[Ref]] | None:
    """(law name or None, references) of the provision a normalised answer opens by citing."""
    if lang == "zh":
        m = _ZH_LEAD.match(answer_n)
        if not m:
            return None
        law = m.group(1) or m.group(2) or m.group(4) or m.group(5)
        return law, {("条", int(m.group(3) or m.group(6)))}
    m = _EN_LEAD.match(answer_n)
    return None if m is None else (None, references(m.group(1)))


def law_core(name: str) -> str:
    """A law's name without spaces, punctuation and the 中华人民共和国 prefix."""
    name = squash(name)
    for prefix in ("中华人民共和国", "中国"):
        if name.startswith(prefix) and len(name) > len(prefix) + 1:
            return name[len(prefix) :]
    return name


def share_in(core: str, context_sq: str) -> float:
    """Share of the character bigrams of ``core`` found in ``context_sq``."""
    grams = [core[i : i + 2] for i in range(len(core) - 1)]
    return sum(g in context_sq for g in grams) / len(grams) if grams else 0.0


def same_law(name: str, context: str) -> bool:
    """Whether ``context`` names the law ``name`` (in full, abbreviated, or with its prefix)."""
    core = law_core(name)
    context_sq = squash(context)
    # "《保险法》" for "中华人民共和国保险法"; "交强险条例" where the context has the full title.
    return core in context_sq or (share_in(core, context_sq) >= 0.8 and core[-2:] in context_sq)


_ZH_LAW_IN_TEXT = re.compile(
    rf"《([^》]{{2,40}})》|(?<![本该此这])([{CJK}]{{2,16}}?(?:法|条例))(?=第\s*\d+\s*条)"
)
_EN_LAW_IN_TEXT = re.compile(
    r"\b((?:[A-Z][A-Za-z'.-]+\s+){1,6}(?:Act|Code|Convention|Treaty|Regulations?|Statute))\b"
)
_EN_LAW_STOP = frozenset({"The", "This", "That", "Such", "Any", "Each", "Every", "An", "A"})


def unknown_laws(answer: str, context: str, lang: str) -> list[str]:
    """Law names the answer cites that ``context`` (source and question) never mentions."""
    unknown = []
    if lang == "zh":
        for m in _ZH_LAW_IN_TEXT.finditer(answer):
            name = m.group(1) or m.group(2)
            if len(law_core(name)) >= 2 and not same_law(name, context):
                unknown.append(name)
        return unknown
    context_sq = squash(context)
    for m in _EN_LAW_IN_TEXT.finditer(answer):
        words = m.group(1).split()
        while words and words[0] in _EN_LAW_STOP:
            words = words[1:]
        name = " ".join(words)
        if len(words) >= 2 and squash(name) not in context_sq:
            unknown.append(name)
    return unknown


# A question about a case or a calculation: its answer applies the rule in its own words.
# Cues: a party ("某", "甲方", "小王", "a man"), a hypothesis, a number the law does not have, a
# personal pronoun, or a scenario sentence before the question ("…撞伤了行人。保险公司要赔吗？").
_ZH_CASE = re.compile(
    rf"某(?!些)|[甲乙丙丁](?:方|公司|某|与|向|对|的)|[小老阿][{CJK}](?=[的在因向与为是想已从跟和被把])"
    # (not the 他 of 其他, the 若 of 若干, the 某 of 某些, the 我 of 自我)
    r"|假设|假如|如果|(?<!倘)若(?!干)|倘若|(?<![其吉])他|她|(?<!自)我|你|一(?:名|家|位|辆|份|起)"
    r"|[0-9]|[。！；;][^。！；;]{4,}$"
    r"|怎么(?:办|处理|解决|算|计算|赔)|如何(?:处理|计算|认定|解决|赔偿)"
    # a date or a total to work out
    r"|哪天|哪一天|几号|最早|一共|总共"
)
_EN_CASE = re.compile(
    r"\b(?:suppose|supposing|assume|assuming|imagine|if|when|hypothetical|scenario)\b"
    r"|\b(?:a|an)\s+(?:man|woman|person|company|employee|worker|policyholder|driver|resident"
    r"|city|candidate|couple|family|child|landlord|tenant|customer|buyer|seller)\b"
    r"|\b(?:Mr|Mrs|Ms|Dr)\.|[0-9]|\b(?:he|she|his|her|him)\b"
    r"|(?<=[a-z0-9]{2})[.!;]\s+[A-Z][^.!;]{10,}$|\bwhat\s+happens\s+(?:if|when|to)\b"
    # someone's own situation ("I call …", "our tests …"), not "how do I …"
    r"|\b(?:my|our)\s+(?:\w+\s+){0,2}(?:is|are|was|were|has|have|had|takes?|took|gets?|got"
    r"|returns?|raises?|fails?|failed|keeps?|kept)\b|(?<!\bdo\s)(?<!\bcan\s)(?<!\bshould\s)(?<!\bwould\s)(?<!\bcould\s)"
    r"(?<!\bwill\s)(?<!\bmust\s)(?<!\bdid\s)(?<!\bmay\s)\b(?:I|we)\s+(?!(?:can|could|should"
    r"|would|will|must|need|want|may|might|do|don't)\b)[a-z]+"
    # a quantity to work out
    r"|\b(?:maximum|minimum|total|largest|smallest|at\s+most|in\s+total|altogether|calculate"
    r"|compute|work\s+out)\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
# "U.S." and "Mr." are not sentence ends.
_ABBREVIATION = re.compile(r"\b([A-Z])\.(?=[A-Z]\.)|\b([A-Z])\.(?=\s)")


@lru_cache(maxsize=256)
def _numbers_of(text: str) -> frozenset[float]:
    return frozenset(float(m.group()) for m in _NUMBER.finditer(normalized(text)))


def is_case_question(question: str, lang: str | None = None, *, source: str = "") -> bool:
    """Whether a question describes a case or asks for a calculation (not "what does X say").

    Numbers the question shares with ``source`` ("before 1808", "第三十六条的六十日") are the
    law's own, not a case's.
    """
    text = ZH_REF.sub("", EN_REF.sub("", normalized(question))).strip()
    if re.search(r"\d{1,2}\s*月\s*\d{1,2}\s*日|\d{4}\s*年\s*\d{1,2}\s*月", text):
        return True  # a date: something happened on it
    if source:
        known = _numbers_of(source)
        text = _NUMBER.sub(lambda m: "" if float(m.group()) in known else m.group(), text)
    text = _ABBREVIATION.sub(r"\1\2", text)
    lang = lang or detect_lang(question)
    return bool((_ZH_CASE if lang == "zh" else _EN_CASE).search(text))


@lru_cache(maxsize=256)
def target_passage(source: str, question: str, lang: str | None = None) -> str | None:
    """The (normalised) text of the one provision the question names, cut from the source.

    "第二十四条" → from the line starting "第二十四条" to the next article or heading; "Article I,
    Section 8" → from the "Section 8" heading to the next heading. None when the question names
    no single provision or the source does not have it.
    """
    lang = lang or detect_lang(source, question)
    source_n = normalized(source)
    target = question_target(normalized(question), lang)
    if not target:
        return None
    if lang == "zh":
        ((_, num),) = target
        m = re.search(rf"(?m)^[ \t\u3000#*]*第{num}条", source_n)
        end_re = re.compile(r"(?m)^[ \t\u3000*]*(?:第\d+条|#)")
    else:
        sections = [n for k, n in target if k == "section"]
        if sections:
            m = re.search(rf"(?mi)^[ \t#*]*(?:section|sec\.|§)\s*{sections[0]}\b", source_n)
        else:
            ((_, num),) = target
            m = re.search(rf"(?mi)^[ \t#*]*(?:\d+\.\s*)?(?:article|amendment)\s*{num}\b", source_n)
        end_re = re.compile(r"(?m)^[ \t]*#")
    if not m:
        return None
    end = end_re.search(source_n, m.end())
    return source_n[m.start() : end.start() if end else len(source_n)]


# --- which provision an answer's content comes from -------------------------------------------


@dataclass(frozen=True)
class Unit:
    """A provision of the source: an article (第N条, Section N) or a titled document section."""

    kind: str  # "条", "article", "section", "amendment", or "heading"
    number: int
    parent: int | None
    label: str
    text: str


@lru_cache(maxsize=64)
def source_units(source: str) -> tuple[Unit, ...]:
    """The source's articles (``headings.find_articles``), else its heading-delimited sections."""
    arts = find_articles(source)
    if len(arts) >= 2:
        return tuple(
            Unit(a.kind, a.number, a.parent, a.label, source[a.start : a.end]) for a in arts
        )
    heads = find_headings(source)
    units = []
    for i, h in enumerate(heads):
        end = heads[i + 1].start if i + 1 < len(heads) else len(source)
        units.append(Unit("heading", i, None, h.text, source[h.start : end]))
    return tuple(units)


def cited_units(segment: str, units: Sequence[Unit]) -> set[int]:
    """Indexes of the units a piece of an answer cites by number ("第十六条", "Section 8")."""
    found = set()
    for ref in find_article_refs(nfkc(segment)):
        for i, u in enumerate(units):
            same_kind = ref.kind == u.kind or {ref.kind, u.kind} <= {"条", "article"}
            same_parent = ref.parent is None or u.parent is None or ref.parent == u.parent
            if same_kind and ref.number == u.number and same_parent:
                found.add(i)
    return found


# A section cited by its title: 'the "Retries" section', 'under "Waiting before retrying"'.
_QUOTED_SECTION = re.compile(
    r"[\"“‘']([^\"”’'\n]{3,80})[\"”’']\s+(?:section|heading|part|chapter|page|docs?\b"
    r"|documentation|guide)"
    r"|\b(?:section|heading|chapter|under|titled|called)\s+[\"“‘']([^\"”’'\n]{3,80})[\"”’']",
    re.IGNORECASE,
)
_ZH_QUOTED_SECTION = re.compile(r"[“「]([^”」\n]{2,30})[”」](?:一节|一章|部分|章节|小节)")


def cited_section_names(answer: str) -> list[str]:
    """Titles of document sections an answer names as its source ('the "Retries" section')."""
    text = nfkc(answer)
    names = [m.group(1) or m.group(2) for m in _QUOTED_SECTION.finditer(text)]
    names += [m.group(1) for m in _ZH_QUOTED_SECTION.finditer(text)]
    return [n.strip() for n in names if n.strip()]


def _named_units(segment: str, units: tuple[Unit, ...]) -> set[int]:
    found = set()
    for name in cited_section_names(segment):
        key = squash(name)
        for i, u in enumerate(units):
            if u.kind == "heading" and key and key == squash(u.label):
                found.add(i)
    return found


def _claim_segments(answer: str, lang: str, units: tuple[Unit, ...]) -> list[tuple[set[int], str]]:
    """(cited unit indexes, text) for each citing sentence and the uncited ones after it."""
    from .support import split_sentences  # support imports this module

    out: list[tuple[set[int], str]] = []
    for sent in split_sentences(answer, lang):
        cited = cited_units(sent, units) | _named_units(sent, units)
        if cited:
            out.append((cited, sent))
        elif out:
            out[-1] = (out[-1][0], out[-1][1] + sent)
    return out


@lru_cache(maxsize=64)
def _unit_tokens(source: str, lang: str) -> tuple[tuple[frozenset[str], ...], Counter[str]]:
    from .support import support_tokens

    sets = tuple(frozenset(support_tokens(u.text, lang)) for u in source_units(source))
    df: Counter[str] = Counter(t for s in sets for t in s)
    return sets, df


def _cross_referenced(text: str, units: Sequence[Unit]) -> set[int]:
    """Units a provision's text cites, in any form ("第四十条", "the third article of
    amendment")."""
    refs = source_references(normalized(text))
    found = cited_units(text, units)
    for i, u in enumerate(units):
        if (u.kind, u.number) in refs or (u.kind == "article" and ("条", u.number) in refs):
            found.add(i)
    return found


def misattributed_units(
    answer: str, source: str, lang: str, *, margin: float = 0.35, ceiling: float = 0.5
) -> list[tuple[str, str]]:
    """(cited unit, the unit whose content the answer gives) where the two differ clearly.

    An answer that cites a provision of the source but restates another one: its words (CJK
    bigrams or English stems, weighted by how few provisions share them) match the other
    provision at least ``margin`` better, and the cited one at most ``ceiling``. A provision the
    matching one itself cites (a cross-reference: "依照第四十条的规定") is not a misattribution.
    """
    from .support import support_tokens

    units = source_units(source)
    if len(units) < 2:
        return []
    sets, df = _unit_tokens(source, lang)
    n = len(units)
    out = []
    for cited, text in _claim_segments(answer, lang, units):
        claim = list(dict.fromkeys(t for t in support_tokens(text, lang) if df[t]))
        if len(claim) < (6 if lang == "zh" else 4):
            continue
        weight = {t: math.log(1 + n / df[t]) for t in claim}
        total = sum(weight.values())
        scores = [sum(weight[t] for t in claim if t in s) / total for s in sets]
        best = max(range(n), key=scores.__getitem__)
        if best in cited:
            continue
        # A cross-reference restated with the provision that makes it ("依照第四十条的规定"),
        # unless the answer opens by attributing its content to it.
        lead = lead_citation(normalized(text), lang)
        opening = {
            i
            for kind, num in (lead[1] if lead else ())
            for i, u in enumerate(units)
            if u.number == num and (kind == u.kind or {kind, u.kind} <= {"条", "article"})
        }
        crossed = _cross_referenced(units[best].text, units) - opening
        cited_here = cited - crossed
        if not cited_here:
            continue
        top = max(scores[i] for i in cited_here)
        if scores[best] - top >= margin and top <= ceiling:
            label = units[min(cited_here, key=lambda i: scores[i])].label
            out.append((label, units[best].label))
    return out


def unknown_sections(answer: str, source: str, question: str = "") -> list[str]:
    """Section titles an answer cites as its source that the source and question never name."""
    known = squash(f"{source}\n{question}")
    return [name for name in cited_section_names(answer) if squash(name) not in known]
