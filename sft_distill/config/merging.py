"""A config from its layers: the defaults, a JSON file, then flags, merged key by key and validated.

Every error names the key (or the flag) that was wrong, with a close match for a misspelt key.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError, file_error
from .defaults import CONFIG_TEMPLATE
from .models import DistillConfig, EndpointConfig, KeyProblem, ModelPrice


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` over ``base`` key by key; a ``None`` value replaces what was there.

    A ``None`` evaluator is kept here, so that it still removes the default one when this result
    is merged again; ``build_config`` drops such evaluators once everything is merged.
    """
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed where ``loc`` points (for "did you mean"); empty when unknown."""
    if len(loc) == 1:
        return [k for k in DistillConfig.model_fields if k not in ("embed_fn", "config_dir")]
    if (len(loc) == 2 and loc[0] == "generator") or (
        len(loc) == 3 and loc[0] in ("evaluators", "students")
    ):
        return list(EndpointConfig.model_fields)
    if len(loc) == 3 and loc[0] == "prices":
        return list(ModelPrice.model_fields)
    return []


def _problem(err: Any) -> tuple[str, str]:
    """(dotted key, message) of one pydantic error, worded for a person editing a config."""
    loc = tuple(err["loc"])
    error = (err.get("ctx") or {}).get("error")
    if isinstance(error, KeyProblem):
        loc = (*loc, error.key)  # an endpoint's problem is named inside it
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
        close = difflib.get_close_matches(str(loc[-1]), _known_keys(loc), n=1)
        if close:
            msg += f" (did you mean {close[0]!r}?)"
    elif err["type"] == "missing":
        msg = "required key is missing"
    else:
        # pydantic puts "Value error, " before what a validator raised: not for users.
        msg = re.sub(r"^(Value error|Assertion failed), ", "", msg)
    return ".".join(str(p) for p in loc) or "(top level)", msg


def _format_validation_error(exc: ValidationError, source: str) -> ConfigError:
    problems = tuple(_problem(err) for err in exc.errors())
    message = f"{source}: invalid config: " + "; ".join(f"{k}: {m}" for k, m in problems)
    return ConfigError(message, problems=problems, source=source)


def format_config_error(exc: ConfigError, flags: Mapping[str, str]) -> str:
    """The message of ``exc`` naming the command-line flag that set each bad key.

    ``flags`` maps a top-level config key to the flag given for it (``{"min_votes":
    "--min-votes"}``); problems with other keys keep naming the config's source.
    """
    by_flag = [(flags[k.split(".")[0]], m) for k, m in exc.problems if k.split(".")[0] in flags]
    if not by_flag:
        return str(exc)
    rest = [(k, m) for k, m in exc.problems if k.split(".")[0] not in flags]
    parts = [f"{flag}: {msg}" for flag, msg in by_flag]
    if rest:
        parts.append(
            f"{exc.source or 'config'}: invalid config: " + "; ".join(f"{k}: {m}" for k, m in rest)
        )
    return "; ".join(parts)


def build_config(
    overrides: Mapping[str, Any] | None = None,
    *,
    source: str = "config",
    embed_fn: Callable[..., Any] | None = None,
) -> DistillConfig:
    """Merge ``overrides`` over ``CONFIG_TEMPLATE`` and validate.

    Raises:
        ConfigError: naming each bad key and what was wrong with it.
    """
    merged = deep_merge(CONFIG_TEMPLATE, overrides or {})
    # Only now, with every layer merged over the defaults, does a null evaluator remove one.
    if isinstance(merged.get("evaluators"), dict):
        merged["evaluators"] = {k: v for k, v in merged["evaluators"].items() if v is not None}
    if embed_fn is not None:
        merged["embed_fn"] = embed_fn
    try:
        return DistillConfig.model_validate(merged)
    except ValidationError as exc:
        raise _format_validation_error(exc, source) from None


# A line that starts like a comment in JS, JSONC or YAML: JSON has none.
_COMMENT_RE = re.compile(r"^\s*(//|/\*|#)", re.MULTILINE)


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON object in a config file.

    Raises:
        ConfigError: the file is missing, unreadable, not JSON (comments get a hint) or not an
            object.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise file_error(
            p,
            exc,
            missing="config file not found",
            directory="is a directory, expected a JSON file",
            failed="cannot read config",
            cls=ConfigError,
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: cannot read config: not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = ""
        if _COMMENT_RE.search(text) or text[exc.pos : exc.pos + 2] in ("//", "/*"):
            hint = "; JSON has no comments: remove them (the // or # lines)"
        raise ConfigError(f"{p}:{exc.lineno}: not valid JSON: {exc.msg}{hint}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: config must be a JSON object, got {type(data).__name__}")
    return data


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    embed_fn: Callable[..., Any] | None = None,
) -> DistillConfig:
    """Read a JSON config file (optional), merge it and ``overrides`` over the defaults.

    Raises:
        ConfigError: the file is missing, not JSON, not an object, or holds a bad value.
    """
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        source = str(Path(path))
        data = read_config_file(path)
    if overrides:
        data = deep_merge(data, overrides)
    if path is not None:
        data["config_dir"] = str(Path(path).resolve().parent)
    return build_config(data, source=source, embed_fn=embed_fn)
