"""``llem``: the command line. Progress goes to stderr, summaries to stdout.

Exit codes: 0 ok, 1 a run failed, 2 bad input (nothing ran), 130 interrupted. With ``--json``
an error is also a JSON object on stdout (message, fix, exit code), with the same exit code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError
from rich.table import Table

from harness._version import __version__
from harness.errors import ConfigError, LlemError
from harness.io import DiskFullError
from harness.models import hub_cache
from harness.schema import ExperimentResult
from harness.schema.headline import TERMINAL_METRICS
from orchestrator.cli_common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    PERCENT,
    JsonCommand,
    err,
    fail,
    out,
)
from orchestrator.execute import COOL_DOWN_ELSEWHERE, COOL_DOWN_FIX, StudyExecution
from orchestrator.fetch import fetch_missing, hub_models
from orchestrator.manifest import Manifest, RunEntry
from orchestrator.preflight import study_problems
from orchestrator.progress import StudyProgress
from orchestrator.report.commands import compare as compare_command
from orchestrator.report.commands import history as history_command
from orchestrator.runners import Runner, SlurmRunner, make_runner
from orchestrator.settings import resolve_output, resolve_runner
from orchestrator.study import Study, check_cycles, load_study
from orchestrator.study.execution import parse_gpus
from orchestrator.study.inputs import unpinned_hub_models
from orchestrator.study_dir import (
    OpenStudy,
    check_output_root,
    check_study_dir,
    load_kept_study,
    open_study_dir,
    pin_measured_commits,
    preview_resume,
)
from orchestrator.summary import StudySummary
from orchestrator.tables import export_csv

if TYPE_CHECKING:
    from orchestrator.report.nightly import PreviousNight
    from orchestrator.report.study_data import StudyData

LARGE_STUDY = 1000
"""Runs above which a study asks for --yes."""
MIN_FREE_GB = 1.0
DRY_RUN_ROWS = 200


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="llem")
def main() -> None:
    """llem: what LLM inference costs in energy, and what it buys."""


@main.command(cls=JsonCommand)
@click.argument("file", type=click.Path(path_type=Path), required=False)
@click.option("--runner", "runner_name",
              help="docker, local or slurm (default: LLEM_RUNNER, execution.runner, user "
              "config, then docker).")
@click.option("--image", help="Docker image for every run (default: llem/<backend>:latest).")
@click.option("--dry-run", is_flag=True, help="Expand, validate and estimate; start nothing.")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path),
              help="Continue the study in this directory (pending, failed, interrupted runs).")
@click.option("--cycles", type=click.IntRange(min=1), help="Override execution.n_cycles "
              "(with --resume: top up to this many cycles).")
@click.option("--order", type=click.Choice(["sequential", "interleaved", "shuffled"]),
              help="Override execution.cycle_order.")
@click.option("--gpus", help="Override execution.gpus, e.g. 0,1.")
@click.option("--output", type=click.Path(path_type=Path),
              help="Output root (default: 'output:' in the user config, then ./results).")
@click.option("--no-gaps", is_flag=True, help="Skip the gaps between runs and cycles.")
@click.option("--yes", is_flag=True, help=f"Run a study larger than {LARGE_STUDY} runs.")
@click.option("--export-csv", is_flag=True, help="Also write results.csv next to results.parquet.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
@click.option("-v", "--verbose", is_flag=True, help="Print phases and warnings of every run.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--offline", is_flag=True, help="Fetch no model: a hub model missing from the "
              "Hugging Face cache is refused (fill it with llem fetch).")
@click.option("--detach", is_flag=True, help="Slurm runner: submit every pending run and "
              "return; llem run --resume DIR follows and collects them.")
def run(file: Path | None, runner_name: str | None, image: str | None, dry_run: bool,
        resume_dir: Path | None, cycles: int | None, order: str | None, gpus: str | None,
        output: Path | None, no_gaps: bool, yes: bool, export_csv: bool, quiet: bool,
        verbose: bool, as_json: bool, offline: bool, detach: bool) -> None:
    """Run a study (or a single experiment) FILE, or --resume a study directory."""
    request = RunRequest(file, resume_dir, cycles, order, gpus, runner_name, image, output,
                         yes, offline)
    options = RunOptions(Path(), no_gaps, quiet, verbose, as_json, export_csv, detach)
    if dry_run:
        try:
            study = _with_overrides(_load(file, resume_dir), cycles, order, gpus)
            resumed = None if resume_dir is None else preview_resume(study, resume_dir, cycles)
        except LlemError as error:
            fail(error)
        _print_dry_run(study, as_json, no_gaps, resumed)
        return
    summary, study_dir = _run_study(request, options)
    if detach and not summary.interrupted:
        submitted = summary.counts.get("running", 0)
        err.print(f"{submitted} run(s) submitted to Slurm; follow and collect them with: "
                  f"llem run --resume {study_dir}", highlight=False)
        sys.exit(EXIT_OK)
    _print_summary(summary, study_dir, as_json)
    for warning in summary.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if summary.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(EXIT_FAILED if summary.failed else EXIT_OK)


@dataclass(frozen=True)
class RunRequest:
    """What ``llem run`` (or ``llem nightly``) was asked to run, and with what."""

    file: Path | None
    resume_dir: Path | None
    cycles: int | None
    order: str | None
    gpus: str | None
    runner_name: str | None
    image: str | None
    output: Path | None
    yes: bool
    offline: bool


def _run_study(request: RunRequest, options: RunOptions) -> tuple[StudySummary, Path]:
    """Load, check and run a study as ``llem run`` does; bad input exits 2 before any run."""
    file, resume_dir, cycles = request.file, request.resume_dir, request.cycles
    try:
        study = _with_overrides(_load(file, resume_dir), cycles, request.order, request.gpus)
        # A resume's checks (design, inputs, manifest) read only: a refusal comes before the
        # runner's checks and before any model is fetched.
        if resume_dir is not None:
            preview_resume(study, resume_dir, cycles)
        name, source = resolve_runner(request.runner_name, study.execution.runner)
        runner = make_runner(name, image=request.image, slurm=study.execution.slurm)
        options = dataclasses.replace(options, output=resolve_output(request.output))
        if options.detach and not runner.detachable:
            raise ConfigError(f"--detach needs a runner that hands runs to a scheduler; the "
                              f"{name} runner's runs end with llem",
                              fix="use --runner slurm, or leave --detach out")
        if study.execution.gap_until_cool and not options.no_gaps and not runner.host_gpus:
            raise ConfigError(COOL_DOWN_ELSEWHERE.format(runner=name), fix=COOL_DOWN_FIX)
        if isinstance(runner, SlurmRunner):  # the shared-storage check writes there
            runner.output_root = resume_dir or options.output
        if resume_dir is None:
            check_output_root(options.output)  # before the preflight fetches any model
        _guard(study, options.output if resume_dir is None else resume_dir, request.yes)
    except LlemError as error:
        fail(error)
    try:
        problems = study_problems(study, runner, fetch=not request.offline,
                                  say=lambda line: err.print(line, highlight=False))
    except LlemError as error:
        fail(error)
    if problems:
        fail(f"the study cannot run here (runner '{name}', from {source}):\n  - "
             + "\n  - ".join(problems))
    if unpinned_hub_models(entry.config for entry in study.experiments):
        try:  # fetched just now: hashed again, at the commit the runs will read
            study = _with_overrides(_load(file, resume_dir), cycles, request.order,
                                    request.gpus)
        except LlemError as error:
            fail(error)
    for warning in study.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    return _execute(study, runner, options, resume_dir, cycles)


@dataclass(frozen=True)
class RunOptions:
    """How ``llem run`` presents and where it writes."""

    output: Path
    no_gaps: bool
    quiet: bool
    verbose: bool
    as_json: bool
    export_csv: bool
    detach: bool = False


def _load(file: Path | None, resume_dir: Path | None) -> Study:
    if file is None and resume_dir is None:
        raise ConfigError("no study file given", fix="llem run STUDY.yaml, or --resume DIR")
    if resume_dir is not None:
        check_study_dir(resume_dir)  # before the runner's checks and any fetch
        if file is None or file.resolve() == (resume_dir / "study.yaml").resolve():
            # the kept copies, their relative paths read as beside the originals: the study as
            # it last ran, or the first invocation's files when study.yaml is named
            return pin_measured_commits(load_kept_study(resume_dir, first=file is not None),
                                        resume_dir)
        return pin_measured_commits(load_study(file), resume_dir)
    assert file is not None
    return load_study(file)


def _with_overrides(study: Study, cycles: int | None, order: str | None,
                    gpus: str | None) -> Study:
    update: dict[str, Any] = {}
    if cycles is not None:
        check_cycles(study, cycles, f"--cycles {cycles}")
        update["n_cycles"] = cycles
    if order is not None:
        update["cycle_order"] = order
    if gpus is not None:
        update["gpus"] = parse_gpus(gpus)
    if not update:
        return study
    return dataclasses.replace(study, execution=study.execution.model_copy(update=update))


def _guard(study: Study, where: Path, yes: bool) -> None:
    runs = len(study.experiments) * study.execution.n_cycles
    if runs > LARGE_STUDY and not yes:
        question = f"this study has {runs} runs (more than {LARGE_STUDY}); run them all?"
        if not (sys.stdin.isatty() and click.confirm(question, err=True)):
            raise ConfigError(f"this study has {runs} runs (more than {LARGE_STUDY})",
                              fix="check it with --dry-run, then pass --yes to run it")
    probe = where if where.exists() else Path.cwd()
    free_gb = shutil.disk_usage(probe).free / 2**30
    if free_gb < MIN_FREE_GB:
        raise ConfigError(f"only {free_gb:.1f} GiB free under {probe} (less than "
                          f"{MIN_FREE_GB:g} GiB)", fix="free some disk or choose --output")


def _execute(study: Study, runner: Runner, options: RunOptions, resume_dir: Path | None,
             cycles: int | None) -> tuple[StudySummary, Path]:
    with contextlib.ExitStack() as stack:
        try:
            opened = stack.enter_context(open_study_dir(
                study, runner.name, output_root=options.output, resume_dir=resume_dir,
                cycles=cycles, no_gaps=options.no_gaps))
        except (LlemError, OSError) as error:
            fail(error if isinstance(error, LlemError) else f"{error}")
        for note in (*opened.notes, *_runner_change(opened.manifest, runner.name)):
            err.print(f"[yellow]resume:[/] {note}", highlight=False)
        study_dir = opened.path
        err.print(f"study [bold]{study.name}[/]: {opened.todo} of {len(opened.manifest.runs)} "
                  f"runs to do -> {study_dir}", highlight=False)
        interrupts = _Interrupts(runner)
        interrupts.install()
        try:
            with StudyProgress(err, opened.todo, quiet=options.quiet,
                               verbose=options.verbose) as progress:
                execution = StudyExecution(study, study_dir, runner, progress.on_event,
                                           options.no_gaps, detach=options.detach)
                summary = execution.execute(opened.runs, opened.manifest)
                interrupts.disarm()
            if options.export_csv and summary.results_table:
                export_csv(study_dir)
        except DiskFullError as error:
            fail(LlemError(f"{error.message}; the study stopped", fix=f"{error.remedy}, then "
                           f"continue it with: llem run --resume {study_dir}"), EXIT_FAILED)
        except LlemError as error:
            fail(error)
    return summary, study_dir


def _runner_change(manifest: Manifest, runner: str) -> list[str]:
    """A note when completed runs were made by another runner than the one about to run."""
    todo = [run for run in manifest.runs if run.status not in ("completed", "skipped")]
    others = sorted({run.runner or manifest.runner for run in manifest.runs
                     if run.status == "completed" and (run.runner or manifest.runner) != runner})
    if not todo or not others:
        return []
    return [f"completed runs were made with the {', '.join(others)} runner, the {len(todo)} "
            f"run(s) still to do run with {runner}: they are not pooled with them (stats.json "
            "keeps one entry per environment)"]


class _Interrupts:
    """First Ctrl-C (or SIGTERM): stop gracefully. Second: kill the run now. Later: ignored.

    The second raises ``KeyboardInterrupt`` into the study, which records the killed run
    ``interrupted`` and writes the summary; it is raised once, and never after ``disarm``.
    """

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.count = 0
        self.armed = True

    def install(self) -> None:
        signal.signal(signal.SIGINT, self)
        signal.signal(signal.SIGTERM, self)

    def disarm(self) -> None:
        self.armed = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        # Counted first: a signal that lands while this handler runs is the second one.
        self.count += 1
        if self.count == 1:
            err.print("[yellow]stopping: the current run is being stopped; Ctrl-C again to "
                      "kill it now[/]")
            self.runner.request_stop()
        elif self.count == 2 and self.armed:
            err.print("[yellow]killing the current run now; writing the summary[/]")
            raise KeyboardInterrupt
        else:
            err.print("[yellow]already stopping: writing the summary[/]")


def _print_dry_run(study: Study, as_json: bool, no_gaps: bool,
                   resumed: OpenStudy | None = None) -> None:
    """The plan (or, with ``resumed``, only what the resume would run) and its estimates."""
    from orchestrator.dryrun import estimate

    if resumed is None:
        found = estimate(study, no_gaps)
    else:
        found = estimate(study, no_gaps, resumed.runs, resumed.positions_to_do())
    runs = found["runs"]
    resume = None if resumed is None else {
        "study_dir": str(resumed.path), "to_do": resumed.todo,
        "runs_in_study": len(resumed.manifest.runs), "notes": resumed.notes}
    if as_json:
        # Plain JSON for machines: rich's highlighting costs seconds on a 10,000-run plan.
        click.echo(json.dumps({
            "resume": resume,
            "study": study.name, "design_hash": study.design_hash,
            "configurations": len(study.experiments), "cycles": study.execution.n_cycles,
            "grids": found["grids"],
            "runs": [{"run_id": r.run.run_id, "backend": r.run.entry.config.backend,
                      "vram_gb_per_gpu": r.vram_gb, "fits": r.fits,
                      "reservation": r.reservation} for r in runs],
            "skipped": [{"description": s.description, "reason": s.reason}
                        for s in study.skipped],
            "warnings": study.warnings, "gpus": found["gpus"],
            "estimated_duration_s": found["estimated_duration_s"],
        }, indent=1))
        return
    resuming = "" if resumed is None else f", resume of {resumed.path}"
    table = Table(title=f"{study.name}: dry run (nothing started{resuming})")
    for column in ("run", "backend", "precision", "configuration", "VRAM GB/GPU (est.)", "fit"):
        table.add_column(column)
    for item in runs[:DRY_RUN_ROWS]:
        config = item.run.entry.config
        vram = "?" if item.vram_gb is None else f"{item.vram_gb:.2f}"
        table.add_row(item.run.run_id, config.backend, config.precision, item.run.entry.slug,
                      vram, item.fits)
    out.print(table)
    if len(runs) > DRY_RUN_ROWS:
        out.print(f"... and {len(runs) - DRY_RUN_ROWS} more runs (--json lists all)")
    for skipped in study.skipped:
        out.print(f"skipped: {skipped.description}: {skipped.reason}", highlight=False)
    for warning in study.warnings:
        out.print(f"warning: {warning}", highlight=False)
    for note in resumed.notes if resumed else []:
        out.print(f"resume: {note}", highlight=False)
    for backend, grid in found["grids"].items():
        reserved = next(r.reservation for r in runs if r.run.entry.config.backend == backend)
        out.print(f"grid {backend}: {grid['configurations']} configurations, {grid['runs']} "
                  f"runs; {reserved}", highlight=False)
    gpus = ", ".join(f"{name} ({gb:.0f} GB)" for name, gb in found["gpus"]) or "none detected"
    out.print(f"GPUs: {gpus}", highlight=False)
    if resumed is not None:
        out.print(f"{resumed.todo} of {len(resumed.manifest.runs)} runs to do in "
                  f"{resumed.path}; design hash {study.design_hash} (as the study's)",
                  highlight=False)
    else:
        out.print(
            f"{len(study.experiments)} configurations x {study.execution.n_cycles} cycles = "
            f"{len(runs)} runs; {len(study.skipped)} skipped; design hash {study.design_hash}",
            highlight=False,
        )
    seconds = found["estimated_duration_s"]
    shown = f"{seconds / 3600:.1f} h" if seconds >= 7200 else f"{seconds / 60:.0f} min"
    out.print(f"estimated duration (rough estimate): {shown}", highlight=False)


def _print_summary(summary: StudySummary, study_dir: Path, as_json: bool) -> None:
    if as_json:
        click.echo(summary.model_dump_json(indent=2))
        return
    from orchestrator.tables import load_results

    manifest = Manifest.load(study_dir)
    results = {r.run_id: r for r in load_results(study_dir, manifest)}
    table = Table(title=f"{summary.study} ({study_dir})")
    table.add_column("run", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for metric in TERMINAL_METRICS:
        table.add_column(metric.column or metric.name, no_wrap=True, justify="right")
    table.add_column("warnings / failure", overflow="fold")
    for entry in manifest.runs:
        result = results.get(entry.run_id)
        table.add_row(entry.run_id, _status(entry.status), *_figures(result, entry))
    out.print(table)
    counts = ", ".join(f"{count} {status}" for status, count in sorted(summary.counts.items()))
    out.print(f"{counts}; results in {study_dir}", highlight=False)
    if summary.report is not None:
        out.print(f"report: {study_dir / summary.report} (llem report {study_dir} prints it)",
                  highlight=False)


def _status(status: str) -> str:
    colour = {"completed": "green", "failed": "red", "interrupted": "yellow"}.get(status, "")
    return f"[{colour}]{status}[/]" if colour else status


def _figures(result: ExperimentResult | None, entry: RunEntry) -> list[str]:
    if result is None:
        message = entry.failure.cause + ": " + entry.failure.message if entry.failure else ""
        return [""] * len(TERMINAL_METRICS) + [message]
    figures = [_fmt(metric.value(result), metric.spec) for metric in TERMINAL_METRICS]
    return [*figures, " ".join(result.warning_codes())]


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _fetch(study: Study) -> None:
    try:
        fetch_missing(hub_models(study), lambda line: err.print(line, highlight=False))
    except LlemError as error:
        fail(error)


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
def fetch(file: Path) -> None:
    """Fetch the Hugging Face models of study FILE into the host's cache (runs read it offline)."""
    try:
        study = load_study(file)
    except LlemError as error:
        fail(error)
    _fetch(study)
    out.print(f"{len(hub_models(study))} hub model(s) ready in {hub_cache()}", highlight=False)


@main.command()
@click.argument("study_dir", type=click.Path(path_type=Path))
@click.option("--html/--no-html", "html", default=True, show_default=True,
              help="Write STUDY_DIR/report.html again too.")
@click.option("--carbon-intensity", type=click.FloatRange(min=0, min_open=True),
              help="Grid carbon intensity in gCO2e/kWh, for emissions per 1M tokens "
              "(overrides the study's report: section).")
@click.option("--price", type=click.FloatRange(min=0, min_open=True),
              help="Electricity price per kWh, for cost per 1M tokens.")
@click.option("--currency", help="Currency of --price (default: the study's, or EUR); "
              "only with --price.")
def report(study_dir: Path, html: bool, carbon_intensity: float | None, price: float | None,
           currency: str | None) -> None:
    """Print a study directory's report; write its report.html (offline, self-contained)."""
    from orchestrator.report.build import write_report
    from orchestrator.report.study_data import StudyData
    from orchestrator.report.terminal import print_report
    from orchestrator.study.report_inputs import ReportInputs

    if currency is not None and price is None:  # it would relabel the study's price
        fail(ConfigError(f"--currency {currency} without --price would label the study's own "
                         "price with a currency it was not given in",
                         fix="give --price with --currency, or leave --currency out to keep "
                         "the study's price and currency"))
    given = {"carbon_intensity_g_per_kwh": carbon_intensity,
             "electricity_price_per_kwh": price, "currency": currency}
    try:
        override = ReportInputs(**{k: v for k, v in given.items() if v is not None})
    except ValidationError:
        fail(ConfigError(f"--currency {currency!r} is not a currency code",
                         fix="give a code of 1 to 8 characters, e.g. EUR or USD"))
    try:
        print_report(StudyData.load(study_dir), out)
        if html:
            path = write_report(study_dir, override)
            out.print(f"report: {path}", highlight=False)
    except ConfigError as error:
        fail(error)
    except OSError as error:
        fail(ConfigError(f"cannot write the report in {study_dir}: {error}",
                         fix="free disk space or give a writable copy of the study directory"))


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--root", type=click.Path(path_type=Path), default=Path("results/nightly"),
              show_default=True, help="Folder of the nightly study directories.")
@click.option("--runner", "runner_name",
              type=click.Choice(["docker", "local"]), help="Runner (default as llem run).")
@click.option("--image", help="Docker image for every run (default: llem/<backend>:latest).")
@click.option("--cycles", type=click.IntRange(min=1), help="Override execution.n_cycles.")
@click.option("--threshold", type=PERCENT, default=5.0, show_default=True,
              help="Change (%) beyond which a significant change is a regression.")
@click.option("--keep", type=click.IntRange(min=2), help="Keep only the newest KEEP nightly "
              "study directories (tonight and every night compared with always stay).")
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
def nightly(file: Path, root: Path, runner_name: str | None, image: str | None,
            cycles: int | None, threshold: float, keep: int | None, quiet: bool) -> None:
    """Run FILE as tonight's study under --root and compare it with the earlier nights.

    Each configuration is compared with the newest earlier night of the same study and design
    that was not interrupted, completed a run and measured it. Exit 0: no regression (or
    nothing to compare with); 1: a gating metric regressed or a run failed; 2: bad input, the
    nights are not comparable (after --keep pruned), or another nightly holds --root (nothing
    ran); 130: interrupted (Ctrl-C; nothing compared, nothing pruned).
    """
    from orchestrator.report import nightly as nights

    request = RunRequest(file, None, cycles, None, None, runner_name, image, root, True, False)
    options = RunOptions(root, no_gaps=False, quiet=quiet, verbose=False, as_json=False,
                         export_csv=False)
    try:
        with nights.nightly_lock(root):
            summary, study_dir = _run_study(request, options)
            _print_summary(summary, study_dir, as_json=False)
            if summary.interrupted:  # a partial night: no verdict, no retention
                err.print(f"interrupted: nothing compared, nothing pruned; continue it with: "
                          f"llem run --resume {study_dir}", highlight=False, markup=False)
                sys.exit(EXIT_INTERRUPTED)
            previous = nights.find_previous(root, study_dir)
            used: list[Path] = list(filter(None, [previous.path]))
            try:  # a comparison that raises (not comparable) still lets retention run
                regressed = _compare_nightly(previous, study_dir, summary, threshold, used)
            finally:
                _prune_nightlies(root, keep, (study_dir, *used))
    except LlemError as error:
        fail(error)
    sys.exit(EXIT_FAILED if regressed or summary.failed else EXIT_OK)


def _compare_nightly(previous: PreviousNight, study_dir: Path, summary: StudySummary,
                     threshold: float, used: list[Path]) -> bool:
    """Compare tonight's study with the earlier nights; write comparison.md/.json.

    Each configuration is compared with the newest earlier night that has it; the nights
    read stop at the first that completes every configuration of tonight. ``used`` gets
    every night a configuration was compared with (retention keeps them). True: regressed.
    """
    from harness.io import write_text
    from orchestrator.report.compare import compare_studies
    from orchestrator.report.compare_output import markdown, print_terminal
    from orchestrator.report.nightly import COMPARISON_JSON, COMPARISON_MD
    from orchestrator.report.study_data import StudyData

    if summary.counts.get("completed", 0) == 0:  # every run failed: exit 1 says so
        out.print("no completed run tonight: nothing compared", highlight=False)
        return False
    if previous.path is None:
        out.print(previous.why_none, highlight=False)
        return False
    tonight = StudyData.load(study_dir)
    comparison = compare_studies(_baselines(previous.earlier, tonight), tonight,
                                 threshold_pct=threshold)
    used[:] = [Path(ref.directory) for ref in comparison.baselines]
    write_text(study_dir / COMPARISON_JSON, comparison.model_dump_json(indent=2))
    write_text(study_dir / COMPARISON_MD, markdown(comparison))
    print_terminal(comparison, out)
    out.print(f"compared with {previous.path}; {study_dir / COMPARISON_MD}", highlight=False)
    return comparison.regressed


def _baselines(earlier: tuple[Path, ...], tonight: StudyData) -> list[StudyData]:
    """The earlier nights, newest first, read until every configuration of tonight has one."""
    from orchestrator.report.compare import by_hash
    from orchestrator.report.study_data import StudyData

    missing, studies = set(by_hash(tonight)), []
    for path in earlier:
        study = StudyData.load(path)
        studies.append(study)
        missing -= set(by_hash(study))
        if not missing:
            break
    return studies


def _prune_nightlies(root: Path, keep: int | None, protect: tuple[Path, ...]) -> None:
    """Apply --keep: remove the oldest nights of tonight's study beyond KEEP, say which."""
    from orchestrator.report.nightly import prune

    if keep is not None:
        for removed in prune(root, keep, protect):
            err.print(f"removed the old nightly {removed}", highlight=False)


@main.command("tiny-model")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--layers", default=2, show_default=True, help="Decoder layers.")
@click.option("--hidden-size", default=64, show_default=True, help="Hidden size.")
@click.option("--heads", type=click.IntRange(min=1), default=None,
              help="Attention heads, each with its own KV head (default: 4 heads sharing 2 KV "
                   "heads, a head size of 16). vLLM's CPU "
                   "attention needs a head size it has kernels for: 64 works (--hidden-size "
                   "128 --heads 2; see --for-vllm-cpu).")
@click.option("--for-vllm-cpu", is_flag=True,
              help="The shape vLLM's CPU build accepts: hidden size 128, 2 heads (head size 64).")
@click.option("--vocab-size", default=512, show_default=True, help="BPE vocabulary size.")
@click.option("--seed", default=0, show_default=True, help="Weight and tokenizer seed.")
def tiny_model(out_dir: Path, layers: int, hidden_size: int, heads: int | None,
               for_vllm_cpu: bool, vocab_size: int, seed: int) -> None:
    """Build a tiny random-weight Llama-style model and tokenizer in OUT_DIR (offline)."""
    if for_vllm_cpu:
        hidden_size, heads = 128, 2
    try:
        from harness.tiny_model import build_tiny_model
    except ImportError as error:
        fail(f"building a model needs torch and transformers ({error})",)
    if (out_dir / "config.json").exists():
        err.print(f"{out_dir} already holds a model; keeping it")
        return
    try:
        if heads is None:
            path = build_tiny_model(out_dir, layers=layers, hidden_size=hidden_size,
                                    vocab_size=vocab_size, seed=seed)
        else:
            path = build_tiny_model(out_dir, layers=layers, hidden_size=hidden_size, heads=heads,
                                    kv_heads=heads, vocab_size=vocab_size, seed=seed)
    except ValueError as error:
        fail(ConfigError(str(error), fix="choose a --hidden-size that --heads divides into an "
                                         "even head size"))
    out.print(str(path))


@main.command()
@click.option("--study", help="Only what runs of the study of this name left behind.")
def clean(study: str | None) -> None:
    """Remove what llem sessions that are no longer alive left: containers, local runs."""
    from orchestrator.runners.docker.api import Engine, EngineUnreachable
    from orchestrator.runners.docker.runner import clean_orphans
    from orchestrator.runners.local import clean_orphans as clean_local

    stopped = clean_local(study=study)
    out.print(f"stopped {len(stopped)} orphaned local run(s)"
              + (f": {', '.join(stopped)}" if stopped else ""), highlight=False)
    try:
        removed = clean_orphans(Engine(), study=study)
    except EngineUnreachable as error:  # no engine, no containers: nothing else to do
        err.print(f"[yellow]warning:[/] containers not checked: {error.message}",
                  highlight=False)
        return
    except LlemError as error:
        fail(error, EXIT_FAILED)
    out.print(f"removed {len(removed)} orphaned container(s)"
              + (f": {', '.join(removed)}" if removed else ""), highlight=False)


@main.command()
@click.option("--output", type=click.Path(path_type=Path),
              help="Output root whose disk is checked (default: as for llem run); with the "
              "slurm runner, a probe job checks that the nodes share it.")
@click.option("--runner", "runner_name",
              help="The runner to check for (default: LLEM_RUNNER, user config, then docker); "
              "slurm makes a missing cluster a problem and probes the shared storage.")
def doctor(output: Path | None, runner_name: str | None) -> None:
    """Check engine, NVIDIA runtime, GPUs, images, disk, caches and Slurm; print each fix."""
    from orchestrator.doctor import run_checks
    from orchestrator.doctor_slurm import runner_check, slurm_checks

    try:
        root = resolve_output(output)
        name, source = resolve_runner(runner_name)
    except LlemError as error:
        fail(error)
    checks = [runner_check(name, source), *run_checks(root), *slurm_checks(root, name)]
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
@click.option("--extras", help="llem extras to install too, e.g. zeus,codecarbon (the "
              "alternative energy sources; GPU images only).")
def images_build(name: str, base: str | None, extras: str | None) -> None:
    """Build llem/NAME:latest (cpu, pytorch, vllm or tensorrt; default cpu)."""
    from orchestrator.runners.docker.images import build

    try:
        build(name, base, extras)
    except LlemError as error:
        fail(error, EXIT_BAD_INPUT if isinstance(error, ConfigError) else EXIT_FAILED)


@images.command("list")
def images_list() -> None:
    """List the llem images the engine holds, with their labels."""
    from orchestrator.runners.docker.api import Engine
    from orchestrator.runners.docker.images import listing

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


@main.group()
def cache() -> None:
    """Inspect and prune the TensorRT-LLM engine cache (LLEM_ENGINE_CACHE or ~/.cache/llem)."""


def _engine_cache(root: Path | None) -> Any:
    from harness.engine_cache import EngineCache, default_cache_root

    return EngineCache(root or default_cache_root())


_ROOT_OPTION = click.option("--root", type=click.Path(path_type=Path),
                            help="Cache directory (default: LLEM_ENGINE_CACHE or "
                            "~/.cache/llem/trt-engines).")


def _release_version(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A whole TensorRT-LLM release version (``1.2.1``, ``1.3.0rc5``), normalised.

    A partial one such as ``1.2`` would judge every 1.2.x engine unusable: it is bad input.
    """
    if value is None:
        return None
    from packaging.version import InvalidVersion, Version

    try:
        parsed = Version(value)
    except InvalidVersion as error:
        raise click.BadParameter(
            f"{value!r} is not a version; give the release, e.g. 1.2.1") from error
    if len(parsed.release) < 3:
        raise click.BadParameter(f"{value!r} is not a whole release; give all of it, e.g. "
                                 f"{value}.1 (tensorrt_llm.__version__ in the image)")
    return str(parsed)


_USABLE_WITH_OPTION = click.option(
    "--tensorrt-llm", "usable_with", metavar="VERSION", callback=_release_version,
    help="Judge engines against this TensorRT-LLM version (the image's, e.g. 1.2.1): those built "
    "by another release are unusable (an engine loads only with the release that built it).")


@cache.command("list", cls=JsonCommand)
@_ROOT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
@_USABLE_WITH_OPTION
def cache_list(root: Path | None, as_json: bool, usable_with: str | None) -> None:
    """List cached engines: key, state, model, runtime, versions, size and last use.

    State ``unusable``: an engine built by a TensorRT-LLM release without the engine runtime
    (1.3.0 and later), which nothing can load, or, with --tensorrt-llm, by another release than
    the one named; ``llem cache prune`` (with the same option) removes it.
    """
    import datetime as dt

    engines = _engine_cache(root)
    entries = engines.entries(usable_with)
    if as_json:
        click.echo(json.dumps([{
            "key": entry.key, "state": entry.state, "path": str(entry.path),
            "size_bytes": entry.size_bytes, "created_at": entry.created_at,
            "last_used_s": entry.last_used_s, "description": entry.description,
            "usable": entry.usable, "unusable_reason": entry.unusable_reason,
        } for entry in entries], indent=2))
        return
    table = Table(title=f"llem engine cache: {engines.root}")
    for column in ("key", "state", "model", "runtime", "tensorrt_llm", "cc", "size GB",
                   "last used"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        described = entry.description or {}
        used = dt.datetime.fromtimestamp(entry.last_used_s, dt.timezone.utc)
        # Entries written before the description named the runtime are engines.
        runtime = str(described.get("runtime", "engine")) if described else ""
        table.add_row(entry.key[:12], entry.state, str(described.get("model", "")), runtime,
                      str(described.get("tensorrt_llm_version", "")),
                      str(described.get("compute_capability", "")),
                      f"{entry.size_bytes / 1e9:.2f}", used.isoformat(timespec="minutes"))
    out.print(table)
    if not entries:
        out.print("the cache is empty", highlight=False)


@cache.command("prune")
@_ROOT_OPTION
@click.option("--unused-days", type=click.FloatRange(min=0),
              help="Also remove complete engines not used for this many days.")
@click.option("--all", "everything", is_flag=True, help="Remove every engine.")
@_USABLE_WITH_OPTION
def cache_prune(root: Path | None, unused_days: float | None, everything: bool,
                usable_with: str | None) -> None:
    """Remove partial, mismatching, unusable and abandoned entries (and old or all if asked).

    Unusable entries are engines built by a TensorRT-LLM release without the engine runtime
    (1.3.0 and later): no release can load them. Entries whose key is being built right now
    are skipped.
    """
    removed = _engine_cache(root).prune(
        unused_for_s=None if unused_days is None else unused_days * 86400,
        everything=everything, usable_with=usable_with)
    freed = sum(entry.size_bytes for entry in removed)
    out.print(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'} "
              f"({freed / 1e9:.2f} GB)", highlight=False)
    for entry in removed:
        out.print(f"  {entry.key[:12]}  {entry.state}", highlight=False)


main.add_command(compare_command)
main.add_command(history_command)


if __name__ == "__main__":
    main()
