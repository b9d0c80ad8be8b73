"""What the simulator does with ``response_format``: which forms each kind of server takes, the
error it answers the others with, and a reply reshaped to the requested schema.

The server dialects (``SimulatorConfig.structured_output``, ``--structured-output``):

- ``openai``: OpenAI, vLLM, SGLang, DashScope: takes ``json_schema``; ``json_object`` only when
  the word "json" is in the messages (OpenAI's 400 otherwise).
- ``llamacpp``: llama-cpp-python's server: ``json_object`` with or without a ``schema``; the
  OpenAI ``json_schema`` form gets its HTTP 500 (../shared/wire.md, "Structured output").
- ``json_object``: DeepSeek, Moonshot: ``json_object`` only, with "json" in the prompt.
- ``none``: a server that takes no ``response_format`` at all.

Error bodies are the servers' own (sources beside each). With a schema (or ``json_object``,
whose prompt shows the schema's example) the reply is what constrained decoding gives: the
simulator's usual reply moved into the schema's shape (a top-level array wrapped in its object,
every property present, scores whole numbers within their range), never wrapped in prose.
"""

from __future__ import annotations

import json
from typing import Any

from ..llm.structured import ReplyKind, schema_for

SERVER_DIALECTS = ("openai", "llamacpp", "json_object", "none")

# The form of a request's response_format, as the ladder of llm.structured names them.
NONE, JSON_SCHEMA, JSON_OBJECT_SCHEMA, JSON_OBJECT = (
    "none",
    "json_schema",
    "json_object_schema",
    "json_object",
)
INVALID = "invalid"

_JSON = "application/json"

# llama-cpp-python answering the OpenAI form: HTTP 500 with pydantic's literal_error
# (wire.md; the same body as tests/llm/test_structured.py LLAMA_CPP_PYTHON_500).
_LLAMACPP_500 = {
    "error": {
        "message": "[{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
        "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
        "'ctx': {'expected': \"'text' or 'json_object'\"}}]",
        "type": "internal_server_error",
        "param": None,
        "code": None,
    }
}
# DeepSeek answering json_schema: HTTP 400 (llm-exe/llm-exe#662, UKGovernmentBEIS/inspect_ai#4916).
_DEEPSEEK_400 = {
    "error": {
        "message": "This response_format type is unavailable now",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_request_error",
    }
}
# DeepSeek's json_object without the word "json" in the prompt (browserbase/stagehand#1204).
_DEEPSEEK_NO_JSON = {
    "error": {
        "message": "Prompt must contain the word 'json' in some form to use 'response_format' of "
        "type 'json_object'",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_request_error",
    }
}
# DeepSeek's request deserializer (serde) answers a response_format it cannot read with HTTP 422
# and plain text ("Failed to deserialize the JSON body into the target type: response_format...",
# browser-use/browser-use#215, langgenius/dify#12868). How it words an extra "schema" field was
# not seen: this is that message's pattern, not a copy.
_DEEPSEEK_422_SCHEMA = (
    "Failed to deserialize the JSON body into the target type: response_format: unknown field "
    "`schema`, expected `type` at line 1 column {column}"
)
# OpenAI's json_object without "json" in the messages.
_OPENAI_NO_JSON = {
    "error": {
        "message": "'messages' must contain the word 'json' in some form, to use "
        "'response_format' of type 'json_object'.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": None,
    }
}
# A server that takes no response_format (the OpenAI-style "Unrecognized request argument").
_UNRECOGNIZED = {
    "error": {
        "message": "Unrecognized request argument supplied: response_format",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
}
_INVALID = {
    "error": {
        "message": "Invalid value for 'response_format': expected an object with a 'type'.",
        "type": "invalid_request_error",
        "param": "response_format",
        "code": None,
    }
}

# The reply model of each prompt kind (json_object requests carry no schema: the prompt shows
# the example of the kind's schema, and a model follows it).
_TASK_KINDS = {
    "topic_expand": ReplyKind.TOPICS,
    "topic_questions": ReplyKind.QUESTIONS,
    "topic_answer": ReplyKind.ANSWER,
    "iset_answer": ReplyKind.ANSWER,
    "iset_rephrase": ReplyKind.REPHRASINGS,
    "judge_batch": ReplyKind.JUDGE_BATCH,
}


def requested_form(response_format: Any) -> str:
    """The form of a request's ``response_format`` (``none`` when absent or ``text``)."""
    if response_format is None:
        return NONE
    if not isinstance(response_format, dict):
        return INVALID
    kind = response_format.get("type")
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        return JSON_SCHEMA if isinstance(spec, dict) else INVALID
    if kind == "json_object":
        return (
            JSON_OBJECT_SCHEMA if isinstance(response_format.get("schema"), dict) else JSON_OBJECT
        )
    return NONE if kind == "text" else INVALID


def requested_schema(response_format: Any, form: str) -> dict[str, Any] | None:
    """The JSON schema a request carries (None for the forms without one)."""
    if form == JSON_SCHEMA:
        schema = response_format["json_schema"].get("schema")
    elif form == JSON_OBJECT_SCHEMA:
        schema = response_format["schema"]
    else:
        return None
    return schema if isinstance(schema, dict) else None


def rejection(server: str, form: str, text: str, raw_size: int) -> tuple[int, bytes, str] | None:
    """(status, body, content type) of the error ``server`` answers ``form`` with, or None.

    ``text`` is the request's messages (some servers want the word "json" in them), and
    ``raw_size`` the request body's length (DeepSeek's 422 names a column in it).
    """
    if form == NONE:
        return None
    if form == INVALID:
        return 400, _dump(_INVALID), _JSON
    if server == "none":
        return 400, _dump(_UNRECOGNIZED), _JSON
    wants_word = form in (JSON_OBJECT, JSON_OBJECT_SCHEMA)
    wants_word = wants_word and "json" not in text.lower()
    if server == "openai":
        if form in (JSON_OBJECT, JSON_OBJECT_SCHEMA) and wants_word:
            return 400, _dump(_OPENAI_NO_JSON), _JSON
        return None
    if server == "llamacpp":
        return (500, _dump(_LLAMACPP_500), _JSON) if form == JSON_SCHEMA else None
    # json_object: DeepSeek and Moonshot
    if form == JSON_SCHEMA:
        return 400, _dump(_DEEPSEEK_400), _JSON
    if form == JSON_OBJECT_SCHEMA:
        body = _DEEPSEEK_422_SCHEMA.format(column=max(1, raw_size - 2))
        return 422, body.encode(), "text/plain"
    if wants_word:
        return 400, _dump(_DEEPSEEK_NO_JSON), _JSON
    return None


def _dump(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def kind_schema(prompt_kind: str, task: str | None) -> dict[str, Any] | None:
    """The schema whose example a prompt of this kind shows (json_object requests)."""
    if task in _TASK_KINDS:
        return schema_for(_TASK_KINDS[task])
    if prompt_kind == "evaluation":
        return schema_for(ReplyKind.JUDGE)
    if prompt_kind == "generation" and task is None:
        return schema_for(ReplyKind.GENERATION)
    return None


def shaped(content: str, schema: dict[str, Any] | None) -> str:
    """``content`` (the simulator's usual reply) as a JSON object that follows ``schema``.

    Without a schema the reply only has to be one JSON object (json_object): an array is
    wrapped in ``{"items": [...]}`` and plain text in ``{"text": ...}``.
    """
    try:
        value: Any = json.loads(content)
    except ValueError:
        value = content
    if schema is None:
        if isinstance(value, list):
            value = {"items": value}
        elif not isinstance(value, dict):
            value = {"text": content}
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(conform(value, schema), ensure_ascii=False)


_MISSING = object()


def conform(value: Any, schema: dict[str, Any]) -> Any:
    """``value`` moved into the shape ``schema`` describes (a strict schema of llm.structured).

    The shape is made to fit: arrays wrapped in their object, missing properties filled, extra
    ones dropped, numbers rounded into range. A value of the wrong type is left as it is (a
    test's scripted responder can still send what no grammar would let through).
    """
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return conform(value, options[0]) if options else None
    kind = schema.get("type")
    if kind == "object":
        return _object(value, schema) if isinstance(value, (dict, list, str)) else value
    if kind == "array":
        if value is _MISSING:
            return []
        sub = schema.get("items") or {}
        return [conform(v, sub) for v in value] if isinstance(value, list) else value
    if value is _MISSING or value is None:
        return _default(schema)
    if "enum" in schema:
        return value
    if kind in ("integer", "number") and isinstance(value, (int, float)):
        if isinstance(value, bool):
            return value
        lo, hi = schema.get("minimum"), schema.get("maximum")
        number = max(lo, value) if lo is not None else value
        number = min(hi, number) if hi is not None else number
        return round(number) if kind == "integer" else number
    return value


def _default(schema: dict[str, Any]) -> Any:
    """What a model fills a required property it had nothing for with."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    return {"boolean": False, "array": [], "object": {}}.get(str(kind), "")


def _object(value: Any, schema: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = schema.get("properties") or {}
    if not isinstance(value, dict):
        # The wrapper object of a bare array or a plain text: its first property of that type.
        want = "array" if isinstance(value, list) else "string"
        key = next((k for k, s in props.items() if s.get("type") == want), None)
        value = {key: value} if key is not None else {}
    out = {}
    for key, sub in props.items():
        got = value.get(key, _MISSING)
        if got is _MISSING and sub.get("type") == "object" and set(value) & set(sub["properties"]):
            got = value  # a flat reply whose fields belong one level down (judge scores)
        out[key] = conform(got, sub)
    return out
