"""Validate experiments and the ``execution:`` and ``report:`` blocks, each problem at its line.

A value combination that the cross-checks reject (``Problem.cross_check``) skips that one
experiment; any other problem (a bad value, a missing required key) fails the whole load.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from harness.schema.config import ExperimentConfig
from harness.schema.messages import Problem, describe
from orchestrator.study.errors import Pos, StudyFileError
from orchestrator.study.execution import ExecutionConfig
from orchestrator.study.expand import Recipe
from orchestrator.study.model import SkippedEntry
from orchestrator.study.report_inputs import ReportInputs
from orchestrator.study.safe_yaml import DocPath, LocDict, LocList, to_plain
from orchestrator.study.slug import slug

SectionT = TypeVar("SectionT", bound=BaseModel)


def parse_execution(block: LocDict) -> ExecutionConfig:
    """Validate the ``execution:`` mapping.

    Raises:
        StudyFileError: an unknown key or a bad value, at its line.

    """
    return _parse_section(block, "execution", ExecutionConfig)


def parse_report(block: LocDict) -> ReportInputs:
    """Validate the ``report:`` mapping (inputs of the report's derived figures).

    Raises:
        StudyFileError: an unknown key or a bad value, at its line.

    """
    return _parse_section(block, "report", ReportInputs)


def _parse_section(block: LocDict, name: str, model: type[SectionT]) -> SectionT:
    try:
        return model.model_validate(to_plain(block))
    except ValidationError as error:
        problem = describe(error, root=model)[0]
        key = f"{name}.{problem.dotted}" if problem.path else name
        raise StudyFileError.at(
            doc_pos(block, problem.path, block.pos),
            f"in {name}: {problem.message}",
            key=key,
            fix=_fix(problem, key),
        ) from error


def build(recipe: Recipe) -> ExperimentConfig | SkippedEntry:
    """Build one experiment; a cross-check rejection comes back as a `SkippedEntry`.

    Raises:
        StudyFileError: any problem that is not a cross-check, at the line that caused it.

    """
    try:
        return ExperimentConfig.model_validate(recipe.values())
    except ValidationError as error:
        problems = describe(error)
        hard = [problem for problem in problems if not problem.cross_check]
        if hard:
            raise _located(hard[0], recipe) from error
        return SkippedEntry(
            description=f"{slug(recipe.tokens)} ({recipe.origin})",
            reason="; ".join(problem.message for problem in problems),
        )


def doc_pos(node: Any, path: DocPath, fallback: Pos) -> Pos:
    """Position of the deepest key or item along ``path`` that exists in the document."""
    pos = fallback
    for part in path:
        if isinstance(node, LocDict) and isinstance(part, str) and part in node:
            pos, node = node.key_pos[part], node[part]
        elif isinstance(node, LocList) and isinstance(part, int) and part < len(node):
            pos, node = node.item_pos[part], node[part]
        else:
            break
    return pos


def _located(problem: Problem, recipe: Recipe) -> StudyFileError:
    path = problem.path or _named_field(problem.message)
    key = ".".join(str(part) for part in path) or None
    return StudyFileError.at(
        recipe.locate(path), problem.message, key=key, fix=_fix(problem, key or "the value")
    )


def _named_field(message: str) -> DocPath:
    # A model-level check (the dataset kind, say) has no location; its message starts with
    # the field it is about.
    first = message.split(" ", 1)[0].rstrip(":")
    return (first,) if first in ExperimentConfig.model_fields else ()


def _fix(problem: Problem, key: str) -> str:
    if problem.message.endswith("is required"):
        return f"set '{key}' (at the top level, or in every entry that needs it)"
    if "did you mean" in problem.message:
        return "use the key suggested above"
    if "valid string" in problem.message:
        return f"quote the value of '{key}' so that YAML reads it as text"
    if "allowed" in problem.message:
        return f"change '{key}' to one of the allowed values"
    return f"correct '{key}' as described above"
