"""The models under test and the eval's settings: ``--student``, ``--baseline`` and the config.

``--student`` and ``--baseline`` each take an endpoint config JSON file (an object with the keys
of any endpoint: ``api_base``, ``model``, ``api_key_env``...) or the name of an endpoint under
``"students"`` in the config. With ``--dry-run`` a name that is neither is a model of the
simulator, so ``--student student --baseline base`` needs no config at all.

The settings are the run's own (``metadata.json``: its judges, prices, weights, gates, system
prompt), with ``--config`` merged over them key by key; a directory that holds no run takes
``--config`` over the defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..config.merging import _format_validation_error, load_config, read_config_file
from ..config.models import DistillConfig, EndpointConfig
from ..errors import ConfigError
from ..selection.refilter import load_run_config

__all__ = ["BASELINE_PREFIX", "STUDENT", "Target", "eval_config", "resolve_target"]

STUDENT = "student"
BASELINE_PREFIX = "baseline:"
# Where a dry run's simulated students point before the simulator's address is known.
_SIMULATED = "http://127.0.0.1/v1"


@dataclass(frozen=True)
class Target:
    """A model under test: its label in the outputs, the name it was given, its endpoint."""

    label: str
    name: str
    endpoint: EndpointConfig
    source: str  # "file", "config" or "simulator"

    def public(self) -> dict[str, Any]:
        """What eval_metadata.json records of it (no key)."""
        return {"name": self.name, "from": self.source, **self.endpoint.public_dict()}


def eval_config(
    metadata: Mapping[str, Any] | None, config_path: str | Path | None
) -> DistillConfig:
    """The eval's settings: the run's recorded config with ``--config`` merged over it.

    Raises:
        ConfigError: the file or a merged value is invalid (naming the file and key).
    """
    # Validated on its own first, so that a misspelt key is named, not silently dropped.
    own = load_config(config_path)
    if metadata is None:
        return own
    overrides: dict[str, Any] = read_config_file(config_path) if config_path else {}
    if config_path:
        overrides["config_dir"] = str(Path(config_path).resolve().parent)
    config = load_run_config(metadata, overrides)
    if own.config_dir and not config.config_dir:
        config = config.model_copy(update={"config_dir": own.config_dir})
    return config


def _endpoint_file(path: Path) -> EndpointConfig:
    data = read_config_file(path)
    try:
        return EndpointConfig.model_validate(data)
    except ValidationError as exc:
        raise _format_validation_error(exc, str(path)) from None


def resolve_target(
    spec: str, config: DistillConfig, *, label: str, flag: str, dry_run: bool
) -> Target:
    """The endpoint ``spec`` names: a JSON file, a name under ``students``, or (dry run) a model.

    Raises:
        ConfigError: neither a file nor a known name (the known ones are listed).
    """
    spec = spec.strip()
    if not spec:
        raise ConfigError(f"{flag}: empty; give an endpoint JSON file or a name under 'students'")
    path = Path(spec)
    if path.is_file() or spec.lower().endswith(".json"):
        return Target(label, path.stem, _endpoint_file(path), "file")
    if spec in config.students:
        return Target(label, spec, config.students[spec], "config")
    if dry_run:
        return Target(label, spec, EndpointConfig(api_base=_SIMULATED, model=spec), "simulator")
    known = ", ".join(sorted(config.students)) or "none defined"
    raise ConfigError(
        f'{flag} {spec!r}: no such file, and no endpoint of that name under "students" in the '
        f'config (known: {known}); give an endpoint JSON file or add it to "students"'
    )
