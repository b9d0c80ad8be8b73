"""Is what the answer says in the source? Sentence-level support for direct questions.

Support is the share of a text's tokens (CJK character bigrams, stemmed English content words;
numbers and citations left out) found in the provision the question names, or in the whole
source when it names none. It catches an invented rule appended to a faithful answer, and an
answer that restates some other provision under the asked one's name. Case and calculation
answers apply the rule in their own words, so they are not checked here.

Every finding here is a suspicion (``Finding.certain`` is False): a figure or name merely absent
from the source, or a share of words under a floor, says the source does not state something,
not that it states otherwise. The support gate sends such samples to the judges by default.
"""

from __future__ import annotations

import re
import sys
from functools import lru_cache

from .base import CJK, Finding, detect_lang, nfkc, normalized
from .numbers import unsupported_quantities
from .provisions import is_case_question, references, source_units, target_passage

_ZH_SENTENCE_END = re.compile(r"(?<=[。！？!?；;])|\n+")
# Not after "U.S." or "Mr.": the full stop must follow a lower-case letter, digit or bracket.
_EN_SENTENCE_END = re.compile(r"(?<=[a-z0-9)\]\"”'][.!?;])\s+(?=[A-Z(\"“])|(?<=;)\s+|\n+")
_EN_WORD = re.compile(r"[a-z0-9]+")
# fmt: off
_EN_STOP = frozenset([
    "a", "an", "the", "of", "to", "in", "on", "at", "by", "for", "with", "as", "is", "are", "was",
    "were", "be", "been", "being", "it", "its", "this", "that", "these", "those", "and", "or",
    "not", "no", "but", "if", "then", "so", "do", "does", "did", "can", "may", "must", "shall",
    "will", "would", "should", "which", "who", "whom", "whose", "what", "when", "where", "how",
    "any", "all", "each", "every", "such", "other", "than", "there", "their", "they", "he", "she",
    "his", "her", "him", "them", "from", "into", "upon", "under", "over", "has", "have", "had",
    "also", "more", "most", "during", "within", "without", "before", "after", "same", "only",
    "very",
])
# fmt: on
# A sentence stating a rule (who must, may or shall do what): the kind an invented rule is.
_ZH_RULE_WORDS = re.compile(
    r"应当|应|不得|必须|须|可以|有权|无权|不承担|承担|视为|无效|有效|罚款|赔偿|支付|退还|解除|"
    r"以内|以上|以下|之日起|期限|不超过|不少于|一律|垫付|负担|不低于|不高于|至少|最多|最长|最短"
    r"|上调|下调|增加|减少|提高|降低|应予|须经|方可|生效|失效"
)
_EN_RULE_WORDS = re.compile(
    r"\b(?:shall|must|may|cannot|can\s+not|is\s+entitled|are\s+entitled|is\s+required"
    r"|are\s+required|is\s+prohibited|prohibited|required|within|no\s+later|at\s+least"
    r"|not\s+exceeding|exempt|void|entitled|liable|penalty|penalties|fine|fined|forfeit|forfeits"
    r"|waive|waived|only|never|no\s+\w+\s+(?:shall|may|can)|need\s+not|is\s+not\s+allowed"
    r"|are\s+not\s+allowed|defaults?|by\s+default|up\s+to|at\s+most"
    r"|no\s+more\s+than|is\s+logged|are\s+logged|is\s+reset|is\s+doubled|is\s+halved)\b",
    re.IGNORECASE,
)
# Advice an answer adds in its own words ("建议…", "you should…") is no claim about the law.
_ADVICE = re.compile(
    r"建议|提醒|最好|务必|请注意|需要注意|温馨提示|\b(?:recommend\w*|advis\w*|should"
    r"|keep\s+in\s+mind|note\s+that|it\s+is\s+wise)\b",
    re.IGNORECASE,
)
# A sentence that restates the one before in other words ("也就是说……", "in other words") adds
# no rule of its own.
_GLOSS = re.compile(
    r"也就是说|换句话说|换言之|即是说|简单来说|简而言之|通俗地说|通俗来讲|这意味着|意思是"
    r"|\b(?:in\s+other\s+words|that\s+is\s+to\s+say|this\s+means|put\s+simply|in\s+short"
    r"|i\.e\.)",
    re.IGNORECASE,
)
# An example the answer makes up ("例如，保费为1000元的……", "e.g. `Timeout(5.0)`") has its own
# figures: they are no claim about the source.
_EXAMPLE = re.compile(
    r"例如|比如|譬如|举例|举个例子|假设|假如|打个比方|\be\.g\.|\b(?:for\s+example|for\s+instance"
    r"|say|suppose|supposing|imagine|hypothetically)\b",
    re.IGNORECASE,
)
# A comparison with a norm outside the source ("比常见的一百八十日更短", "shorter than the
# usual 30 days") brings its own figures; "larger than 1 MB" is a threshold, and is checked.
_COMPARISON = re.compile(
    r"(?:比|相比|相较|不同于|不像)[^，。；,;]{0,6}(?:常见|一般|通常|普通|其他|其它|市面|行业|同类|多数|平均)"
    r"|\b(?:than|compared\s+(?:to|with)|unlike|versus)\s+(?:the\s+|a\s+|an\s+)?(?:usual|typical"
    r"|common|customary|standard|average|normal|most|other|many)\b",
    re.IGNORECASE,
)
# Code names an answer gives in backticks (`max_retries`, `httpx.Limits`, `ClientSession`).
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_CODE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
# An API-like name: snake_case, CamelCase, CONSTANT_CASE or dotted (not a plain word).
_API_LIKE = re.compile(r"_|[a-z][A-Z]|^[A-Z][a-z]+[A-Z]|\.")
# Placeholders a user picks ("my_func", "example_client").
_PLACEHOLDER = re.compile(r"^(?:my|your|our|some|example|foo|bar|baz)(?:_|[A-Z]|$)", re.IGNORECASE)
_DEFINED = re.compile(r"\b(?:def|class)\s+([A-Za-z_]\w*)|\b([A-Za-z_]\w*)\s*=(?!=)")


def unknown_code_names(output: str, known: str) -> list[str]:
    """API names in an answer's inline code that ``known`` (source and question) lacks.

    A dotted name counts when its last part is unknown, or when its package is neither known
    nor in Python's standard library (another library's API: ``aiohttp.BasicAuth``); an
    undotted one when it looks like an API name (``status_forcelist``, ``ClientSession``).
    Plain words, names the answer defines itself and placeholders (``my_func``) do not count.
    """
    known_cf = known.casefold()
    defined = {a or b for a, b in _DEFINED.findall(output)}
    out = []
    for span in _CODE_SPAN.finditer(output):
        for name in _CODE_NAME.findall(span.group(1)):
            parts = name.split(".")
            head, last = parts[0], parts[-1]
            if head in defined or _PLACEHOLDER.match(head) or not _API_LIKE.search(name):
                continue
            if len(parts) > 1 and head in sys.stdlib_module_names:
                continue  # the standard library is not the source's to document
            unknown_last = len(last) >= 4 and last.casefold() not in known_cf
            foreign = (
                len(parts) > 1
                and head.casefold() not in known_cf
                and head not in sys.stdlib_module_names
            )
            if (unknown_last or foreign) and name not in out:
                out.append(name)
    return out


# Citations ("根据《保险法》第十六条", "Under Article I, Section 2 of the U.S. Constitution") say
# where an answer claims to come from, not what it says.
_CITATION = re.compile(
    r"《[^》]*》|第\s*[0-9一二三四五六七八九十百千零〇两]+\s*[条款项章节编]"
    r"|\b(?:Article|Section|Amendment|Clause)\s+[0-9IVXLC]+\b(?:\s*,)?"
    r"|\b(?:of\s+)?the\s+(?:U\.\s*S\.|United\s+States)\s+Constitution\b",
    re.IGNORECASE,
)


def split_sentences(text: str, lang: str) -> list[str]:
    """Sentences of ``text`` (Chinese or English end punctuation, semicolons, line breaks)."""
    parts = (_ZH_SENTENCE_END if lang == "zh" else _EN_SENTENCE_END).split(nfkc(text))
    return [p.strip() for p in parts if p and p.strip()]


def _stem(word: str) -> str:
    """A crude English stem: enough for "judges"/"judge", "appointed"/"appointment" to meet."""
    for suffix in ("ments", "ment", "ings", "ing", "ions", "ion", "ies", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 4 else word


def support_tokens(text: str, lang: str) -> list[str]:
    """CJK character bigrams (zh) or stemmed content words (en), without numbers or citations.

    Numbers are the numbers check's business; here they would only add chance matches.
    """
    text = _CITATION.sub(" ", normalized(text))
    if lang == "zh":
        grams: list[str] = []
        for run in re.findall(f"[{CJK}]+", text):
            grams.extend([run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)])
        return grams
    words = _EN_WORD.findall(text.casefold())
    return [_stem(w) for w in words if w not in _EN_STOP and not w.isdigit()]


@lru_cache(maxsize=256)
def _token_set(text: str, lang: str) -> frozenset[str]:
    return frozenset(support_tokens(text, lang))


@lru_cache(maxsize=64)
def _unit_token_sets(source: str, lang: str) -> tuple[frozenset[str], ...]:
    """The token sets of the source's provisions (articles or sections) and of the text outside
    them, or of the whole."""
    units = source_units(source)
    if len(units) < 2:
        return (_token_set(source, lang),)
    # Text outside every provision (a preamble, a definitions part) states rules too.
    rest = source
    for u in units:
        rest = rest.replace(u.text, "\n", 1)
    return tuple(frozenset(support_tokens(t, lang)) for t in (*(u.text for u in units), rest))


def _best_unit_support(toks: list[str], source: str, lang: str) -> float:
    """The largest share of ``toks`` that one provision of the source has."""
    return max(sum(t in s for t in toks) / len(toks) for s in _unit_token_sets(source, lang))


def sentence_support(
    output: str, source: str, question: str = "", *, lang: str | None = None
) -> list[tuple[str, float, int]]:
    """(sentence, share of its tokens in the named provision or source, tokens) per sentence."""
    lang = lang or detect_lang(source, output)
    target = target_passage(source, question, lang)
    known = _token_set(target if target is not None else source, lang)
    rows = []
    for sent in split_sentences(output, lang):
        toks = support_tokens(sent, lang)
        if toks:
            rows.append((sent, sum(t in known for t in toks) / len(toks), len(toks)))
    return rows


# The answer's own working ("3 × 600 s = 1800 s", "合计…", "in total"): its results are
# computed, not claimed from the source.
_WORKING = re.compile(
    r"[0-9)）]\s*[=×÷*+≈]|[=×÷*+≈]\s*[0-9(（$]|乘以|除以|加上|减去|合计|共计|总计|一共|总共"
    r"|\b(?:in\s+total|altogether|adds?\s+up"
    r"|times|multiplied|divided)\b",
    re.IGNORECASE,
)


def _case_invented_figure(output: str, source: str, question: str, lang: str) -> Finding | None:
    """In a case answer to a question with no figures of its own, a rule sentence's figure that
    the source lacks: without the question's numbers no arithmetic can have produced it."""
    if re.search(r"\d", normalized(question)):
        return None  # its figures, dates included, may feed the answer's arithmetic
    rule_words = _ZH_RULE_WORDS if lang == "zh" else _EN_RULE_WORDS
    for sent in split_sentences(output, lang):
        if not rule_words.search(sent) or _ADVICE.search(sent) or _GLOSS.search(sent):
            continue
        if _EXAMPLE.search(sent) or _WORKING.search(sent):
            continue
        new = unsupported_quantities(sent, source, question, lang=lang)
        if new:
            return Finding(
                f"states {new[0].text}, which the source does not: {sent[:60]!r}",
                {"sentence": sent, "unsupported_quantities": [q.text for q in new]},
                certain=False,
            )
    return None


def find_unsupported(
    output: str,
    source: str,
    question: str = "",
    *,
    lang: str | None = None,
    min_sentence_support: float = 0.5,
    min_answer_support: float = 0.35,
    min_source_support: float = 0.4,
    min_tokens: int | None = None,
) -> Finding | None:
    """A rule sentence the source does not support, or an answer restating another provision.

    Only answers to direct questions ("第十六条规定了什么？", "How long is a Senator's term?")
    are checked (see the module docstring).

    - A sentence (not advice, a gloss or a made-up example) stating a figure with a unit that
      neither the source nor the question has, and that no arithmetic explains, is unsupported.
    - A sentence stating a rule ("…应当…", "… shall …"; not advice) whose support is under
      ``min_sentence_support`` looks invented. A sentence citing another article of the source
      is measured against the whole source.
    - An answer whose own words (those not in the question) share under ``min_answer_support``
      with the provision the question names, or under ``min_source_support`` with the whole
      source when it names none, restates some other provision.

    ``min_tokens`` (default 8 bigrams in Chinese, 4 words in English) skips short sentences.
    """
    if not source.strip():
        return None
    lang = lang or detect_lang(source, output)
    if is_case_question(question, lang, source=source):
        return _case_invented_figure(output, source, question, lang)
    if min_tokens is None:
        min_tokens = 8 if lang == "zh" else 4
    target = target_passage(source, question, lang)
    src_tokens = _token_set(source, lang)
    tgt_tokens = _token_set(target, lang) if target is not None else src_tokens
    rule_words = _ZH_RULE_WORDS if lang == "zh" else _EN_RULE_WORDS
    names = unknown_code_names(output, f"{source}\n{question}")
    if names:
        return Finding(
            f"names {', '.join(names[:3])}, which the source does not mention",
            {"unknown_code_names": names},
            certain=False,
        )
    answer_tokens: list[str] = []
    for sent in split_sentences(output, lang):
        toks = support_tokens(sent, lang)
        answer_tokens.extend(toks)
        own_words = _ADVICE.search(sent) or _GLOSS.search(sent)
        if not own_words:
            found = _unsupported_figure(sent, source, question, lang, rule_words)
            if found is not None:
                return found
        if len(toks) < min_tokens or not rule_words.search(sent) or own_words:
            continue
        # The question is no evidence for a rule: its words do not count as support here. A
        # rule is stated by one provision: support is the best provision's share (the named
        # one's, when the question names one and the sentence cites no other).
        if target is not None and not references(normalized(sent)):
            support = sum(t in tgt_tokens for t in toks) / len(toks)
        else:
            support = _best_unit_support(toks, source, lang)
        if support < min_sentence_support:
            return Finding(
                f"sentence not supported by the source ({support:.0%} of its words): {sent[:60]!r}",
                {"sentence": sent, "sentence_support": round(support, 3)},
                certain=False,
            )
    own = [t for t in answer_tokens if t not in _token_set(question, lang)]
    if len(own) < min_tokens:
        return None
    floor = min_answer_support if target is not None else min_source_support
    return _answer_support(own, tgt_tokens, floor, named=target is not None)


def _unsupported_figure(
    sent: str, source: str, question: str, lang: str, rule_words: re.Pattern[str]
) -> Finding | None:
    """A figure with a unit that neither the source nor the question has, and no arithmetic
    explains: a claim the source does not make, whether or not the sentence is worded as a rule
    ("保险费按主险费率的百分之三十计收", "the nonce is cached for 5 minutes"); not in a made-up
    example or the answer's own working ("…合计150日"). Outside a rule, how often something is
    done is the answer's narration ("create the client once and reuse it"): only measured
    figures (periods, ages, amounts, shares) count."""
    if _EXAMPLE.search(sent) or _WORKING.search(sent):
        return None
    new = unsupported_quantities(sent, source, question, lang=lang)
    aside = _COMPARISON.search(normalized(sent))
    if aside:
        # the figures of other products or practice, compared with: not a rule here
        new = [q for q in new if q.start < aside.start()]
    if not rule_words.search(sent):
        new = [q for q in new if q.unit != "multiple"]
    if not new:
        return None
    return Finding(
        f"states {new[0].text}, which the source does not: {sent[:60]!r}",
        {"sentence": sent, "unsupported_quantities": [q.text for q in new]},
        certain=False,
    )


def _answer_support(
    own: list[str], tgt_tokens: frozenset[str], floor: float, *, named: bool
) -> Finding | None:
    """An answer whose own words share under ``floor`` with the provision (or source)."""
    support = sum(t in tgt_tokens for t in own) / len(own)
    if support >= floor:
        return None
    where = "the provision asked about" if named else "the source"
    return Finding(
        f"answer shares only {support:.0%} of its own words with {where}",
        {"answer_support": round(support, 3)},
        certain=False,
    )
