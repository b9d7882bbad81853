"""Expand a study into recipes, one per experiment, without building any config yet.

Each listed backend gets its own grid: the cartesian product of the universal sweep keys and
the keys scoped to that backend. Grids come in backend order, then the ``experiments:``
entries in file order. An entry without ``backend`` inherits the shared one; where that is a
list (the entry's own or the shared one), the entry runs once per backend. A shared backend
section applies only to experiments on that backend, and so does an entry's section for one of
the backends the entry lists; an entry's section for a backend it does not run on is kept, and
the cross-checks skip that entry with a reason. A file without ``sweep:`` or ``experiments:`` is
one experiment (one per backend when ``backend`` is a list).

The number of experiments is known before any is built, so an absurd grid is refused at once.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from harness.schema.messages import did_you_mean
from harness.schema.rules import BACKENDS
from orchestrator.study.document import StudySource
from orchestrator.study.errors import Pos, StudyFileError
from orchestrator.study.keys import ConfigPath, Layer, config_layer, merge
from orchestrator.study.safe_yaml import LocDict
from orchestrator.study.slug import tokens_of
from orchestrator.study.sweep import Dimension

Named = tuple[str, Pos]
"""A backend name and where it was written."""


@dataclass(frozen=True)
class Recipe:
    """How to build one experiment.

    Attributes:
        origin: ``sweep``, ``file`` (a single-experiment file) or ``experiments[i]``.
        layers: settings in merge order (later layers win).
        tokens: slug parts, backend first.
        anchor: where to point at for a problem that no single key caused.

    """

    origin: str
    layers: tuple[Layer, ...]
    tokens: tuple[str, ...]
    anchor: Pos

    def values(self) -> dict[str, Any]:
        """Merge the layers into one nested mapping of settings."""
        merged: dict[str, Any] = {}
        for layer in self.layers:
            merged = merge(merged, layer.values)
        return merged

    def locate(self, path: ConfigPath) -> Pos:
        """Where the setting at ``path`` (or the nearest enclosing one) was written."""
        for length in range(len(path), 0, -1):
            for layer in reversed(self.layers):
                pos = layer.positions.get(path[:length])
                if pos is not None:
                    return pos
        return self.anchor


@dataclass(frozen=True)
class _Grid:
    backend: str
    shared: Layer
    dims: tuple[Dimension, ...]
    origin: str
    anchor: Pos

    def count(self) -> int:
        return math.prod(len(dim.values) for dim in self.dims)

    def recipes(self) -> Iterator[Recipe]:
        choices = [list(zip(dim.layers, dim.tokens, strict=True)) for dim in self.dims]
        for combo in itertools.product(*choices):
            layers = (self.shared, *(layer for layer, _ in combo))
            tokens = (self.backend, *(token for _, token in combo))
            yield Recipe(self.origin, layers, tokens, self.anchor)


@dataclass(frozen=True)
class Plan:
    """Every experiment of a study, as recipes, in run order."""

    grids: tuple[_Grid, ...]
    entries: tuple[Recipe, ...]

    def count(self) -> int:
        """Count the experiments the study expands to (before validation and de-duplication)."""
        return sum(grid.count() for grid in self.grids) + len(self.entries)

    def recipes(self) -> Iterator[Recipe]:
        """Yield the recipes: grids first (in backend order), then the explicit entries."""
        for grid in self.grids:
            yield from grid.recipes()
        yield from self.entries


def make_plan(source: StudySource) -> Plan:
    """Check how the sweep, the backends and the entries fit together; return the plan.

    Raises:
        StudyFileError: no backend, an unknown backend, a scoped sweep key or a backend
            section for a backend that nothing uses, or a bad ``experiments:`` entry.

    """
    shared = source.defaults.without("backend")
    shared_backends = _backends(source.defaults, source.anchor, "")
    entries = _entries(source, shared, shared_backends)
    grids: tuple[_Grid, ...] = ()
    if source.has_sweep or not source.is_study:
        grids = _grids(source, shared)
    used = {grid.backend for grid in grids} | {recipe.tokens[0] for recipe in entries}
    _check_sections(shared, used)
    return Plan(grids, entries)


def _grids(source: StudySource, shared: Layer) -> tuple[_Grid, ...]:
    backend_dim = source.sweep.get(("backend",))
    if backend_dim is not None:
        pairs = zip(backend_dim.values, backend_dim.item_pos, strict=True)
        backends = [_named(value, pos, "sweep.backend") for value, pos in pairs]
    else:
        backends = _backends(source.defaults, source.anchor, "")
    if not backends:
        raise StudyFileError.at(
            source.anchor,
            "no backend: the study does not say which backend to run",
            key="backend",
            fix="add 'backend: pytorch' (or a list such as 'backend: [pytorch, vllm]')",
        )
    dims = [dim for path, dim in source.sweep.items() if path != ("backend",)]
    _check_scopes(dims, [name for name, _ in backends])
    origin = "sweep" if source.has_sweep else "file"
    return tuple(
        _Grid(
            backend=name,
            shared=_for_backend(shared, name, pos, BACKENDS),
            dims=tuple(dim for dim in dims if dim.scope in (None, name)),
            origin=origin,
            anchor=source.anchor,
        )
        for name, pos in backends
    )


def _backends(layer: Layer, anchor: Pos, where: str) -> list[Named]:
    value = layer.values.get("backend")
    key = f"{where}backend"
    if value is None:
        return []
    if isinstance(value, list):
        if not value:
            raise StudyFileError.at(
                layer.positions.get(("backend",), anchor),
                f"'{key}' is an empty list",
                key=key,
                fix="list at least one backend",
            )
        return [_named(item, layer.positions[("backend", i)], key) for i, item in enumerate(value)]
    return [_named(value, layer.positions[("backend",)], key)]


def _named(value: Any, pos: Pos, key: str) -> Named:
    if isinstance(value, str) and value in BACKENDS:
        return value, pos
    guess = did_you_mean(str(value), BACKENDS) if isinstance(value, str) else None
    hint = f"; did you mean '{guess}'?" if guess else ""
    raise StudyFileError.at(
        pos,
        f"{key}: {value!r} is not a backend; allowed: {', '.join(BACKENDS)}{hint}",
        key=key,
        fix=f"use one of {', '.join(BACKENDS)}",
    )


def _for_backend(layer: Layer, name: str, pos: Pos, sections: Iterable[str]) -> Layer:
    """Copy ``layer`` for one backend: the other ``sections`` dropped, ``backend`` set."""
    layer = layer.without(*(other for other in sections if other != name))
    layer.values["backend"] = name
    layer.positions[("backend",)] = pos
    return layer


def _check_scopes(dims: list[Dimension], listed: list[str]) -> None:
    for dim in dims:
        if dim.scope is not None and dim.scope not in listed:
            raise StudyFileError.at(
                dim.pos,
                f"sweep key '{dim.key}' is for backend '{dim.scope}', which is not listed "
                f"(backend: {', '.join(listed)})",
                key=dim.key,
                fix=f"add {dim.scope} to 'backend:', or remove the key",
            )


def _check_sections(shared: Layer, used: set[str]) -> None:
    for name in BACKENDS:
        if shared.values.get(name) is not None and name not in used:
            raise StudyFileError.at(
                shared.positions[(name,)],
                f"section '{name}' is set, but no experiment uses backend '{name}'",
                key=name,
                fix=f"add {name} to 'backend:', or remove the '{name}:' section",
            )


def _entries(source: StudySource, shared: Layer, inherited: list[Named]) -> tuple[Recipe, ...]:
    if source.experiments is None:
        return ()
    recipes: list[Recipe] = []
    for index, item in enumerate(source.experiments):
        origin, pos = f"experiments[{index}]", source.experiments.item_pos[index]
        if not isinstance(item, LocDict):
            raise StudyFileError.at(
                pos,
                f"{origin} must be a mapping of settings",
                key=origin,
                fix="write each entry as key: value pairs, e.g. '- {precision: fp16}'",
            )
        recipes.extend(_entry_recipes(origin, config_layer(item), shared, inherited, pos))
    return tuple(recipes)


def _entry_recipes(
    origin: str, entry: Layer, shared: Layer, inherited: list[Named], pos: Pos
) -> Iterator[Recipe]:
    own = _backends(entry, pos, f"{origin}.")
    backends = own or inherited
    if not backends:
        raise StudyFileError.at(
            pos,
            f"{origin} has no backend, and there is none at the top level",
            key=f"{origin}.backend",
            fix="add 'backend:' to the entry or at the top level",
        )
    listed = [name for name, _ in backends]
    for name, name_pos in backends:
        mine = _for_backend(entry.without("backend"), name, name_pos, listed)
        # Shared sections apply to their own backend only; an entry's section for a backend
        # it does not list stays, and the cross-check skips it with a reason.
        layers = (_for_backend(shared, name, name_pos, BACKENDS), mine)
        tokens = (name, *tokens_of(mine.without("backend").values))
        yield Recipe(origin, layers, tokens, pos)
