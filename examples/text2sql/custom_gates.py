"""A user-defined gate for the Text2SQL example: count the joins of each query, drop too many.

Any class with a ``name`` and an ``async def check(sample) -> GateResult`` is a gate. Register it
in the config (``{"type": "python", "target": "examples/text2sql/custom_gates.py:JoinCountGate",
"options": {"max_joins": 2}}``) or pass it from Python
(``DatasetDistillationPipeline(config, gates=[JoinCountGate(max_joins=2)])``).
"""

from __future__ import annotations

import re

from sft_distill.gates import GateResult
from sft_distill.models import Sample
from sft_distill.sql_gate import extract_sql

_JOIN_RE = re.compile(r"\bJOIN\b", re.IGNORECASE)


class JoinCountGate:
    """Records ``sql_joins`` on every SQL sample; drops queries with more than ``max_joins``."""

    def __init__(self, *, max_joins: int = 3, name: str = "join_count") -> None:
        if not isinstance(max_joins, int) or max_joins < 0:
            raise ValueError(f"max_joins must be an integer >= 0, got {max_joins!r}")
        self.name = name
        self.max_joins = max_joins

    async def check(self, sample: Sample) -> GateResult:
        """Keep unless the output's SQL joins more than ``max_joins`` times."""
        sql = extract_sql(sample.output)
        if sql is None:
            return GateResult(keep=True)
        joins = len(_JOIN_RE.findall(sql))
        notes = {"sql_joins": joins}
        if joins > self.max_joins:
            return GateResult(False, f"{joins} joins (max {self.max_joins})", notes)
        return GateResult(True, None, notes)
