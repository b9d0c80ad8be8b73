"""Quality gates: cheap checks run on each sample before any evaluator is paid.

A gate is anything with a ``name`` and an async ``check(sample) -> GateResult``. A sample a gate
drops is written to ``generated_raw.jsonl`` with ``drop_reason = "gate:<name>"`` and the gate's
reason in ``drop_detail``, counted in the funnel, and never sent to the evaluators. Annotations
(``exec_pass``, ...) are recorded on the sample whether it is kept or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .models import Sample

if TYPE_CHECKING:
    from .config import DistillConfig

GATE_PREFIX = "gate:"


@dataclass(frozen=True)
class GateResult:
    """A gate's verdict on one sample."""

    keep: bool
    reason: str | None = None
    annotations: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Gate(Protocol):
    """Implement this to add your own check (register it in config or pass it from Python)."""

    name: str

    async def check(self, sample: Sample) -> GateResult: ...


async def run_gates(sample: Sample, gates: Sequence[Gate]) -> tuple[GateResult | None, str | None]:
    """Run gates in order until one drops the sample.

    Returns the dropping result and gate name, or (None, None) when every gate kept it. Every
    gate's annotations are merged into ``sample.annotations`` as they come.
    """
    for gate in gates:
        result = await gate.check(sample)
        if result.annotations:
            sample.annotations.update(result.annotations)
        if not result.keep:
            return result, gate.name
    return None, None


def build_gates(config: DistillConfig) -> list[Gate]:
    """The gates configured under ``gates`` in the config, in order."""
    return []
