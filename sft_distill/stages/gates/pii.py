"""The PII gate: personal data found in a sample is redacted (the default), dropped or only tagged.

``redact`` replaces the spans ``pii_detect.find_pii`` finds with typed placeholders, the same
value with the same placeholder everywhere in a sample (``[手机号1]``, ``[手机号2]`` when a
sample has two numbers); ``PiiGate`` runs both on every generated sample (modes ``redact``,
``drop``, ``tag``) and ``scrub_slice_text`` on a slice before the teacher sees it. What is
found is reported as types, fields and offsets, never as text.
"""

from __future__ import annotations

import importlib
import ipaddress
import logging
import re
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ...models import Sample
from .base import GateResult, resolve_path
from .checks.base import cjk_ratio
from .pii_detect import (
    _AREA_GROUPS,
    _LANDLINE_RE,
    _PRIORITY,
    PII_TYPES,
    NerHook,
    PiiDetector,
    PiiSpan,
    find_pii,
    normalize_types,
)

DEFAULT_PLACEHOLDERS: dict[str, dict[str, str]] = {
    "zh": {
        "id_number": "[身份证号]",
        "mobile": "[手机号]",
        "landline": "[电话]",
        "bank_card": "[银行卡号]",
        "email": "[EMAIL]",
        "ip": "[IP]",
        "passport": "[护照号]",
        "name": "[姓名]",
    },
    "en": {
        "id_number": "[ID_NUMBER]",
        "mobile": "[PHONE]",
        "landline": "[PHONE]",
        "bank_card": "[BANK_CARD]",
        "email": "[EMAIL]",
        "ip": "[IP]",
        "passport": "[PASSPORT]",
        "name": "[NAME]",
    },
}


LANGS = ("auto", "zh", "en")


MODES = ("redact", "drop", "tag")


# Sample fields the gate may scan; reasoning, reference_output and the evidence quotes are
# written to the outputs too (the quotes to generated_raw.jsonl only).
SAMPLE_FIELDS = ("instruction", "input", "output", "reasoning", "reference_output", "evidence")


# The chunk text among the fields redacted together (never written to the outputs).
_SOURCE = "source_text"


# Chunk texts whose spans a gate remembers (samples of a chunk arrive close together).
_SOURCE_CACHE = 64


def _value_key(kind: str, value: str) -> str:
    """What makes two mentions the same value (138 0013 8000 = +86-138-0013-8000)."""
    if kind == "mobile":
        return re.sub(r"[^0-9]", "", value)[-11:]  # without +86 / 0086
    if kind == "landline":
        m = _LANDLINE_RE.fullmatch(value)
        if m is None:  # written as one run
            return re.sub(r"[^0-9]", "", value)
        area = next(g for g in map(m.group, _AREA_GROUPS) if g is not None)
        ext = re.sub(r"[^0-9]", "", value[m.end("local") :])
        return f"0{area}{re.sub(r'[^0-9]', '', m.group('local'))}" + (f"x{ext}" if ext else "")
    if kind in ("id_number", "bank_card", "passport"):
        return re.sub(r"[ \-]", "", value).upper()
    if kind == "ip":
        try:
            return str(ipaddress.ip_address(value.split("%", 1)[0]))
        except ValueError:
            return value
    return value.casefold()


def detect_lang(fields: Mapping[str, str], spans: Mapping[str, Sequence[PiiSpan]]) -> str:
    """'zh' or 'en' for a sample's text with the personal data left out."""
    parts = []
    for field, text in fields.items():
        pos = 0
        for s in spans.get(field, ()):
            parts.append(text[pos : s.start])
            pos = s.end
        parts.append(text[pos:])
    ratio, counted = cjk_ratio(" ".join(parts))
    return "zh" if counted == 0 or ratio >= 0.2 else "en"


def _numbered(placeholder: str, n: int) -> str:
    """``[手机号]`` -> ``[手机号2]``; a placeholder without a closing bracket gets the number."""
    if placeholder[-1:] in ("]", "】", ">", ")", "}"):
        return f"{placeholder[:-1]}{n}{placeholder[-1]}"
    return f"{placeholder}{n}"


def placeholder_table(
    lang: str, overrides: Mapping[str, str | Mapping[str, str]] | None = None
) -> dict[str, str]:
    """Placeholder per type for ``lang``; an override is a string or ``{"zh": .., "en": ..}``."""
    table = dict(DEFAULT_PLACEHOLDERS[lang])
    for kind, value in (overrides or {}).items():
        if isinstance(value, str):
            table[kind] = value
        elif lang in value:
            table[kind] = value[lang]
    return table


def redact(
    fields: Mapping[str, str],
    spans: Mapping[str, Sequence[PiiSpan]] | None = None,
    *,
    lang: str = "auto",
    placeholders: Mapping[str, str | Mapping[str, str]] | None = None,
) -> tuple[dict[str, str], dict[str, Any]]:
    """Fields with every span replaced, and a summary of types, fields and offsets (no values).

    One value gets one placeholder in every field; when a placeholder stands for several values
    in the sample they are numbered in order of first appearance (``[手机号1]``, ``[手机号2]``).
    ``spans`` are offsets in the given fields (found with ``find_pii`` when None).
    """
    if spans is None:
        spans = {f: find_pii(t) for f, t in fields.items()}
    _choice_opt("lang", lang, LANGS)
    if lang == "auto":
        lang = detect_lang(fields, spans)
    table = placeholder_table(lang, placeholders)
    # Distinct values per placeholder, in order of first appearance across the fields.
    keys: dict[str, dict[str, int]] = {}
    for field, text in fields.items():
        for s in spans.get(field, ()):
            base = table[s.type]
            seen = keys.setdefault(base, {})
            seen.setdefault(_value_key(s.type, text[s.start : s.end]), len(seen) + 1)
    out: dict[str, str] = {}
    records: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    written: dict[str, list[str]] = {}
    for field, text in fields.items():
        pieces = []
        pos = 0
        for s in sorted(spans.get(field, ()), key=lambda s: s.start):
            base = table[s.type]
            number = keys[base][_value_key(s.type, text[s.start : s.end])]
            placeholder = _numbered(base, number) if len(keys[base]) > 1 else base
            pieces += [text[pos : s.start], placeholder]
            pos = s.end
            counts[s.type] += 1
            records.append({"field": field, "type": s.type, "start": s.start, "end": s.end})
            if placeholder not in written.setdefault(field, []):
                written[field].append(placeholder)
        pieces.append(text[pos:])
        out[field] = "".join(pieces)
    summary = {
        "counts": dict(sorted(counts.items())),
        "spans": records,
        "lang": lang,
        "placeholders": written,
    }
    return out, summary


def load_names(
    names: Any = (), names_file: Any = None, base_dirs: Sequence[Path] = ()
) -> tuple[str, ...]:
    """The configured names: the ``names`` list plus ``names_file`` (one a line, # comments).

    Raises:
        ValueError: naming ``names`` or ``names_file``.
    """
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise ValueError(f"names must be a list of strings, got {names!r}")
    out = list(names)
    if not all(isinstance(n, str) and n.strip() for n in out):
        raise ValueError("names must be a list of non-empty strings")
    if names_file is not None:
        if not isinstance(names_file, str) or not names_file.strip():
            raise ValueError(f"names_file must be a path, got {names_file!r}")
        path = resolve_path(names_file, base_dirs)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise ValueError(f"names_file: file {names_file!r} not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"names_file: cannot read {names_file!r}: {exc}") from None
        out += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    return tuple(n.strip() for n in out)


def load_ner(value: Any) -> NerHook | None:
    """A callable, or the function named by ``"package.module:function"``.

    Raises:
        ValueError: naming ``ner``.
    """
    if value is None or callable(value):
        return value
    module_name, _, attr = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not module_name.strip() or not attr.isidentifier():
        raise ValueError(f"ner must be a callable or 'package.module:function', got {value!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ValueError(
            f"ner: cannot import {module_name!r}: {exc.__class__.__name__}: {exc}"
        ) from None
    hook = getattr(module, attr, None)
    if not callable(hook):
        raise ValueError(f"ner: {value!r} is not a function")
    if isinstance(hook, type):  # a class: one instance is the hook (it may load a model)
        try:
            hook = hook()
        except Exception as exc:
            raise ValueError(f"ner: {value}: {exc}") from None
    return hook  # type: ignore[no-any-return]


class JiebaNames:
    """A ready ``ner`` hook: person names tagged by jieba's part-of-speech tagger (offline; its
    dictionary ships with the package). ``pip install 'sft-distill[ner]'``, then
    ``"ner": "sft_distill.stages.gates.pii:JiebaNames"``. Two or more characters only: a lone
    surname ("王某") is not a name to redact."""

    _NAME_FLAGS = frozenset({"nr", "nrfg", "nrt"})
    # The tagger also calls some common words names (银行卡, 申请人, 亦然): a name must start
    # with one of the common surnames (about 95% of people) or a two-character one.
    _SURNAMES = frozenset(
        "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶"
        "程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾"
        "毛郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹欧耿关兰"
        "焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻"
    )
    _COMPOUND = frozenset({"欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "令狐"})

    def __init__(self) -> None:
        try:
            import jieba
            import jieba.posseg
        except ImportError:
            raise ValueError("JiebaNames needs jieba: pip install 'sft-distill[ner]'") from None
        jieba.setLogLevel(logging.WARNING)
        self._cut = jieba.posseg.cut

    def __call__(self, text: str) -> list[tuple[int, int, str]]:
        spans = []
        pos = 0
        for word in self._cut(text):
            start = text.find(word.word, pos)
            if start < 0:
                continue
            pos = start + len(word.word)
            name = word.word
            if (
                word.flag in self._NAME_FLAGS
                and 2 <= len(name) <= 4
                and (name[0] in self._SURNAMES or name[:2] in self._COMPOUND)
            ):
                spans.append((start, pos, "name"))
        return spans


def _placeholder_opt(value: Any) -> dict[str, str | dict[str, str]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"placeholders must be an object of type -> text, got {value!r}")
    out: dict[str, str | dict[str, str]] = {}
    for kind, text in value.items():
        if kind not in _PRIORITY:
            raise ValueError(f"placeholders: unknown type {kind!r}; known: {', '.join(PII_TYPES)}")
        if isinstance(text, str) and text.strip():
            out[kind] = text
        elif (
            isinstance(text, Mapping)
            and text
            and set(text) <= {"zh", "en"}
            and all(isinstance(v, str) and v.strip() for v in text.values())
        ):
            out[kind] = dict(text)
        else:
            raise ValueError(
                f"placeholders: {kind!r} must be a non-empty string or "
                f'{{"zh": ..., "en": ...}}, got {text!r}'
            )
    return out


def _choice_opt(option: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{option} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


class PiiGate:
    """Finds personal data in a sample's text; ``redact`` (default), ``drop`` or ``tag`` it.

    ``redact`` replaces it in place with typed placeholders; ``drop`` drops the sample (its text
    redacted too unless ``scrub_dropped`` is false, since dropped samples are written to
    ``generated_raw.jsonl``); ``tag`` keeps it unchanged. Each records ``annotations["pii"]``:
    mode, counts per type and spans (field, type, start, end in the original text), never values.
    With ``scrub_source`` (default) ``redact`` also replaces the values in the chunk the sample
    came from (``source_text``, which the judges read), with the same placeholders.
    """

    def __init__(
        self,
        *,
        mode: str = "redact",
        types: Sequence[str] | None = None,
        names: Sequence[str] = (),
        names_file: str | None = None,
        ner: Any = None,
        lang: str = "auto",
        placeholders: Mapping[str, Any] | None = None,
        fields: Sequence[str] = SAMPLE_FIELDS,
        scrub_dropped: bool = True,
        scrub_source: bool = True,
        name: str = "pii",
        base_dirs: Sequence[Path] = (),
    ) -> None:
        self.name = name
        self.mode = _choice_opt("mode", mode, MODES)
        self.lang = _choice_opt("lang", lang, LANGS)
        self.placeholders = _placeholder_opt(placeholders)
        if isinstance(fields, str) or not isinstance(fields, Iterable):
            raise ValueError(f"fields must be a list of field names, got {fields!r}")
        unknown = [f for f in fields if f not in SAMPLE_FIELDS]
        if unknown or not fields:
            raise ValueError(
                f"fields: unknown field(s) {unknown}; known: {', '.join(SAMPLE_FIELDS)}"
            )
        self.fields = tuple(f for f in SAMPLE_FIELDS if f in fields)
        for option, value in (("scrub_dropped", scrub_dropped), ("scrub_source", scrub_source)):
            if not isinstance(value, bool):
                raise ValueError(f"{option} must be true or false, got {value!r}")
        self.scrub_dropped = scrub_dropped
        self.scrub_source = scrub_source
        self.detector = PiiDetector(
            types=normalize_types(types),
            names=load_names(names, names_file, base_dirs),
            ner=load_ner(ner),
        )
        # The samples of a chunk share its text: scan (and redact) it once.
        self._sources: OrderedDict[str, tuple[list[PiiSpan], str]] = OrderedDict()

    def scan(self, sample: Sample) -> tuple[dict[str, str], dict[str, list[PiiSpan]]]:
        """The sample's scanned fields and the spans found in each (quotes as ``evidence.<i>``)."""
        fields: dict[str, str] = {}
        for f in self.fields:
            if f == "evidence":
                fields.update({f"evidence.{i}": q for i, q in enumerate(sample.evidence) if q})
            elif isinstance(v := getattr(sample, f), str) and v:
                fields[f] = v
        return fields, {f: self.detector.find(v) for f, v in fields.items()}

    def scrub(self, text: str) -> tuple[str, dict[str, int]]:
        """``text`` with its personal data replaced, and counts per type (for slices)."""
        spans = self.detector.find(text)
        if not spans:
            return text, {}
        out, summary = redact(
            {"text": text}, {"text": spans}, lang=self.lang, placeholders=self.placeholders
        )
        return out["text"], summary["counts"]

    def _source(self, text: str) -> tuple[list[PiiSpan], str]:
        """Spans of a chunk's text and the text redacted on its own (cached per text)."""
        hit = self._sources.get(text)
        if hit is None:
            spans = self.detector.find(text)
            redacted = self.scrub(text)[0] if spans else text
            hit = self._sources[text] = (spans, redacted)
            if len(self._sources) > _SOURCE_CACHE:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(text)
        return hit

    async def check(self, sample: Sample) -> GateResult:
        """Keep (redacted or tagged) or drop a sample with personal data; keep others untouched."""
        fields, spans = self.scan(sample)
        source_spans: list[PiiSpan] = []
        scrub_source = self.mode == "redact" and self.scrub_source and bool(sample.source_text)
        if scrub_source:
            source_spans, redacted_source = self._source(sample.source_text)
        if not any(spans.values()):
            if source_spans:
                sample.source_text = redacted_source
            return GateResult(True)
        if source_spans:
            # The chunk first, so that a value in both gets the chunk's placeholder.
            fields = {_SOURCE: sample.source_text, **fields}
            spans = {_SOURCE: source_spans, **spans}
        redacted, summary = redact(fields, spans, lang=self.lang, placeholders=self.placeholders)
        records = [r for r in summary["spans"] if r["field"] != _SOURCE]
        counts = Counter(r["type"] for r in records)
        note: dict[str, Any] = {
            "mode": self.mode,
            "counts": dict(sorted(counts.items())),
            "spans": records,
        }
        if self.mode == "tag":
            return GateResult(True, None, {"pii": note})
        if self.mode == "redact" or self.scrub_dropped:
            note["lang"] = summary["lang"]
            placed = {p for f, ps in summary["placeholders"].items() if f != _SOURCE for p in ps}
            note["placeholders"] = sorted(placed)
            evidence = list(sample.evidence)
            for field, text in redacted.items():
                if field == _SOURCE:
                    sample.source_text = text
                elif field.startswith("evidence."):
                    evidence[int(field.split(".", 1)[1])] = text
                else:
                    setattr(sample, field, text)
            if evidence != sample.evidence:
                sample.evidence = evidence
        if self.mode == "drop":
            where = sorted({r["field"].split(".", 1)[0] for r in records}, key=SAMPLE_FIELDS.index)
            found = ", ".join(f"{n} {t}" for t, n in note["counts"].items())
            return GateResult(False, f"personal data in {', '.join(where)}: {found}", {"pii": note})
        return GateResult(True, None, {"pii": note})


def scrub_slice_text(
    text: str,
    *,
    types: Iterable[str] | None = None,
    names: Iterable[str] = (),
    ner: NerHook | None = None,
    lang: str = "auto",
    placeholders: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, int]]:
    """A slice's text with its personal data replaced before the teacher sees it, and counts."""
    spans = find_pii(text, types=types, names=names, ner=ner)
    if not spans:
        return text, {}
    out, summary = redact({"text": text}, {"text": spans}, lang=lang, placeholders=placeholders)
    return out["text"], summary["counts"]
