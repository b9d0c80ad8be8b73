"""What a model replied: reasoning split off, and the JSON in it (fenced, in prose, or broken)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from json_repair import repair_json

from ..errors import JSONExtractionError

__all__ = ["extract_json", "split_reasoning"]

# ---------------------------------------------------------------------------
# Reasoning blocks
# ---------------------------------------------------------------------------

_THINK_OPEN = re.compile(r"<(think|thinking)>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</(think|thinking)>", re.IGNORECASE)


def split_reasoning(text: str) -> tuple[str | None, str]:
    """Split leading ``<think>``/``<thinking>`` blocks off a reply: ``(reasoning, content)``.

    Handles closed blocks (several in a row), a bare leading ``…</think>`` whose opening tag
    the chat template pre-filled (DeepSeek-R1), and an unclosed ``<think>…`` (all reasoning,
    content ``""``). Only blocks at the start are stripped, so content that merely mentions
    the tags later is left alone. Reasoning is ``None`` when there is no non-blank reasoning.
    """
    first_close = _THINK_CLOSE.search(text)
    first_open = _THINK_OPEN.search(text)
    if first_close is None and first_open is None:
        return None, text
    parts: list[str] = []
    rest = text
    if first_close is not None and (first_open is None or first_close.start() < first_open.start()):
        # DeepSeek-R1 templates pre-fill "<think>", so the completion starts mid-reasoning.
        parts.append(rest[: first_close.start()])
        rest = rest[first_close.end() :]
    while True:
        stripped = rest.lstrip()
        opening = _THINK_OPEN.match(stripped)
        if opening is None:
            break
        closing = _THINK_CLOSE.search(stripped, opening.end())
        if closing is None:
            # Cut off while still thinking (or the model never closed the tag): no answer.
            parts.append(stripped[opening.end() :])
            rest = ""
            break
        parts.append(stripped[opening.end() : closing.start()])
        rest = stripped[closing.end() :]
    reasoning = "\n\n".join(p.strip() for p in parts if p.strip())
    return (reasoning or None), rest.lstrip()


# ---------------------------------------------------------------------------
# JSON extraction
# ---------------------------------------------------------------------------

# strict=False accepts raw newlines/tabs inside strings, which models emit all the time.
_DECODER = json.JSONDecoder(strict=False)

# A "{" or "[" that plausibly starts JSON: prose braces ("{the answer}", "[sic]", "[...]")
# never become candidates, which keeps json_repair away from prose and the scan linear.
_START = re.compile(
    r"""\{\s*(?:["'“”‘’}]|\\"|/[/*]|[^\W\d][\w$-]{0,63}\s*:)"""
    r"""|\[(?:\]|\s*(?:[\[{"'“”‘’]|\\"|/[/*]|-?\d|(?:true|false|null|True|False|None)\b))"""
)
# Opening of a markdown fence: ```json, ``` , ````, indented, or the malformed ``json.
_FENCE = re.compile(r"`{3,}[ \t]*(?:[A-Za-z0-9_+.-]*)|``(?=json)json", re.IGNORECASE)
_BACKTICKS = re.compile(r"`{2,}")
_SCAN_TOKEN = re.compile(r'\\.|["{}\[\]]', re.DOTALL)
_QUOTE_TOKEN = re.compile(r'\\.|"', re.DOTALL)
_SEPARATOR = re.compile(r"[\s,]*")
_CLOSER_OF = {"}": "{", "]": "["}
_PREVIEW_CHARS = 80
# json_repair slows down superlinearly (about 0.3 s at 50 KB, seconds at 200 KB); a
# reply that size is never repaired anyway. Truncated clean JSON is closed without it.
_REPAIR_MAX_CHARS = 50_000
# Broken candidates tried with json_repair before giving up: fenced blocks in order, then
# prose candidates largest first. Bounds the work on adversarial replies.
_MAX_FENCE_REPAIRS = 8
_MAX_REPAIRS = 3


@dataclass
class _Found:
    """JSON values found at one place in a reply."""

    values: list[Any]
    span: int
    truncated: bool = False


def _fail(text: str, why: str) -> JSONExtractionError:
    preview = text[:_PREVIEW_CHARS]
    more = "…" if len(text) > _PREVIEW_CHARS else ""
    return JSONExtractionError(f"{why} ({len(text)} chars): {preview!r}{more}")


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _strict_container(text: str) -> Any:
    """The JSON object/array that text strictly is, else None."""
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError):
        return None
    return value if _is_container(value) else None


def _rebase(stack: list[tuple[str, int]], offset: int) -> list[tuple[str, int]]:
    return [(opener, pos - offset) for opener, pos in stack]


def _is_container(value: Any) -> bool:
    return isinstance(value, (dict, list))


def _scan_brackets(text: str, start: int, stop: int) -> tuple[int | None, list[tuple[str, int]]]:
    """End of the bracket group opening at ``start`` (string-aware), or None and the open stack.

    A closer pops back to its matching opener so a missing "]" before "}" still balances;
    a closer with no matching opener is ignored.
    """
    stack: list[tuple[str, int]] = []
    open_count = {"{": 0, "[": 0}  # makes a stray closer O(1) instead of a stack walk
    in_string = False
    for m in _SCAN_TOKEN.finditer(text, start, stop):
        tok = m.group()
        if tok[0] == "\\":
            continue
        if tok == '"':
            in_string = not in_string
        elif in_string:
            continue
        elif tok in "{[":
            stack.append((tok, m.start()))
            open_count[tok] += 1
        elif open_count[opener := _CLOSER_OF[tok]]:
            while True:
                popped = stack.pop()[0]
                open_count[popped] -= 1
                if popped == opener:
                    break
            if not stack:
                return m.end(), []
    return None, stack


def _escape_inner_quotes(fragment: str) -> str:
    """Escape ASCII quotes that sit inside strings (Chinese replies quoting a term with ")."""
    out: list[str] = []
    last = 0
    in_string = False
    for m in _QUOTE_TOKEN.finditer(fragment):
        if m.group() != '"':
            continue
        if not in_string:
            in_string = True
            continue
        nxt = _skip_ws(fragment, m.end())
        # A real closing quote is followed by a delimiter; '"' too, meaning a missing comma.
        if nxt >= len(fragment) or fragment[nxt] in ',:}]"':
            in_string = False
        else:
            out.append(fragment[last : m.start()])
            out.append('\\"')
            last = m.end()
    if not out:
        return fragment
    out.append(fragment[last:])
    return "".join(out)


def _drop_incomplete_items(
    fragment: str, stack: list[tuple[str, int]]
) -> tuple[str, list[tuple[str, int]]]:
    """Cut a truncated fragment before the unfinished element of its outermost open array.

    Returns the cut fragment and the brackets still open in it.
    """
    for depth in range(len(stack) - 1):
        if stack[depth][0] == "[":
            # The next open container is that array's last element, cut off mid-way.
            return fragment[: stack[depth + 1][1]], stack[: depth + 1]
    return fragment, stack


def _drop_dangling_key(fragment: str) -> str:
    """Remove a trailing ``"key":`` whose value never started (json_repair would invent "")."""
    body = fragment.rstrip()
    if not body.endswith(":"):
        return fragment
    body = body[:-1].rstrip()
    if body.endswith('"'):
        pos = len(body) - 1
        while True:
            pos = body.rfind('"', 0, pos)
            if pos <= 0 or body[pos - 1] != "\\":
                break
        if pos < 0:
            return fragment
        body = body[:pos]
    else:
        m = re.search(r"[\w$-]{1,64}\Z", body)
        if m is None:
            return fragment
        body = body[: m.start()]
    body = body.rstrip()
    return body[:-1] if body.endswith(",") else body


def _repair(fragment: str, stack: list[tuple[str, int]] | None) -> tuple[Any, bool] | None:
    """Best-effort value of a broken JSON fragment: ``(value, truncated)`` or None.

    ``stack`` is the open-bracket stack (positions relative to the fragment) when the
    fragment never balanced, i.e. it was probably truncated.
    """
    escaped = _escape_inner_quotes(fragment)
    if escaped is not fragment:
        value = _strict_container(escaped)
        if value is not None:
            return value, False
    truncated = bool(stack)
    if stack:
        attempts = [(fragment, stack)]
        if escaped is not fragment:
            end, escaped_stack = _scan_brackets(escaped, 0, len(escaped))
            if end is None and escaped_stack:
                attempts.insert(0, (escaped, escaped_stack))
        for text, open_stack in attempts:
            cut, still_open = _drop_incomplete_items(text, open_stack)
            # Cheap and exact for the usual case, clean JSON cut off: close what is still open.
            closers = "".join("}" if opener == "{" else "]" for opener, _ in reversed(still_open))
            value = _strict_container(cut.rstrip().rstrip(",") + closers)
            if value is not None:
                return value, True
        fragment = _drop_dangling_key(_drop_incomplete_items(fragment, stack)[0])
    if len(fragment) > _REPAIR_MAX_CHARS:
        return None  # json_repair is superlinear: 200 KB of broken text takes seconds
    try:
        value = repair_json(fragment, return_objects=True, skip_json_loads=True)
    except Exception:  # a heuristic third-party parser: any crash just means "no JSON here"
        return None
    if fragment.lstrip().startswith("{") and isinstance(value, list) and value:
        # json_repair lists every value it found; text after our object is not part of it.
        value = value[0]
    if not _is_container(value):
        return None
    return value, truncated


def _from_fences(text: str) -> _Found | None:
    """Values of every markdown-fenced block whose body starts like JSON, in order."""
    values: list[Any] = []
    span = 0
    truncated = False
    budget = _MAX_FENCE_REPAIRS  # repairs and look-past-the-fence rescans
    pos = 0
    while (fence := _FENCE.search(text, pos)) is not None:
        pos = fence.end()
        body = _skip_ws(text, pos)
        if _START.match(text, body) is None:
            continue  # a closing fence, or a fence around something else
        closing = _BACKTICKS.search(text, body)
        stop = len(text) if closing is None else closing.start()
        end, stack = _scan_brackets(text, body, stop)
        value = None
        balanced_past_fence: int | None = None
        if end is None and stop < len(text) and budget:
            # The "closing fence" may be backticks inside a JSON string: look past it.
            budget -= 1
            past_end, _ = _scan_brackets(text, body, len(text))
            if past_end is not None:
                value = _strict_container(text[body:past_end])
                if value is not None:
                    end = past_end
                else:  # balanced but broken (say a trailing comma): repair all of it
                    balanced_past_fence = past_end
        if value is None and end is not None:
            value = _strict_container(text[body:end])
        if value is None:
            if not budget:
                continue
            budget -= 1
            if balanced_past_fence is not None:
                end = balanced_past_fence
            open_stack = None if end is not None else _rebase(stack, body)
            repaired = _repair(text[body : stop if end is None else end], open_stack)
            if repaired is None:
                continue
            value, cut = repaired
            truncated = truncated or cut
        pos = stop if end is None else end
        values.append(value)
        span += pos - body
    return _Found(values, span, truncated) if values else None


def _from_prose(text: str) -> Iterator[_Found]:
    """Candidate JSON values in free text, largest first; broken ones are repaired lazily."""
    strict: list[tuple[int, int, list[Any]]] = []  # (start, end, values) runs of valid JSON
    broken: list[tuple[int, int, list[tuple[str, int]] | None]] = []
    pos = 0
    while (m := _START.search(text, pos)) is not None:
        start = m.start()
        # Scan first, then parse only the region: a failed json.loads costs O(position) (it
        # counts lines for the message), so parsing in place would be quadratic on long text.
        end, stack = _scan_brackets(text, start, len(text))
        if end is None:
            # Never closes: everything after is inside it, so stop scanning (this also keeps
            # the inner objects of a truncated array from being picked up on their own).
            broken.append((start, len(text), _rebase(stack, start)))
            break
        value = _strict_container(text[start:end])
        if value is None:
            broken.append((start, end, None))
        elif strict and _SEPARATOR.fullmatch(text, strict[-1][1], start):
            # Values separated only by commas/whitespace form one run (JSON Lines, "{..}, {..}").
            run_start, _, run_values = strict[-1]
            run_values.append(value)
            strict[-1] = (run_start, end, run_values)
        else:
            strict.append((start, end, [value]))
        pos = end
    ranked: list[tuple[int, int, list[Any] | None, list[tuple[str, int]] | None]] = [
        (end - start, -start, values, None) for start, end, values in strict
    ]
    ranked += [(end - start, -start, None, open_stack) for start, end, open_stack in broken]
    # The largest candidate wins: a citation "[1]" or a prose "{x}" loses to the real answer.
    ranked.sort(key=lambda r: (r[0], r[1]), reverse=True)
    repairs = 0
    for span, neg_start, values, open_stack in ranked:
        if values is not None:
            yield _Found(values, span)
            continue
        if repairs == _MAX_REPAIRS:
            continue
        repairs += 1
        start = -neg_start
        repaired = _repair(text[start : start + span], open_stack)
        if repaired is not None:
            yield _Found([repaired[0]], span, truncated=repaired[1])


def _candidates(content: str) -> Iterator[_Found]:
    """Places a JSON value may be, best first: the whole text, fenced blocks, then prose."""
    try:
        value = _DECODER.decode(content)
        if isinstance(value, str):
            value = _DECODER.decode(value.strip())  # a JSON document sent as a JSON string
    except (ValueError, RecursionError):
        pass
    else:
        if _is_container(value):
            yield _Found([value], len(content))
            return
    fenced = _from_fences(content)
    if fenced is not None:
        yield fenced
    yield from _from_prose(content)


def _looks_like_wrapper(value: dict[str, Any]) -> list[Any] | None:
    """The list inside ``{"samples": [...]}``-style wrappers, else None."""
    lists = [v for v in value.values() if isinstance(v, list)]
    if len(value) == 1 and lists:
        return lists[0]
    # {"samples": [{...}], "count": 3}: exactly one list, and it holds objects.
    object_lists = [v for v in lists if v and all(isinstance(x, dict) for x in v)]
    if len(object_lists) == 1 and len(lists) == 1:
        return object_lists[0]
    return None


def _shape(found: _Found, expect: type | None) -> Any:
    """Turn the values found at one place into what the caller expects, or raise ValueError."""
    values = found.values
    if expect is None:
        return values[0] if len(values) == 1 else list(values)
    if expect is dict:
        for v in values:
            if isinstance(v, dict):
                return v
            if isinstance(v, list) and len(v) == 1 and isinstance(v[0], dict):
                return v[0]  # [{"score": 4}]
        raise ValueError("expected a JSON object")
    lists = [v for v in values if isinstance(v, list)]
    if lists:
        return [item for v in lists for item in v]
    dicts = [v for v in values if isinstance(v, dict)]
    for d in dicts:
        inner = _looks_like_wrapper(d)
        if inner is not None:
            return inner
    if found.truncated:
        # A lone object cut off mid-way is the unfinished first item of the implied list.
        return []
    return dicts


def extract_json(text: str, *, expect: type | None = None) -> Any:
    """The JSON value in a model reply, tolerating what real models send.

    Order: reasoning blocks are stripped (``split_reasoning``); ``json.loads`` of the rest;
    the markdown-fenced blocks (several blocks give a list of their values); the largest
    JSON-looking candidate in the prose (values separated only by commas/whitespace give a
    list); broken candidates go through our own fixes and then ``json_repair``.

    Truncation: an array element cut off mid-way is dropped, so
    ``[{"a":1},{"a":2},{"a":`` gives ``[{"a":1},{"a":2}]`` (also inside a wrapper object).
    A truncated object keeps its finished members and a trailing partial string value (as
    json_repair and langchain's partial parser do); a key whose value never started is
    dropped. Callers that must not keep partial text check ``finish_reason == "length"``.

    Args:
        text: the raw reply content.
        expect: ``dict`` for one object (``[{...}]`` is unwrapped), ``list`` for an array
            (``{"samples": [...]}`` is unwrapped, a lone object is wrapped; a lone truncated
            object gives ``[]``), ``None`` for whatever is there.

    Raises:
        JSONExtractionError: no JSON object/array found (prose, empty or reasoning-only
            reply, ``{invalid json}``), or none of the expected kind.
    """
    if expect not in (None, dict, list):
        raise TypeError(f"expect must be dict, list or None, not {expect!r}")
    _, content = split_reasoning(text)
    content = content.strip()
    if not content:
        raise _fail(text, "no JSON in reply (empty or reasoning only)")
    seen_any = False
    for found in _candidates(content):
        seen_any = True
        try:
            return _shape(found, expect)
        except ValueError:
            continue
    if seen_any:
        kind = "object" if expect is dict else "array"
        raise _fail(text, f"no JSON {kind} in reply")
    raise _fail(text, "no JSON in reply")
