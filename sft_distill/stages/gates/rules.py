"""Rule gates: fast pure-Python checks (no LLM) that drop obviously bad samples before judging.

Each gate is a small class with a ``name``, keyword options and an async ``check``; see
``registry.build_gates`` for how config entries become gates. Every drop says why in a short
sentence (``drop_detail`` in ``generated_raw.jsonl``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from difflib import SequenceMatcher
from typing import Any

from ...models import Sample
from .base import GateResult
from .checks.base import _CJK_CLASS, _CJK_RE, cjk_ratio, strip_code, strip_quoted
from .checks.provisions import is_case_question

KEEP = GateResult(keep=True)

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})


def _fold(text: str) -> str:
    """NFKC + casefold + straight quotes: the form phrase lists are matched against."""
    return unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).casefold()


# --- option checking (messages name the option; build_gates adds the gate index and type) ---


def _int_opt(option: str, value: Any, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{option} must be an integer >= {minimum}, got {value!r}")
    return value


def _float_opt(option: str, value: Any, *, low: float = 0.0, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{option} must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


def _str_list_opt(option: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"{option} must be a list of strings, got {value!r}")
    items = tuple(value)
    if not all(isinstance(v, str) and v.strip() for v in items):
        raise ValueError(f"{option} must be a list of non-empty strings, got {value!r}")
    return items


def _bool_opt(option: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{option} must be true or false, got {value!r}")
    return value


# --- length ----------------------------------------------------------------------------------


class LengthGate:
    """Drops a sample whose instruction or output is shorter or longer than the bounds (chars)."""

    def __init__(
        self,
        *,
        min_instruction_chars: int = 4,
        max_instruction_chars: int = 2000,
        min_output_chars: int = 8,
        max_output_chars: int = 20000,
        name: str = "length",
    ) -> None:
        self.name = name
        self.bounds = {
            "instruction": (
                _int_opt("min_instruction_chars", min_instruction_chars),
                _int_opt("max_instruction_chars", max_instruction_chars, minimum=1),
            ),
            "output": (
                _int_opt("min_output_chars", min_output_chars),
                _int_opt("max_output_chars", max_output_chars, minimum=1),
            ),
        }
        for field, (low, high) in self.bounds.items():
            if low > high:
                raise ValueError(f"min_{field}_chars ({low}) is above max_{field}_chars ({high})")

    async def check(self, sample: Sample) -> GateResult:
        """Keep when both lengths (stripped) are within bounds."""
        for field, (low, high) in self.bounds.items():
            n = len(getattr(sample, field).strip())
            if n < low:
                return GateResult(False, f"{field} too short ({n} < {low} chars)")
            if n > high:
                return GateResult(False, f"{field} too long ({n} > {high} chars)")
        return KEEP


# --- refusal ---------------------------------------------------------------------------------

# Refusals and apologies that are only refusals when the answer *starts* with them ("I cannot"
# in the middle of a legal answer is usually a quotation). Openings that are also ordinary
# answers ("I cannot stress enough", "作为人工智能的一个分支", "对不起、谢谢") are in
# DEFAULT_REFUSAL_START_PATTERNS instead, which ask for a refusal or a self-reference after them.
DEFAULT_REFUSAL_START_PHRASES: tuple[str, ...] = (
    "I'm sorry",
    "I am sorry",
    "Sorry, but",
    "Sorry, I",
    "I apologize",
    "I apologise",
    "My apologies",
    "I'm unable",
    "I am unable",
    "I'm not able to",
    "I am not able to",
    "I won't be able to",
    "Unfortunately, I cannot",
    "Unfortunately, I can't",
    "Unfortunately, I'm unable",
    "抱歉",
    "很抱歉",
    "非常抱歉",
    "我无法",
    "我不能",
    "我没有办法",
)
# Regexes for the start of the answer, matched against its folded form (NFKC, so "，" is ",";
# casefolded, so lower case; straight quotes).
_REFUSAL_VERBS = (
    r"(?:help|assist|provide|answer|comply|fulfil|fulfill|give|offer|share|respond|reply"
    r"|discuss|support|do\s+that|complete|create|generate|write|engage|access|browse|verify"
    r"|determine|confirm|predict)"
)
DEFAULT_REFUSAL_START_PATTERNS: tuple[str, ...] = (
    # "I cannot help/provide/answer...", not "I cannot stress enough".
    rf"i\s+(?:cannot|can't|can\s+not)\s+(?:really\s+|currently\s+)?{_REFUSAL_VERBS}\b",
    # "As an AI (language model / assistant), I ...", not "As an AI product manager, you".
    r"as\s+(?:an\s+ai|a\s+(?:large\s+)?language\s+model)"
    r"(?:\s+(?:language\s+model|model|assistant|chatbot))?\s*,?\s*i\b",
    # "作为一个AI语言模型，我", not "作为人工智能的一个分支" / "作为AI时代的基础设施".
    r"作为\s*(?:一个|一名|一款)?\s*(?:(?:ai|人工智能)\s*(?:语言模型|助手|助理|模型|机器人)?"
    r"|(?:大型)?语言模型)\s*,?\s*我",
    # "对不起，我无法...", not "对不起、谢谢、请是日常礼貌用语".
    r"对不起\s*[,!.。！]?\s*我(?:无法|不能|没有办法|不清楚|不知道|不太清楚|不确定|帮不了)",
)
# Phrases that mark a refusal or an AI disclaimer wherever they appear.
DEFAULT_REFUSAL_PHRASES: tuple[str, ...] = (
    "As an AI language model",
    "As an AI model",
    "as a large language model",
    "I'm just an AI",
    "I am just an AI",
    "I'm only an AI",
    "I'm sorry, but I can't",
    "I'm sorry, but I cannot",
    "I cannot fulfill this request",
    "I can't assist with that",
    "I cannot assist with that",
    "I can't help with that",
    "作为一个AI语言模型",
    "作为AI语言模型",
    "作为一个人工智能语言模型",
    "作为一个人工智能助手",
    "作为一个AI助手",
    "我只是一个AI",
    "我只是一个人工智能",
    "我是一个AI语言模型",
    "抱歉，我不能",
    "抱歉，我无法",
    "我无法回答这个问题",
    "无法满足您的请求",
)

# Leading markup an answer may start with before its first word.
_LEADING_MARKUP = re.compile(r"^[\s>#*_\-\"'“”‘’「『【(（]*")


def _phrase_pattern(phrase: str) -> str:
    """A regex for a folded phrase: flexible spaces, and no match inside a longer word."""
    folded = _fold(phrase).strip()
    parts: list[str] = []
    for ch in folded:
        if ch.isspace():
            if parts and not parts[-1].endswith(r"\s*"):
                parts.append(r"\s+")
        elif unicodedata.category(ch).startswith("P"):
            parts.append(re.escape(ch) + r"\s*")
        else:
            parts.append(re.escape(ch))
    body = "".join(parts)
    if folded[:1].isascii() and folded[:1].isalnum():
        body = r"(?<![a-z0-9])" + body
    if folded[-1:].isascii() and folded[-1:].isalnum():
        body += r"(?![a-z0-9])"
    return body


class _PhraseSet:
    """Phrases compiled into one regex; a match tells which phrase it was."""

    def __init__(self, phrases: Sequence[str]) -> None:
        # Longest first, so the reason quotes the most specific phrase.
        self.phrases = sorted({p for p in phrases if p.strip()}, key=lambda p: -len(_fold(p)))
        self.regex = re.compile(
            "|".join(f"(?P<p{i}>{_phrase_pattern(p)})" for i, p in enumerate(self.phrases))
            or r"(?!)"
        )

    def _phrase(self, m: re.Match[str] | None) -> str | None:
        if m is None or m.lastgroup is None:
            return None
        return self.phrases[int(m.lastgroup[1:])]

    def match(self, text: str) -> str | None:
        """The phrase ``text`` starts with."""
        return self._phrase(self.regex.match(text))

    def search(self, text: str) -> str | None:
        """The first phrase found in ``text``."""
        return self._phrase(self.regex.search(text))


class RefusalGate:
    """Drops refusals and apologies ("I'm sorry, but", "作为一个AI", "我无法"...), zh and en.

    ``start_phrases`` (and, with the defaults, ``DEFAULT_REFUSAL_START_PATTERNS``: "I cannot"
    followed by a refusal verb, "As an AI..., I", "作为AI…，我", "对不起，我无法") only count
    at the very start of the answer (after markup such as ``>`` or ``**``); ``phrases`` count
    anywhere, as whole phrases.
    """

    def __init__(
        self,
        *,
        extra_phrases: Sequence[str] = (),
        extra_start_phrases: Sequence[str] = (),
        use_defaults: bool = True,
        start_chars: int = 200,
        name: str = "refusal",
    ) -> None:
        self.name = name
        extra = _str_list_opt("extra_phrases", extra_phrases)
        extra_start = _str_list_opt("extra_start_phrases", extra_start_phrases)
        defaults = _bool_opt("use_defaults", use_defaults)
        self.start_chars = _int_opt("start_chars", start_chars, minimum=1)
        self._start_phrases = (*(DEFAULT_REFUSAL_START_PHRASES if defaults else ()), *extra_start)
        self._phrases = (*(DEFAULT_REFUSAL_PHRASES if defaults else ()), *extra)
        self._start = _PhraseSet(self._start_phrases)
        self._anywhere = _PhraseSet(self._phrases)
        self._start_patterns = tuple(
            re.compile(p) for p in (DEFAULT_REFUSAL_START_PATTERNS if defaults else ())
        )

    def find(self, text: str) -> str | None:
        """Why ``text`` is a refusal ("starts with 'I cannot'"), or None.

        Quoted speech (张某说“我不能接受…”) is someone else's words: it is left out, unless
        the whole answer is one quotation.
        """
        folded = _fold(strip_quoted(text))
        head = _LEADING_MARKUP.sub("", folded[: self.start_chars], count=1)
        phrase = self._start.match(head)
        if phrase is not None:
            return f"starts with {phrase!r}"
        for pattern in self._start_patterns:
            m = pattern.match(head)
            if m is not None:
                return f"starts with {m.group()!r}"
        phrase = self._anywhere.search(folded)
        if phrase is not None:
            return f"says {phrase!r}"
        return None

    async def check(self, sample: Sample) -> GateResult:
        """Keep unless the output starts with a refusal or contains a refusal phrase."""
        found = self.find(sample.output)
        if found is not None:
            return GateResult(False, f"refusal or apology: output {found}")
        return KEEP


# --- placeholder -----------------------------------------------------------------------------

# Who or what an unfilled 【…】 field names ("【公司名称】", "【投保人姓名】", "【签署日期】");
# a defined term such as "【保险金额】是指…" is not a field.
_FIELD_OWNER = (
    r"(?:公司|单位|企业|机构|甲方|乙方|丙方|投保人|被保险人|受益人|客户|用户|联系人|申请人"
    r"|收件人|当事人|联系)"
)
DEFAULT_PLACEHOLDER_PATTERNS: dict[str, str] = {
    # TBD is left out: "TBD" is an ordinary word in schedules and plans.
    "todo": r"(?<![A-Za-z])(?:TODO|FIXME)(?![A-Za-z])",
    "lorem_ipsum": r"(?i)lorem\s+ipsum",
    "placeholder_tag": r"(?i)[<\[{]\s*placeholder\b[^>\]}\n]{0,40}[>\]}]",
    # A short bracket asking for text: "[插入公司名称]", "【请填写姓名】", "[Insert address here]";
    # not "（补充说明：见第二十三条）", "（输入为字符串）" or "Press [Enter] to continue".
    "insert_bracket": (
        r"[\[【(（<]\s*(?:请\s*)?(?:在此处?)?(?:插入|填写|填入)[^\[\]【】()（）<>\n]{0,20}[\]】)）>]"
        r"|[\[【(（<]\s*请\s*(?:在此处?)?(?:补充|输入)[^\[\]【】()（）<>\n]{0,20}[\]】)）>]"
        r"|(?i:[\[<]\s*(?:insert|enter(?!\s+key\b)|add)\s+[^\]>\n]{1,60}[\]>])"
        r"|(?i:[\[<]\s*your\b[^\]>\n]{0,60}[\]>])"
    ),
    # Not after an adverb: "有待完善", "亟待完善", "尚待补充" are ordinary prose.
    "to_be_added": (
        r"(?<![有亟尚仍还急正均亦都尤更也期等])(?:待补充|待填写|待完善)|此处填写|此处省略"
    ),
    # "xxx", "XXXX", "XXX 公司"; a lone "XXX" after a capitalised word is a Roman numeral
    # ("Super Bowl XXX", "Chapter XXX") and is not counted (see _XXX_NUMERAL).
    "xxx": r"(?<![A-Za-z])(?:x{3,}|X{3,})(?![A-Za-z])",
    "template_braces": r"\{\{\s*[^{}\n]{0,60}\}\}|\{\{\s*$",
    # "[YOUR NAME]"; "【公司名称】" as a whole bracket (a name, date, amount... field).
    "unfilled_brackets": (
        r"\[[A-Z]{3,}(?:[ _][A-Z0-9]+)*\](?![(:])"
        rf"|[\[【]\s*(?:{_FIELD_OWNER}?(?:名称|姓名|名字|地址|电话|联系方式)"
        r"|(?:签署|签订|签约|生效|起始|开始|终止|结束)?日期|金额)\s*[\]】]"
        r"(?!\s*(?:是指|指的是|指))"
    ),
}
# "[ICU]" glossing the term before it ("重症监护病房[ICU]", "intensive care unit [ICU]") is an
# abbreviation; "[NAME]" or "[MANAGER]" in running text is a field left empty.
# fmt: off
_PLACEHOLDER_WORDS = frozenset([
    "NAME", "DATE", "ADDRESS", "COMPANY", "PHONE", "EMAIL", "CITY", "TITLE", "AMOUNT", "PRODUCT",
    "NUMBER", "SIGNATURE", "ZIP", "COUNTRY", "URL", "LINK", "ORGANIZATION", "ORGANISATION",
    "POSITION", "ROLE", "TIME", "LOCATION", "PLACE", "RECIPIENT", "SENDER", "CLIENT", "CUSTOMER",
    "INSURER", "POLICY", "PRICE", "VALUE", "TEXT", "CONTENT",
])
# fmt: on
_BRACKET_TOKEN = re.compile(r"\[([A-Z]{2,})\]")


def _is_abbreviation(text: str, start: int, token: str) -> bool:
    """Whether "[TOKEN]" at ``start`` abbreviates the term just before it."""
    if token in _PLACEHOLDER_WORDS:
        return False
    before = text[max(0, start - 60) : start]
    if _CJK_RE.search(before[-1:]):
        return True
    words = re.findall(r"[A-Za-z]+", before)[-len(token) :]
    return len(words) == len(token) and "".join(w[0] for w in words).upper() == token


# A capitalised word (not a salutation) then "XXX": a Roman numeral thirty, not a placeholder.
_XXX_NUMERAL = re.compile(
    r"(?<![A-Za-z])(?!(?:Dear|Hi|Hello|To|From|Name|Attn|Contact)\b)[A-Z][A-Za-z]*[ \t]+$"
)


class PlaceholderGate:
    """Drops text left as a template ("TODO", "[插入…]", "Lorem ipsum", "xxx", "待补充"...).

    Built-in patterns (names for ``ignore``): ``DEFAULT_PLACEHOLDER_PATTERNS``, covering also
    "<placeholder>", ``{{name}}``, "[YOUR NAME]" and "【公司名称】". A match that also appears
    in the sample's source text or input is not counted (the slice itself may quote a template).
    """

    def __init__(
        self,
        *,
        extra_patterns: Sequence[str] = (),
        ignore: Sequence[str] = (),
        fields: Sequence[str] = ("instruction", "output"),
        name: str = "placeholder",
    ) -> None:
        self.name = name
        ignored = set(_str_list_opt("ignore", ignore))
        unknown = sorted(ignored - set(DEFAULT_PLACEHOLDER_PATTERNS))
        if unknown:
            raise ValueError(
                f"ignore: unknown pattern(s) {unknown}; known: "
                f"{', '.join(DEFAULT_PLACEHOLDER_PATTERNS)}"
            )
        self.fields = _str_list_opt("fields", fields)
        bad = sorted(set(self.fields) - {"instruction", "input", "output"})
        if bad:
            raise ValueError(f"fields: unknown field(s) {bad}; known: instruction, input, output")
        self.patterns: dict[str, re.Pattern[str]] = {
            k: re.compile(v) for k, v in DEFAULT_PLACEHOLDER_PATTERNS.items() if k not in ignored
        }
        for i, pat in enumerate(_str_list_opt("extra_patterns", extra_patterns)):
            try:
                self.patterns[f"extra_{i}"] = re.compile(pat)
            except re.error as exc:
                raise ValueError(f"extra_patterns[{i}]: invalid regex {pat!r}: {exc}") from None

    def find(self, text: str, context: str = "") -> str | None:
        """The first placeholder in ``text`` that ``context`` does not itself contain."""
        for key, pattern in self.patterns.items():
            for m in pattern.finditer(text):
                found = m.group().strip()
                if not found or found in context:
                    continue
                if (
                    key == "xxx"
                    and found == "XXX"
                    and _XXX_NUMERAL.search(text, max(0, m.start() - 40), m.start())
                ):
                    continue
                token = _BRACKET_TOKEN.fullmatch(found)
                if (
                    key == "unfilled_brackets"
                    and token
                    and _is_abbreviation(text, m.start(), token.group(1))
                ):
                    continue
                return found
        return None

    async def check(self, sample: Sample) -> GateResult:
        """Keep unless a checked field holds placeholder text."""
        context = f"{sample.source_text}\n{sample.input}"
        # [电话], [PHONE], [姓名] written by the pii gate stand for redacted values, not for
        # text left unfilled: the gate lists the ones it wrote.
        pii = sample.annotations.get("pii")
        written = pii.get("placeholders") if isinstance(pii, dict) else None
        if isinstance(written, list):
            context += "\n" + "\n".join(p for p in written if isinstance(p, str))
        for field in self.fields:
            text = getattr(sample, field)
            found = self.find(text, "" if field == "input" else context)
            if found is not None:
                return GateResult(False, f"placeholder text in {field}: {found[:40]!r}")
        return KEEP


# --- echo ------------------------------------------------------------------------------------

_NON_WORD = re.compile(r"[\W_]+")


def _squash(text: str) -> str:
    """Folded text with every space, punctuation mark and symbol removed."""
    return _NON_WORD.sub("", _fold(text))


class EchoGate:
    """Drops an answer that only repeats the instruction (similar, or contained in it)."""

    def __init__(
        self, *, threshold: float = 0.85, min_containment: float = 0.5, name: str = "echo"
    ) -> None:
        self.name = name
        self.threshold = _float_opt("threshold", threshold)
        self.min_containment = _float_opt("min_containment", min_containment)

    def similarity(self, instruction: str, output: str) -> float:
        """Similarity 0..1 of the normalised texts.

        1.0 when the output is inside the instruction and at least ``min_containment`` of its
        length; the share of the output made of copies of the instruction when that is higher.
        """
        a, b = _squash(instruction), _squash(output)
        if not a or not b:
            return 0.0
        if b in a and len(b) >= self.min_containment * len(a):
            return 1.0
        if a in b:
            # The instruction copied (maybe more than once) with little else around it.
            coverage = 1.0 - len(b.replace(a, "")) / len(b)
            if coverage >= self.threshold:
                return coverage
        # Upper bound of SequenceMatcher.ratio from the lengths: skip the O(n*m) work when
        # it cannot reach the threshold (answers are usually much longer than questions).
        if 2 * min(len(a), len(b)) / (len(a) + len(b)) < self.threshold:
            return 0.0
        return SequenceMatcher(None, a, b, autojunk=False).ratio()

    async def check(self, sample: Sample) -> GateResult:
        """Keep unless the output is (nearly) the instruction."""
        sim = self.similarity(sample.instruction, sample.output)
        if sim >= self.threshold:
            return GateResult(False, f"output only repeats the instruction (similarity {sim:.2f})")
        return KEEP


# --- language --------------------------------------------------------------------------------


class LanguageGate:
    """Drops an answer in the wrong language (Chinese slice, mostly English answer, or reverse).

    Measured by the share of CJK characters among CJK characters and Latin letters;
    code (fenced, inline, or lines that look like code) is left out, and an answer with too
    little prose left is kept. The slice is ``source_text``, or the instruction when there is
    none.
    """

    def __init__(
        self,
        *,
        zh_source_min: float = 0.3,
        en_source_max: float = 0.05,
        zh_answer_min: float = 0.2,
        en_answer_max: float = 0.5,
        min_letters: int = 20,
        source_chars: int = 5000,
        name: str = "language",
    ) -> None:
        self.name = name
        self.zh_source_min = _float_opt("zh_source_min", zh_source_min)
        self.en_source_max = _float_opt("en_source_max", en_source_max)
        self.zh_answer_min = _float_opt("zh_answer_min", zh_answer_min)
        self.en_answer_max = _float_opt("en_answer_max", en_answer_max)
        self.min_letters = _int_opt("min_letters", min_letters, minimum=1)
        self.source_chars = _int_opt("source_chars", source_chars, minimum=100)
        if self.en_source_max >= self.zh_source_min:
            raise ValueError("en_source_max must be below zh_source_min")

    def expected(self, sample: Sample) -> str | None:
        """'zh', 'en', or None (mixed or too little text) for the sample's slice."""
        basis = sample.source_text if sample.source_text.strip() else sample.instruction
        ratio, counted = cjk_ratio(strip_code(basis[: self.source_chars]))
        if counted < self.min_letters:
            return None
        if ratio >= self.zh_source_min:
            return "zh"
        if ratio <= self.en_source_max:
            return "en"
        return None

    async def check(self, sample: Sample) -> GateResult:
        """Keep unless the answer's prose is in the other language."""
        want = self.expected(sample)
        if want is None:
            return KEEP
        ratio, counted = cjk_ratio(strip_code(sample.output))
        if counted < self.min_letters:
            return KEEP
        if want == "zh" and ratio < self.zh_answer_min:
            return GateResult(False, f"Chinese slice, mostly English answer (CJK {ratio:.0%})")
        if want == "en" and ratio > self.en_answer_max:
            return GateResult(False, f"English slice, mostly Chinese answer (CJK {ratio:.0%})")
        return KEEP


# --- grounding -------------------------------------------------------------------------------

_TOKEN_RE = re.compile(f"[{_CJK_CLASS}]+|[a-z0-9_]+(?:['.][a-z0-9_]+)*")
# fmt: off
_STOPWORDS = frozenset([
    "a", "an", "the", "of", "to", "in", "on", "at", "by", "for", "with", "as", "is", "are",
    "was", "were", "be", "been", "it", "its", "this", "that", "these", "those", "and", "or",
    "not", "no", "but", "if", "then", "so", "do", "does", "did", "can", "may", "must", "shall",
    "will", "would", "should",
])
# fmt: on


def grounding_tokens(text: str, ngram: int = 3) -> set[str]:
    """Character ``ngram``-grams of CJK runs and the words (minus stopwords) of the rest."""
    tokens: set[str] = set()
    for m in _TOKEN_RE.finditer(_fold(text)):
        tok = m.group()
        if _CJK_RE.match(tok):
            if len(tok) <= ngram:
                tokens.add(tok)
            else:
                tokens.update(tok[i : i + ngram] for i in range(len(tok) - ngram + 1))
        elif tok not in _STOPWORDS and len(tok) > 1:
            tokens.add(tok)
    return tokens


class GroundingGate:
    """Drops an answer with little overlap with its source slice.

    The overlap is the share of the output's distinct tokens (CJK character n-grams, other
    words minus stopwords) found in ``source_text`` plus the sample's instruction and input; it
    is recorded as ``grounding_overlap``. An answer to a case question ("张某……能否……？",
    "Suppose a Senator…") applies the rule in its own words, so ``case_min_overlap`` applies
    instead of ``min_overlap``. A sample without source text is kept unchecked.
    """

    def __init__(
        self,
        *,
        min_overlap: float = 0.2,
        case_min_overlap: float = 0.1,
        ngram: int = 3,
        min_tokens: int = 5,
        name: str = "grounding",
    ) -> None:
        self.name = name
        self.min_overlap = _float_opt("min_overlap", min_overlap)
        self.case_min_overlap = _float_opt("case_min_overlap", case_min_overlap)
        self.ngram = _int_opt("ngram", ngram, minimum=1)
        self.min_tokens = _int_opt("min_tokens", min_tokens, minimum=1)
        # Samples of one chunk share its text and arrive together: tokenise it once.
        self._last: tuple[str, set[str]] | None = None

    def _source_tokens(self, text: str) -> set[str]:
        if self._last is not None and self._last[0] == text:
            return self._last[1]
        tokens = grounding_tokens(text, self.ngram)
        self._last = (text, tokens)
        return tokens

    def overlap(self, sample: Sample) -> float | None:
        """Share of output tokens found in the source (None when there is nothing to compare)."""
        if not sample.source_text.strip():
            return None
        out = grounding_tokens(sample.output, self.ngram)
        if len(out) < self.min_tokens:
            return None
        # An answer may restate its question (a case's names and facts).
        asked = grounding_tokens(f"{sample.instruction}\n{sample.input}", self.ngram)
        source = self._source_tokens(sample.source_text) | asked
        return len(out & source) / len(out)

    async def check(self, sample: Sample) -> GateResult:
        """Keep unless the output's overlap with the source is under the floor."""
        ov = self.overlap(sample)
        if ov is None:
            return KEEP
        notes = {"grounding_overlap": round(ov, 3)}
        question = f"{sample.instruction}\n{sample.input}"
        floor = (
            self.case_min_overlap
            if is_case_question(question, source=sample.source_text)
            else self.min_overlap
        )
        if ov < floor:
            return GateResult(
                False,
                f"little overlap with the source ({ov:.0%} of output tokens, min {floor:.0%})",
                notes,
            )
        return GateResult(True, None, notes)
