"""Which gates a config asks for: built-in types, bundles (rules, quality), your own classes."""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ...config.models import DistillConfig
from ...errors import ConfigError
from .base import Gate, check_gate, resolve_path

GateFactory = Callable[..., Any]


# type -> "module:attribute" inside this package, imported on first use (the gate modules
# import this one, so they cannot be imported at the top).
_BUILTIN_TYPES: dict[str, str] = {
    "length": "rules:LengthGate",
    "refusal": "rules:RefusalGate",
    "placeholder": "rules:PlaceholderGate",
    "echo": "rules:EchoGate",
    "language": "rules:LanguageGate",
    "grounding": "rules:GroundingGate",
    "sql": "sql:SQLExecutionGate",
    "pii": "pii:PiiGate",
    "referential": "quality:ReferentialGate",
    "evidence": "quality:EvidenceGate",
    "numbers": "quality:NumbersGate",
    "truncated": "quality:TruncationGate",
    "non_answer": "quality:NonAnswerGate",
    "support": "quality:SupportGate",
}


# The rule gates ``{"type": "rules"}`` enables, in the order they run (cheapest first).
RULE_GATE_TYPES: tuple[str, ...] = (
    "length",
    "placeholder",
    "refusal",
    "echo",
    "language",
    "grounding",
)


# The quality gates ``{"type": "quality"}`` enables, cheapest first.
QUALITY_GATE_TYPES: tuple[str, ...] = (
    "truncated",
    "non_answer",
    "referential",
    "evidence",
    "numbers",
    "support",
)


# Shorthands that stand for several gates.
_BUNDLES: dict[str, tuple[str, ...]] = {"rules": RULE_GATE_TYPES, "quality": QUALITY_GATE_TYPES}
# The quality gates that tell certain findings from suspect ones; ``{"type": "quality",
# "on_suspect": ...}`` sets it on each of them (a gate's own object may override it).
ON_SUSPECT_TYPES = ("referential", "numbers", "support")


_USER_TYPES: dict[str, GateFactory] = {}


# Keys every gate entry may have besides its options.
_COMMON_KEYS = ("type", "name")


# Keyword arguments build_gates passes itself (never from the config).
_INTERNAL_OPTIONS = frozenset({"base_dirs", "name"})


def register_gate_type(type_name: str, factory: GateFactory) -> None:
    """Make ``{"type": type_name, ...}`` usable in config; the other keys become kwargs.

    Raises:
        ValueError: the name is a built-in type or already registered.
    """
    if type_name in _BUILTIN_TYPES or type_name in (*_BUNDLES, "python"):
        raise ValueError(f"gate type {type_name!r} is built in")
    if type_name in _USER_TYPES and _USER_TYPES[type_name] is not factory:
        raise ValueError(f"gate type {type_name!r} is already registered")
    _USER_TYPES[type_name] = factory


def gate_types() -> list[str]:
    """Every type name accepted under ``gates`` in the config."""
    return sorted({*_BUILTIN_TYPES, *_USER_TYPES, *_BUNDLES, "python"})


def _builtin(type_name: str) -> GateFactory:
    module, attr = _BUILTIN_TYPES[type_name].split(":")
    factory: GateFactory = getattr(importlib.import_module(f".{module}", __package__), attr)
    return factory


def _accepted_options(factory: GateFactory) -> list[str] | None:
    """Keyword options a factory takes, or None when it takes ``**kwargs`` (anything)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    names = []
    for p in params:
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
    return names


def _required_options(factory: GateFactory) -> list[str]:
    """Keyword options a factory cannot do without (no default)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [
        p.name
        for p in params
        if p.kind in kinds and p.default is inspect.Parameter.empty and p.name not in ("self",)
    ]


def _make(
    label: str,
    factory: GateFactory,
    options: Mapping[str, Any],
    name: Any,
    *,
    base_dirs: Sequence[Path] = (),
) -> Gate:
    """Call ``factory(**options)`` and check the result is a gate; errors name ``label``."""
    known = _accepted_options(factory)
    if known is not None:
        known = [k for k in known if k not in _INTERNAL_OPTIONS]
        unknown = sorted(set(options) - set(known) - _INTERNAL_OPTIONS)
        if unknown:
            shown = ", ".join(repr(u) for u in unknown)
            plural = "s" if len(unknown) > 1 else ""
            raise ConfigError(
                f"{label}: unknown option{plural} {shown}; known: {', '.join(known) or 'none'}"
            )
    missing = [k for k in _required_options(factory) if k not in options]
    if missing:
        raise ConfigError(f"{label}: missing option {', '.join(map(repr, missing))}")
    kwargs = dict(options)
    if "base_dirs" in (_accepted_options(factory) or ()):
        kwargs["base_dirs"] = tuple(base_dirs)
    try:
        gate = factory(**kwargs)
    except (TypeError, ValueError, ConfigError) as exc:
        raise ConfigError(f"{label}: {exc}") from None
    except Exception as exc:
        # A user factory may fail any way (OSError, KeyError...): still a config error.
        raise ConfigError(f"{label}: {exc.__class__.__name__}: {exc}") from None
    if name is not None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{label}: 'name' must be a non-empty string, got {name!r}")
        try:
            gate.name = name
        except AttributeError:
            raise ConfigError(f"{label}: this gate's name cannot be changed") from None
    return check_gate(gate, label)


def _import_target(label: str, target: Any, base_dirs: Sequence[Path]) -> GateFactory:
    """The object named by ``"package.module:Name"`` or ``"path/to/file.py:Name"``."""
    # The name is after the last colon: a Windows path (C:\gates\my.py:MyGate) has others.
    module_name, _, attr = target.rpartition(":") if isinstance(target, str) else ("", "", "")
    if not module_name.strip() or not attr.isidentifier():
        raise ConfigError(
            f"{label}: 'target' must look like 'package.module:ClassName' or "
            f"'path/to/file.py:ClassName', got {target!r}"
        )
    try:
        if module_name.endswith(".py"):
            path = resolve_path(module_name, base_dirs)
            if not path.is_file():
                raise ConfigError(f"{label}: file {module_name!r} not found")
            unique = f"_sft_distill_gate_{abs(hash(str(path.resolve())))}"
            module = sys.modules.get(unique)
            if module is None:
                spec = importlib.util.spec_from_file_location(unique, path)
                if spec is None or spec.loader is None:
                    raise ConfigError(f"{label}: cannot load {module_name!r}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[unique] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[unique]
                    raise
        else:
            module = importlib.import_module(module_name)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"{label}: cannot import {module_name!r}: {exc.__class__.__name__}: {exc}"
        ) from None
    try:
        factory: GateFactory = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{label}: {module_name!r} has no attribute {attr!r}") from None
    if not callable(factory):
        raise ConfigError(f"{label}: {target!r} is not a class or function")
    return factory


def _config_dirs(
    config: DistillConfig | None, base_dir: str | os.PathLike[str] | None
) -> list[Path]:
    dirs = []
    if base_dir is not None:
        dirs.append(Path(base_dir))
    # A config loaded from a file may say where it was (relative paths resolve there first).
    config_dir = getattr(config, "config_dir", None)
    if isinstance(config_dir, (str, os.PathLike)):
        dirs.append(Path(config_dir))
    return dirs


def build_gate(
    spec: Mapping[str, Any],
    *,
    index: int = 0,
    base_dirs: Sequence[Path] = (),
) -> list[Gate]:
    """The gate(s) of one ``gates`` entry (``rules`` and ``quality`` give several).

    Raises:
        ConfigError: naming ``gates[index]``, the type and the bad option.
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(f'gates[{index}]: must be an object like {{"type": "length"}}')
    type_name = spec.get("type")
    if not isinstance(type_name, str) or not type_name:
        raise ConfigError(f"gates[{index}]: missing 'type'; known types: {', '.join(gate_types())}")
    label = f"gates[{index}] ({type_name})"
    options = {k: v for k, v in spec.items() if k not in _COMMON_KEYS}
    name = spec.get("name")

    if type_name in _BUNDLES:
        return _build_bundle(label, options, name, _BUNDLES[type_name])
    if type_name == "python":
        unknown = sorted(set(options) - {"target", "options"})
        if unknown:
            raise ConfigError(
                f"{label}: unknown key(s) {', '.join(map(repr, unknown))}; known: target, "
                "options, name (put the gate's own settings under 'options')"
            )
        kwargs = options.get("options") or {}
        if not isinstance(kwargs, Mapping):
            raise ConfigError(f"{label}: 'options' must be an object, got {kwargs!r}")
        factory = _import_target(label, options.get("target"), base_dirs)
        return [_make(label, factory, dict(kwargs), name)]
    if type_name in _BUILTIN_TYPES:
        factory = _builtin(type_name)
        if "base_dirs" in options:
            raise ConfigError(f"{label}: unknown option 'base_dirs'")
        gate = _make(label, factory, options, name, base_dirs=base_dirs)
        return [gate]
    if type_name in _USER_TYPES:
        return [_make(label, _USER_TYPES[type_name], options, name)]
    raise ConfigError(f"{label}: unknown gate type; known types: {', '.join(gate_types())}")


def _build_bundle(
    label: str, options: Mapping[str, Any], name: Any, types: tuple[str, ...]
) -> list[Gate]:
    """Every gate of a bundle with defaults; ``exclude`` leaves some out, ``<type>: {...}``
    tunes one."""
    if name is not None:
        raise ConfigError(f"{label}: 'name' is not allowed here (each gate has its own)")
    exclude = options.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(e, str) for e in exclude):
        raise ConfigError(f"{label}: 'exclude' must be a list of gate names")
    known = ", ".join(types)
    bad = sorted(set(exclude) - set(types))
    if bad:
        raise ConfigError(f"{label}: cannot exclude {', '.join(map(repr, bad))}; known: {known}")
    shared = ("exclude", "on_suspect") if types == QUALITY_GATE_TYPES else ("exclude",)
    for key in options:
        if key not in shared and key not in types:
            raise ConfigError(
                f"{label}: unknown option {key!r}; known: {', '.join(shared)}, {known} (an "
                "object of that gate's options each)"
            )
    gates = []
    for type_name in types:
        if type_name in exclude:
            continue
        sub = options.get(type_name) or {}
        if not isinstance(sub, Mapping):
            raise ConfigError(f"{label}: {type_name!r} must be an object of options, got {sub!r}")
        sub = dict(sub)
        if "on_suspect" in options and type_name in ON_SUSPECT_TYPES:
            sub.setdefault("on_suspect", options["on_suspect"])
        gates.append(_make(f"{label} {type_name}", _builtin(type_name), sub, None))
    return gates


def build_gates(
    config: DistillConfig | Sequence[Mapping[str, Any]],
    *,
    base_dir: str | os.PathLike[str] | None = None,
) -> list[Gate]:
    """The gates configured under ``gates`` in the config (or a list of gate specs), in order.

    Relative paths (a ``sql`` gate's ``database``, a ``python`` gate's ``file.py`` target) are
    looked up in ``base_dir`` (or the config's ``config_dir`` when it has one) first, then in
    the current directory. From a config, the ``pii`` key adds the pii gate (on by default)
    unless ``gates`` has one; a pii gate always runs first, wherever it is listed.

    Raises:
        ConfigError: an unknown type or option, or a bad value, naming ``gates[i] (type)``.
    """
    if isinstance(config, Sequence):
        specs, cfg = list(config), None
    else:
        specs, cfg = list(config.gates), config
    base_dirs = _config_dirs(cfg, base_dir)
    gates: list[Gate] = []
    for i, spec in enumerate(specs):
        gates.extend(build_gate(spec, index=i, base_dirs=base_dirs))
    if cfg is not None:
        gates[:0] = _configured_pii(cfg, specs, base_dirs)
    gates = pii_first(gates)
    names = [g.name for g in gates]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(
            f"gates: more than one gate named {', '.join(map(repr, dupes))}; give each a "
            "distinct 'name' so drop reasons tell them apart"
        )
    return gates


def _configured_pii(
    config: DistillConfig, specs: Sequence[Any], base_dirs: Sequence[Path]
) -> list[Gate]:
    """The pii gate the ``pii`` key asks for ([] when "off" or when ``gates`` lists one).

    Raises:
        ConfigError: ``pii`` is set to something else than the default and ``gates`` has a pii
            entry too (which of the two is meant?).
    """
    listed = any(isinstance(s, Mapping) and s.get("type") == "pii" for s in specs)
    setting = config.pii
    if listed:
        if setting != "redact":
            raise ConfigError(
                'pii: set the pii gate either with the "pii" key or as a {"type": "pii"} '
                "entry in gates, not both"
            )
        return []
    if setting == "off":
        return []
    options = {"mode": setting} if isinstance(setting, str) else dict(setting)
    name = options.pop("name", None)
    return [_make("pii", _builtin("pii"), options, name, base_dirs=base_dirs)]


def pii_first(gates: list[Gate]) -> list[Gate]:
    """The pii gates before all others: no gate drops a sample (written to the raw file) or
    reads it before its personal data is redacted."""
    pii = _builtin("pii")
    return [g for g in gates if isinstance(g, pii)] + [g for g in gates if not isinstance(g, pii)]
