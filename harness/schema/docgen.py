"""Generate ``docs/configuration.md`` from the config models, so the reference cannot drift.

``python -m harness.schema.docgen > docs/configuration.md``; a unit test fails when the
committed file differs from what this prints.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from harness.schema.config import SECTION_MODELS, ExperimentConfig
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
    if args and origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
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
    for name in ("decoder", "warmup", "baseline", "energy", "latency", "lora"):
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


if __name__ == "__main__":
    print(render(), end="")
