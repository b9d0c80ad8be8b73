"""Quality gates: cheap checks run on each sample before any evaluator is paid.

A gate is anything with a ``name`` and an async ``check(sample) -> GateResult``. A sample a gate
drops is written to ``generated_raw.jsonl`` with ``drop_reason = "gate:<name>"`` and the gate's
reason in ``drop_detail``, counted in the funnel, and never sent to the evaluators. Annotations
(``exec_pass``, ...) are recorded on the sample whether it is kept or not.

Gates are configured under ``gates`` in the config, one object per gate, run in order::

    "gates": [{"type": "rules", "grounding": {"min_overlap": 0.3}},
              {"type": "quality", "evidence": {"on_missing": "flag"}},
              {"type": "sql", "database": "shop.db", "timeout_s": 2},
              {"type": "python", "target": "mypkg.gates:MyGate", "options": {"limit": 3}}]

``build_gates`` turns that list into gate objects; every mistake is a ``ConfigError`` naming the
gate's index, type and option.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ...errors import ConfigError
from ...models import Sample

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

GATE_PREFIX = "gate:"


@dataclass(frozen=True)
class GateResult:
    """A gate's verdict on one sample.

    ``drop_reason`` replaces ``gate:<name>`` as the dropped sample's reason; the built-in
    decontamination stage sets ``contaminated``.
    """

    keep: bool
    reason: str | None = None
    annotations: dict[str, Any] = field(default_factory=dict)
    drop_reason: str | None = None


@runtime_checkable
class Gate(Protocol):
    """Implement this to add your own check (register it in config or pass it from Python)."""

    name: str

    async def check(self, sample: Sample) -> GateResult: ...


class _BadResult(Exception):
    """A gate's check returned something other than a GateResult."""


async def run_gates(sample: Sample, gates: Sequence[Gate]) -> tuple[GateResult | None, str | None]:
    """Run gates in order until one drops the sample.

    Returns the dropping result and gate name, or (None, None) when every gate kept it. Every
    gate's annotations are merged into ``sample.annotations`` as they come.
    """
    for gate in gates:
        try:
            result = await gate.check(sample)
            if not isinstance(result, GateResult):
                raise _BadResult(
                    f"{gate.name}.check returned {type(result).__name__}, expected GateResult"
                )
            if not isinstance(result.annotations, Mapping):
                raise _BadResult(
                    f"{gate.name}.check returned annotations of type "
                    f"{type(result.annotations).__name__}, expected a dict"
                )
        except _BadResult as exc:
            log.warning("gate %s failed on sample %s: %s", gate.name, sample.id, exc)
            result = GateResult(False, f"gate error: {exc}")
        except Exception as exc:
            # A broken gate must not end the run (resumable or not): the sample is dropped
            # with the error as its reason, so the funnel shows it.
            log.warning("gate %s failed on sample %s: %r", gate.name, sample.id, exc)
            result = GateResult(False, f"gate error: {exc.__class__.__name__}: {exc}")
        if result.annotations:
            sample.annotations.update(result.annotations)
        if not result.keep:
            return result, gate.name
    return None, None


# --- registry ---------------------------------------------------------------------------------


def check_gate(gate: Any, label: str = "gate") -> Gate:
    """Return ``gate`` if it implements the protocol, else raise ConfigError saying what lacks.

    Raises:
        ConfigError: no string ``name``, or no ``async def check``.
    """
    name = getattr(gate, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{label}: {type(gate).__name__} has no 'name' string attribute")
    check = getattr(gate, "check", None)
    if check is None or not inspect.iscoroutinefunction(check):
        raise ConfigError(f"{label}: {type(gate).__name__}.check must be an 'async def'")
    return gate  # type: ignore[no-any-return]


def resolve_path(value: str, base_dirs: Sequence[Path]) -> Path:
    """A file a gate's config names: itself when absolute, else in the first base that has it.

    ``base_dirs`` come first (the config file's folder), then the current directory.
    """
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    for base in base_dirs:
        if (base / p).exists():
            return base / p
    return Path.cwd() / p
