"""``llem``: the command line. Progress goes to stderr, summaries to stdout.

Exit codes: 0 ok, 1 a run failed, 2 bad input (nothing ran), 130 interrupted.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from harness._version import __version__
from harness.errors import LlemError
from orchestrator.execute import StudyExecution, copy_study_file, new_manifest, new_study_dir, plan
from orchestrator.progress import StudyProgress
from orchestrator.runners import Runner, make_runner
from orchestrator.settings import resolve_runner
from orchestrator.study import Study, load_study
from orchestrator.tables import StudyResult

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

# Piped output gets a wide fixed width instead of rich's 80 columns, so tables stay readable.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)


def fail(error: LlemError | str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print one clear message (cause, then fix) and exit."""
    err.print(f"[bold red]error:[/] {error}", highlight=False, markup=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="llem")
def main() -> None:
    """llem: what LLM inference costs in energy, and what it buys."""


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--runner", "runner_name",
              help="docker or local (default: LLEM_RUNNER, user config, then docker).")
@click.option("--image", help="Docker image for every run (default: llem/<backend>:latest).")
@click.option("--dry-run", is_flag=True, help="Expand and validate only; start nothing.")
@click.option("--output", type=click.Path(path_type=Path), default=Path("results"),
              show_default=True, help="Output root.")
@click.option("--no-gaps", is_flag=True, help="Skip the gaps between runs and cycles.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
@click.option("-v", "--verbose", is_flag=True, help="Print phases and warnings of every run.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def run(file: Path, runner_name: str | None, image: str | None, dry_run: bool, output: Path,
        no_gaps: bool, quiet: bool, verbose: bool, as_json: bool) -> None:
    """Run a study (or a single experiment) FILE."""
    try:
        study = load_study(file)
        name, source = resolve_runner(runner_name)
        runner = make_runner(name, image=image)
    except LlemError as error:
        fail(error)
    if dry_run:
        _print_dry_run(study, as_json)
        return
    problems = runner.preflight({entry.config.backend for entry in study.experiments})
    if problems:
        fail(f"runner '{name}' (from {source}) cannot run here:\n  - " + "\n  - ".join(problems))
    for warning in study.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    summary, study_dir = _execute(study, runner, output, no_gaps, quiet, verbose)
    _print_summary(summary, study_dir, as_json)
    if summary.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(EXIT_FAILED if summary.failed else EXIT_OK)


def _execute(study: Study, runner: Runner, output: Path, no_gaps: bool, quiet: bool,
             verbose: bool) -> tuple[StudyResult, Path]:
    runs = plan(study)
    try:
        study_dir = new_study_dir(study, output)
    except (LlemError, OSError) as error:
        fail(f"cannot create the study directory under '{output}': {error}")
    copy_study_file(study, study_dir)
    manifest = new_manifest(study, runs, runner.name)
    manifest.save(study_dir)
    err.print(f"study [bold]{study.name}[/]: {len(runs)} runs -> {study_dir}", highlight=False)
    _install_interrupt(runner)
    with StudyProgress(err, len(runs), quiet=quiet, verbose=verbose) as progress:
        execution = StudyExecution(study, study_dir, runner, progress.on_event, no_gaps)
        summary = execution.execute(runs, manifest)
    return summary, study_dir


def _install_interrupt(runner: Runner) -> None:
    """First Ctrl-C (or SIGTERM): stop gracefully. Second Ctrl-C: stop now."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if runner.stop_requested.is_set():
            raise KeyboardInterrupt
        err.print("[yellow]stopping: the current run is being stopped; Ctrl-C again to "
                  "kill it now[/]")
        runner.request_stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _print_dry_run(study: Study, as_json: bool) -> None:
    runs = plan(study)
    if as_json:
        out.print_json(json.dumps({
            "study": study.name,
            "design_hash": study.design_hash,
            "configurations": len(study.experiments),
            "cycles": study.execution.n_cycles,
            "runs": [r.run_id for r in runs],
            "skipped": [{"description": s.description, "reason": s.reason}
                        for s in study.skipped],
            "warnings": study.warnings,
        }))
        return
    table = Table(title=f"{study.name}: dry run (nothing started)")
    for column in ("run", "backend", "model", "precision", "configuration"):
        table.add_column(column)
    for run in runs:
        config = run.entry.config
        table.add_row(run.run_id, config.backend, config.model, config.precision, run.entry.slug)
    out.print(table)
    for skipped in study.skipped:
        out.print(f"skipped: {skipped.description}: {skipped.reason}", highlight=False)
    for warning in study.warnings:
        out.print(f"warning: {warning}", highlight=False)
    out.print(
        f"{len(study.experiments)} configurations x {study.execution.n_cycles} cycles = "
        f"{len(runs)} runs; {len(study.skipped)} skipped; design hash {study.design_hash}",
        highlight=False,
    )


def _print_summary(summary: StudyResult, study_dir: Path, as_json: bool) -> None:
    if as_json:
        out.print_json(summary.model_dump_json())
        return
    from orchestrator.manifest import Manifest
    from orchestrator.tables import load_results

    manifest = Manifest.load(study_dir)
    results = {r.run_id: r for r in load_results(study_dir, manifest)}
    table = Table(title=f"{summary.study} ({study_dir})")
    table.add_column("run", no_wrap=True)
    for column in ("status", "tokens/s", "J/token", "energy J", "window s"):
        table.add_column(column, no_wrap=True, justify="right" if column != "status" else "left")
    table.add_column("warnings / failure", overflow="fold")
    for entry in manifest.runs:
        result = results.get(entry.run_id)
        table.add_row(entry.run_id, _status(entry.status), *_figures(result, entry))
    out.print(table)
    counts = ", ".join(f"{count} {status}" for status, count in sorted(summary.counts.items()))
    out.print(f"{counts}; results in {study_dir}", highlight=False)


def _status(status: str) -> str:
    colour = {"completed": "green", "failed": "red", "interrupted": "yellow"}.get(status, "")
    return f"[{colour}]{status}[/]" if colour else status


def _figures(result: Any, entry: Any) -> list[str]:
    if result is None:
        message = entry.failure.cause + ": " + entry.failure.message if entry.failure else ""
        return ["", "", "", "", message]
    energy = result.energy
    return [
        f"{result.throughput.output_tokens_per_s:.1f}",
        _fmt(energy.energy_per_output_token_j, ".4g"),
        _fmt(energy.energy_j, ".4g"),
        f"{result.throughput.duration_s:.2f}",
        " ".join(result.warning_codes()),
    ]


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


@main.command("tiny-model")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--layers", default=2, show_default=True, help="Decoder layers.")
@click.option("--hidden-size", default=64, show_default=True, help="Hidden size.")
@click.option("--vocab-size", default=512, show_default=True, help="BPE vocabulary size.")
@click.option("--seed", default=0, show_default=True, help="Weight and tokenizer seed.")
def tiny_model(out_dir: Path, layers: int, hidden_size: int, vocab_size: int, seed: int) -> None:
    """Build a tiny random-weight Llama-style model and tokenizer in OUT_DIR (offline)."""
    try:
        from harness.tiny_model import build_tiny_model
    except ImportError as error:
        fail(f"building a model needs torch and transformers ({error})",)
    if (out_dir / "config.json").exists():
        err.print(f"{out_dir} already holds a model; keeping it")
        return
    path = build_tiny_model(out_dir, layers=layers, hidden_size=hidden_size,
                            vocab_size=vocab_size, seed=seed)
    out.print(str(path))


@main.command()
def clean() -> None:
    """Remove containers left behind by llem sessions that are no longer alive."""
    from orchestrator.engine import Engine
    from orchestrator.runners.docker import clean_orphans

    try:
        removed = clean_orphans(Engine())
    except LlemError as error:
        fail(error)
    out.print(f"removed {len(removed)} orphaned container(s)"
              + (f": {', '.join(removed)}" if removed else ""), highlight=False)


@main.command()
@click.option("--output", type=click.Path(path_type=Path), default=Path("results"),
              show_default=True, help="Output root whose disk is checked.")
def doctor(output: Path) -> None:
    """Check engine, NVIDIA runtime, GPUs, images, disk and caches; print each fix."""
    from orchestrator.doctor import run_checks

    checks = run_checks(output)
    table = Table(title="llem doctor")
    for column in ("check", "status", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for check in checks:
        table.add_row(check.name, "[green]ok[/]" if check.ok else "[red]problem[/]",
                      check.detail, "" if check.ok else check.fix)
    out.print(table)
    sys.exit(EXIT_OK if all(check.ok for check in checks) else EXIT_FAILED)


@main.group()
def images() -> None:
    """Build and list llem's container images."""


@images.command("build")
@click.argument("name", required=False, default="cpu")
@click.option("--base", help="Base image (default: the Dockerfile's, or a local Debian base).")
def images_build(name: str, base: str | None) -> None:
    """Build llem/NAME:latest (cpu, pytorch, vllm or tensorrt; default cpu)."""
    from orchestrator.images import build

    try:
        build(name, base)
    except LlemError as error:
        fail(error, EXIT_BAD_INPUT if "unknown image" in error.message else EXIT_FAILED)


@images.command("list")
def images_list() -> None:
    """List the llem images the engine holds, with their labels."""
    from orchestrator.engine import Engine
    from orchestrator.images import listing

    try:
        found = listing(Engine())
    except LlemError as error:
        fail(error)
    table = Table(title="llem images")
    for column in ("image", "backend", "backend version", "harness", "size GB", "id"):
        table.add_column(column)
    for image in found:
        labels = image.labels
        for tag in image.tags or [image.ref]:
            table.add_row(tag, labels.get("llem.backend", "?"),
                          labels.get("llem.backend_version", "?"),
                          labels.get("llem.harness_version", "?"),
                          f"{image.size_bytes / 1e9:.2f}", image.id[7:19])
    out.print(table)


if __name__ == "__main__":
    main()
