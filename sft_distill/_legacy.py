"""The old module paths (``sft_distill.cache``, ``sft_distill.data_io``...) keep working.

Until the package was arranged in folders every module sat directly under ``sft_distill``, and
users, examples and tests import those paths. ``MOVED`` says where each old module's contents
live now; ``install`` (called by ``sft_distill/__init__.py``) makes the old paths resolve:

- An old module with one new home *is* that module: ``import sft_distill.cache`` returns the
  very object ``sft_distill.llm.cache`` (private names, ``isinstance`` and monkeypatching see the
  real thing). A finder at the end of ``sys.meta_path`` serves it on first import.
- An old module split over several new ones is a view of them, registered in ``sys.modules``
  when the package is imported (it imports nothing until a name is read): a name is looked up
  in each home in turn (``RENAMED`` maps names that changed); setting a name sets it in the
  homes that define it, or in all of them when none does (a test shadowing the builtin
  ``open``). Because such a module is already registered, importing it binds nothing on the
  package, so ``sft_distill.estimate`` and ``sft_distill.refilter`` stay the exported functions.
- An old module that is now a package (``config``, ``sources``, ``outputs``, ``cli``,
  ``simulator``) serves its old names from its ``__init__`` with ``package_getattr``.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Iterable
from importlib.machinery import ModuleSpec
from typing import Any

PACKAGE = "sft_distill"

# Old module (directly under the package) -> where its contents live now, first match wins.
MOVED: dict[str, tuple[str, ...]] = {
    "augment": ("sources.augment", "cli.augment"),
    "cache": ("llm.cache",),
    "check_base": ("stages.gates.checks.base",),
    "checks": (
        "stages.gates.checks.referential",
        "stages.gates.checks.evidence",
        "stages.gates.checks.truncation",
        "stages.gates.checks.non_answer",
        "stages.gates.checks.numbers",
        "stages.gates.checks.support",
        "stages.gates.checks.provisions",
        "stages.gates.checks.numerals",
        "stages.gates.checks.base",
    ),
    "chunking": ("sources.chunking",),
    "cli": ("cli.run", "cli.flags", "cli.estimate", "cli.refilter"),
    "cli_tools": ("cli.flags", "cli.estimate", "cli.refilter", "cli"),
    "concurrency": ("llm.limits", "stages.stream"),
    "config": ("config.models", "config.defaults", "config.merging"),
    "data_io": (
        "sources.reader",
        "sources.jsonl",
        "outputs.writers",
        "outputs.formats",
        "outputs.datasets",
        "selection.splitting",
        "text",
        "ids",
        "models",
    ),
    "dedup": (
        "selection.dedup",
        "selection.dedup.base",
        "selection.dedup.jaccard",
        "selection.dedup.embedding",
    ),
    "estimate": ("planning.estimate", "cli.estimate"),
    "estimate_modes": ("planning.modes",),
    "evaluator": ("stages.judge",),
    "filtering": ("selection.thresholds",),
    "finalize": ("selection.finalize",),
    "formats": ("outputs.formats",),
    "gates": ("stages.gates.base", "stages.gates.registry"),
    "generator": ("stages.generate",),
    "instruction_sets": ("sources.distill", "sources.fields", "sources.records", "cli.distill"),
    "llm_client": ("llm.client", "llm.transport", "llm.retry"),
    "manifest": ("outputs.manifest",),
    "number_check": ("stages.gates.checks.numbers",),
    "numerals": ("stages.gates.checks.numerals",),
    "outputs": ("outputs.datasets", "selection.splitting"),
    "pii": ("stages.gates.pii", "stages.gates.pii_detect"),
    "prompts": ("llm.prompts",),
    "provisions": ("stages.gates.checks.provisions",),
    "quality": ("selection.floors",),
    "quality_gates": ("stages.gates.quality",),
    "refilter": ("selection.refilter", "cli.refilter"),
    "report": ("outputs.report",),
    "report_html": ("outputs.report_html",),
    "rule_gates": ("stages.gates.rules", "stages.gates.checks.base"),
    "run_index": ("selection.run_index",),
    "run_usage": ("llm.run_usage",),
    "server_context": ("llm.server_context",),
    "simulator": (
        "simulator.server",
        "simulator.faults",
        "simulator.content",
        "simulator.tasks",
        "simulator.text2sql",
        "simulator.cli",
    ),
    "sources": ("sources.base", "sources.slices"),
    "splitting": ("selection.splitting",),
    "sql_gate": ("stages.gates.sql",),
    "support_check": ("stages.gates.checks.support",),
    "topics": ("sources.topics", "sources.topic_tree", "cli.topics"),
    "utils": ("llm.json_extract", "ids", "text"),
}

# Old modules whose name a package took: their ``__init__`` serves the old names.
PACKAGES = frozenset({"cli", "config", "outputs", "simulator", "sources"})

# Names an old module had that are called differently now: old module -> {old: new}.
RENAMED: dict[str, dict[str, str]] = {
    "dedup": {"normalize_text": "casefold_compact"},
    "utils": {"normalize_text": "casefold_spaced"},
}


def lookup(old: str, name: str) -> Any:
    """``name`` as the old module ``old`` had it, from wherever it lives now."""
    wanted = RENAMED.get(old, {}).get(name, name)
    for module in _homes(old):
        if wanted in module.__dict__:
            return module.__dict__[wanted]
    raise AttributeError(f"module '{PACKAGE}.{old}' has no attribute '{name}'")


def package_getattr(package: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` for a package that took an old module's name."""
    old = package.rpartition(".")[2]

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return lookup(old, name)

    return __getattr__


def _homes(old: str) -> list[types.ModuleType]:
    return [importlib.import_module(f"{PACKAGE}.{home}") for home in MOVED[old]]


class _View(types.ModuleType):
    """An old module split over several new ones: reads and writes go to where names live.

    Setting a name through the view sets it in its home (in every home when none has it: a
    test shadowing the builtin ``open``); deleting it puts back what the homes had before, so
    that ``monkeypatch.setattr(view, ...)`` undoes cleanly.
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        return lookup(self._old, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("__"):
            super().__setattr__(name, value)
            return
        homes = _homes(self._old)
        saved = self.__dict__.setdefault("__saved__", {})
        for module in [m for m in homes if name in m.__dict__] or homes:
            saved.setdefault((module.__name__, name), module.__dict__.get(name, _MISSING))
            setattr(module, name, value)

    def __delattr__(self, name: str) -> None:
        saved = self.__dict__.get("__saved__", {})
        for module in _homes(self._old):
            before = saved.pop((module.__name__, name), _UNSET)
            if before is _UNSET:
                continue  # not set through this view: left alone
            if before is _MISSING:
                delattr(module, name)
            else:
                setattr(module, name, before)

    def __dir__(self) -> list[str]:
        return sorted({n for m in _homes(self._old) for n in m.__dict__})

    @property
    def _old(self) -> str:
        return self.__name__.rpartition(".")[2]


_MISSING = object()  # a name a home did not have before the view set it
_UNSET = object()  # a name the view never set


def _view(name: str) -> _View:
    view = _View(name, f"The old module {name}: see sft_distill._legacy.")
    view.__spec__ = ModuleSpec(name, None)
    return view


class _Loader:
    """Serves an old module with one new home: that module itself."""

    def __init__(self, home: str) -> None:
        self.home = home
        self._spec: Any = None

    def create_module(self, spec: ModuleSpec) -> types.ModuleType:
        module = importlib.import_module(self.home)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        # The import system has just given the module the old name's spec: give its own back.
        module.__spec__ = self._spec


class _Finder:
    """Finds an old module path once nothing else has (it sits last in ``sys.meta_path``)."""

    @staticmethod
    def find_spec(fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        package, _, old = fullname.rpartition(".")
        if package != PACKAGE or old in PACKAGES or old in _views or old not in MOVED:
            return None
        return ModuleSpec(fullname, _Loader(f"{PACKAGE}.{MOVED[old][0]}"))


# Old modules served as views (registered by ``install``).
_views: set[str] = set()


def install(exports: Iterable[str]) -> None:
    """Register the views of split modules and the finder of moved ones.

    An old module named like one of the package's ``exports`` is always a view, so that
    importing it never rebinds the exported name to a module.
    """
    _views.update(old for old, homes in MOVED.items() if len(homes) > 1)
    _views.update(set(exports) & set(MOVED))
    _views.update(RENAMED)  # an old name that changed can only be served by a view
    _views.difference_update(PACKAGES)
    for old in sorted(_views):
        sys.modules.setdefault(f"{PACKAGE}.{old}", _view(f"{PACKAGE}.{old}"))
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
