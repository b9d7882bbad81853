"""Generate the configuration and results references from the models, so neither can drift.

``python -m harness.schema.docgen results > docs/results-reference.md``; a unit test fails when
the committed file differs from what this prints. :func:`render` is the experiment-level part
of docs/configuration.md: the harness never imports the orchestrator, so the study-level
``execution:`` section is added by orchestrator/docgen.py, which writes the whole file
(``python -m orchestrator.docgen > docs/configuration.md``).
"""

from __future__ import annotations

import sys
import types
import typing
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from harness.schema.config import SECTION_MODELS, ExperimentConfig
from harness.schema.result import ErrorRecord, ExperimentResult
from harness.schema.rules import RULES, allowed

HEADER = """# Configuration reference

Generated from the pydantic models by `python -m harness.schema.docgen`; do not edit by hand.
Every model rejects unknown keys. A backend-section field left unset means "the backend's own
default"; the value actually used is recorded in `result.json` under `effective_parameters`.
"""


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{value}`" for value in typing.get_args(annotation))
    args = typing.get_args(annotation)
    if origin is typing.Annotated:  # a constrained type: the constraint is in the meaning
        return _type_name(args[0])
    if origin is list and args:
        return f"list of {_type_name(args[0])}"
    if args and origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in args)
    if isinstance(annotation, type):
        return "null" if annotation is type(None) else annotation.__name__
    return str(annotation).replace("typing.", "")


def _default(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    if field.default_factory is not None:
        return "`{}`" if field.default_factory is dict else "see its section"
    return f"`{field.default}`" if field.default is not None else "unset"


def model_table(model: type[BaseModel], prefix: str = "") -> str:
    """One markdown table: key, type, default, meaning."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| `{prefix}{name}` | {_type_name(field.annotation)} | {_default(field)} | "
            f"{description} |"
        )
    return "\n".join(lines)


def render() -> str:
    """The whole configuration reference as markdown."""
    parts = [HEADER, "## Experiment\n", model_table(ExperimentConfig)]
    for name in ("decoder", "warmup", "baseline", "energy", "latency", "load", "slo", "lora"):
        annotation = ExperimentConfig.model_fields[name].annotation
        model = next(a for a in (annotation, *typing.get_args(annotation))
                     if isinstance(a, type) and issubclass(a, BaseModel))
        parts += [f"\n## `{name}`\n", model_table(model, f"{name}.")]
    for backend, model in SECTION_MODELS.items():
        rules = RULES[backend]
        parts += [
            f"\n## `{backend}` (backend section)\n",
            f"Precisions: {allowed(rules.precisions)}. Decoding: {allowed(rules.decoders)}. "
            f"LoRA: {'yes' if rules.lora else 'no — ' + rules.lora_fix}.\n",
            model_table(model, f"{backend}."),
        ]
    return "\n".join(parts) + "\n"


RESULTS_HEADER = """# Results reference

Generated from the pydantic models by `python -m harness.schema.docgen results`; do not edit by
hand. `result.json` is an `ExperimentResult`, `error.json` an `ErrorRecord` (see `results.md`
for the files of a run). Every model rejects unknown keys. A field this run could not measure
is null, and a warning says why.

Units are in the names and repeated in each meaning: `_j` joules, `_w` watts, `_s` seconds,
`_c` degrees Celsius, `_mhz` megahertz, `_mb` MiB (2^20 bytes), `_gb` GiB (2^30 bytes), `_pct`
percent, `_per_s` and `_per_min` per second and per minute. "Per GPU" lists follow the order of
the measured GPUs (`environment.gpus`).
"""

UNIT_SUFFIXES = (
    ("_per_min", "/min)"),
    ("_per_s", "/s)"),
    ("_j", "(J"),
    ("_w", "(W"),
    ("_s", "(s"),
    ("_c", "(degC"),
    ("_mhz", "(MHz"),
    ("_mb", "(MiB"),
    ("_gb", "(GiB"),
    ("_pct", "(%"),
)
"""Name suffix of a numeric result field, and the text its description must contain."""

RESULT_ROOTS = (("result.json", ExperimentResult), ("error.json", ErrorRecord))


def _nested_models(annotation: Any) -> Iterator[type[BaseModel]]:
    """The models an annotation refers to (through unions, lists and dicts), config aside."""
    if (isinstance(annotation, type) and issubclass(annotation, BaseModel)
            and annotation is not ExperimentConfig):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _nested_models(arg)


def result_models() -> dict[type[BaseModel], list[str]]:
    """Every model of ``result.json`` and ``error.json``, in document order, with its places.

    A place is a file name for a whole file, else the dotted key path inside ``result.json``.
    """
    found: dict[type[BaseModel], list[str]] = {}

    def visit(model: type[BaseModel], place: str, prefix: str) -> None:
        first = model not in found
        found.setdefault(model, []).append(place)
        for name, field in model.model_fields.items() if first else ():
            for nested in _nested_models(field.annotation):
                visit(nested, f"{prefix}{name}", f"{prefix}{name}.")

    for file, root in RESULT_ROOTS:
        visit(root, file, "")
    return found


def unit_expected(name: str, annotation: Any) -> str | None:
    """The unit text a numeric field named ``name`` must mention, or None."""
    if not _is_numeric(annotation):
        return None
    return next((unit for suffix, unit in UNIT_SUFFIXES if name.endswith(suffix)), None)


def _is_numeric(annotation: Any) -> bool:
    if annotation in (int, float):
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list):
        return any(_is_numeric(arg) for arg in typing.get_args(annotation))
    return False


def _result_type(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        named = [_result_type(arg) for arg in args if arg is not type(None)]
        return " or ".join(named) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"list of {_result_type(args[0])}"
    if origin is dict:
        return "object"
    if origin is typing.Literal:
        return " \\| ".join(f"`{value}`" for value in args)
    if annotation is ExperimentConfig:
        return "[ExperimentConfig](configuration.md)"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    return annotation.__name__ if isinstance(annotation, type) else "any"


def result_table(model: type[BaseModel]) -> str:
    """One markdown table: key, type, meaning."""
    lines = ["| key | type | meaning |", "|---|---|---|"]
    for name, field in model.model_fields.items():
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{name}` | {_result_type(field.annotation)} | {description} |")
    return "\n".join(lines)


def render_results() -> str:
    """The whole results reference as markdown."""
    parts = [RESULTS_HEADER.rstrip("\n")]
    for model, places in result_models().items():
        where = ", ".join(f"`{place}`" for place in places)
        doc = (model.__doc__ or "").strip().splitlines()[0]
        parts += [f"\n## {model.__name__}\n", f"{doc} In {where}.\n", result_table(model)]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(render_results() if sys.argv[1:] == ["results"] else render(), end="")
