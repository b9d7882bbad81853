"""The measurement protocol: preflight, baseline, load, warmup, measure, write.

One :class:`ExperimentRun` owns one run directory. Every phase is marked in ``events.jsonl``
and in the time series; a failure in any phase leaves ``error.json`` naming it.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import traceback
from pathlib import Path
from typing import Any

from harness import checks, metrics, sanity
from harness.backends import Backend, backend_class
from harness.backends.base import GenerationOutput, Request
from harness.baseline import BaselineCache, measure_baseline
from harness.datasets import build_requests, check_dataset, warmup_twins
from harness.energy import EMPTY_GPUS, EnergyMeter, GpuSet, PowerSampler, discover_gpus
from harness.energy.codecarbon import (
    TrackerFactory,
    codecarbon_tracker,
    discover_codecarbon_gpus,
)
from harness.energy.device import GpuSample
from harness.energy.meter import EnergyReading
from harness.energy.zeus import discover_zeus_gpus
from harness.environment import snapshot
from harness.errors import LlemError, PreflightError
from harness.io import EventLog, write_json
from harness.schema.result import (
    BaselineRecord,
    EnergyMetrics,
    ErrorRecord,
    ExperimentResult,
    MemoryMetrics,
    PhaseEnergy,
    WarmupRecord,
    Warning_,
)
from harness.schema.run_spec import RunSpec
from harness.timeseries import TimeSeriesWriter
from harness.warmup import final_slopes, run_warmup

POWER_EVENT_PERIOD_S = 1.0


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class ExperimentRun:
    """Runs one experiment into ``run_dir``.

    Args:
        spec: the resolved experiment and its place in a study.
        run_dir: directory that receives result.json, timeseries.parquet, events.jsonl and,
            on failure, error.json.
        gpus: GPUs to measure; discovered through NVML when None. Pass a ``GpuSet`` of
            ``harness.testing.FakeGpu`` to replay a recorded power trace.
        device: where the backend computes ("cuda:0", "cpu"); by default CUDA when GPUs were
            found, else CPU.
        tracker_factory: makes a GPU's CodeCarbon tracker when ``energy.backend`` is
            codecarbon (a fake in tests).
    """

    def __init__(
        self,
        spec: RunSpec,
        run_dir: Path,
        gpus: GpuSet | None = None,
        device: str | None = None,
        tracker_factory: TrackerFactory = codecarbon_tracker,
    ) -> None:
        self.spec = spec
        self.config = spec.config
        self.run_dir = run_dir
        self.phase = "preflight"
        self.warnings: list[Warning_] = []
        self._gpus = gpus
        self._device = device
        self._tracker_factory = tracker_factory
        self._last_power_event = 0.0
        run_dir.mkdir(parents=True, exist_ok=True)
        self.events = EventLog(run_dir / "events.jsonl")
        self.series = TimeSeriesWriter(run_dir / "timeseries.parquet")

    def execute(self) -> ExperimentResult:
        """Run every phase; on failure write error.json and re-raise."""
        started_at = _now()
        self.events.emit("start", run_id=self.spec.run_id, config_hash=self._hash(),
                         process_started_at=process_started_at())
        try:
            result = self._phases(started_at)
            # Last line of the log: the sampler has stopped, result.json is on disk.
            self.events.emit("done", output_tokens=result.throughput.output_tokens,
                             duration_s=result.throughput.duration_s)
        except BaseException as error:
            self._record_failure(error)
            raise
        finally:
            self.series.close()
            self.events.close()
        return result

    def _hash(self) -> str:
        return self.config.measurement_config_hash

    def _enter(self, phase: str) -> None:
        self.phase = phase
        self.events.emit("phase", phase=phase)
        self.series.mark_phase(phase, time.perf_counter())
        if hasattr(self, "sampler"):
            self.sampler.set_phase(phase)

    def _phases(self, started_at: str) -> ExperimentResult:
        gpus, backend = self._preflight()
        self.sampler = PowerSampler(
            gpus, self.config.energy.sample_interval_ms, sink=self._on_samples
        )
        self.meter = EnergyMeter(gpus, self.sampler)
        self.sampler.start()
        try:
            return self._measure_all(gpus, backend, started_at)
        finally:
            self.sampler.stop()
            backend.unload()
            gpus.close()

    def _measure_all(self, gpus: GpuSet, backend: Backend, started_at: str) -> ExperimentResult:
        baseline = self._baseline(gpus)
        cold_start = self._load(backend)
        requests = build_requests(self.config, backend)
        warmup = self._warmup(backend, requests, gpus)
        output, reading, window_samples = self._window(backend, requests)
        self._enter("write")
        work = metrics.throughput(output, reading.duration_s)
        energy = metrics.energy(reading, work, baseline_power_w(baseline), len(gpus))
        energy.cold_start_energy_j = cold_start.energy_j
        energy.cold_start_duration_s = cold_start.duration_s
        self._phase_split(energy, output)
        thermal = metrics.thermal(window_samples, [gpu.index for gpu in gpus])
        self.warnings.extend(reading.warnings)
        self.warnings.extend(
            checks.window_warnings(work, reading.samples, thermal, has_sensor=len(gpus) > 0)
        )
        _, non_embedding = backend.parameter_counts()
        result = ExperimentResult(
            run_id=self.spec.run_id,
            config=self.config,
            measurement_config_hash=self._hash(),
            effective_parameters=backend.effective_parameters(),
            cycle=self.spec.cycle,
            runner=self.spec.runner,
            started_at=started_at,
            finished_at=_now(),
            energy=energy,
            throughput=work,
            latency=metrics.latency(output),
            memory=self._memory(backend, gpus, window_samples),
            thermal=thermal,
            flops_estimate=metrics.flops(non_embedding, work),
            warmup=warmup,
            baseline=baseline,
            engine_cache=backend.engine_cache(),
            environment=snapshot(gpus, backend.versions()),
            warnings=_unique(self.warnings),
        )
        result = sanity.flag(result, has_sensor=len(gpus) > 0)
        write_json(self.run_dir / "result.json", result)
        return result

    def _memory(self, backend: Backend, gpus: GpuSet,
                window_samples: list[GpuSample]) -> MemoryMetrics | None:
        """The backend's own figures, else (engines in other processes) NVML's."""
        own = backend.memory()
        if own is not None or len(gpus) == 0:
            return own
        return metrics.device_memory(self.sampler.samples(), *self._load_edges_s,
                                     window_samples, [gpu.index for gpu in gpus])

    def _load(self, backend: Backend) -> EnergyReading:
        """Load the model outside every window; its time and energy are the cold start."""
        self._enter("load")
        start = self.meter.mark()
        backend.load()
        backend.synchronize()
        end = self.meter.mark()
        self._load_edges_s = (start.t_s, end.t_s)
        return self.meter.between(start, end)

    def _window(self, backend: Backend, requests: list[Request]
                ) -> tuple[GenerationOutput, EnergyReading, list[GpuSample]]:
        """The measurement window: the whole workload between two synchronised edges."""
        self._enter("measure")
        backend.synchronize()  # the window opens when all queued work has finished
        start = self.meter.mark()
        output = backend.generate(requests, on_batch=self._progress)
        backend.synchronize()  # ... and closes only when the last token really exists
        end = self.meter.mark()
        return output, self.meter.between(start, end), self.sampler.samples_between(
            start.t_s, end.t_s)

    def _preflight(self) -> tuple[GpuSet, Backend]:
        self._enter("preflight")
        gpus, problems = self._energy_source()
        device = self._device or ("cuda:0" if len(gpus) else "cpu")
        backend = backend_class(self.config.backend)(self.config, device)
        backend.gpu_info = [gpu.info() for gpu in gpus]
        if self.spec.engine_cache_dir:
            backend.engine_cache_root = Path(self.spec.engine_cache_dir)
        problems += backend.preflight() + check_dataset(self.config)
        if problems:
            gpus.close()
            raise PreflightError(
                "preflight found problems:\n  - " + "\n  - ".join(problems),
                fix="fix each problem listed above and run again",
            )
        self.warnings.extend(checks.machine_warnings(gpus))
        self.warnings.extend(checks.config_warnings(self.config))
        for warning in self.warnings:
            self.events.emit("warning", code=warning.code, message=warning.message)
        return gpus, backend

    def _energy_source(self) -> tuple[GpuSet, list[str]]:
        source = self.config.energy.backend
        if source == "codecarbon":
            facts = self._gpus if self._gpus is not None else discover_gpus(self.spec.gpus)
            if len(facts) == 0:
                return facts, ["energy.backend is 'codecarbon' but NVML found no NVIDIA GPU "
                               "(CodeCarbon reads GPU energy through NVML)"]
            try:
                return discover_codecarbon_gpus(facts, self._tracker_factory), []
            except LlemError as error:
                facts.close()
                return EMPTY_GPUS, [str(error)]
        if source == "zeus":
            try:
                return discover_zeus_gpus(self.spec.gpus), []
            except LlemError as error:
                return EMPTY_GPUS, [str(error)]
        if source == "none":
            self.warnings.append(Warning_(
                code="no_energy_sensor",
                message="energy.backend is 'none': energy is not measured and energy fields "
                "are null",
            ))
            return EMPTY_GPUS, []
        gpus = self._gpus if self._gpus is not None else discover_gpus(self.spec.gpus)
        if source == "nvml" and len(gpus) == 0:
            return gpus, ["energy.backend is 'nvml' but NVML found no NVIDIA GPU"]
        return gpus, []

    def _baseline(self, gpus: GpuSet) -> BaselineRecord | None:
        self._enter("baseline")  # marked even when there is nothing to measure
        if not self.config.baseline.enabled:
            if len(gpus):
                self.warnings.append(Warning_(
                    code="no_baseline",
                    message="baseline.enabled is false: energy_dynamic_j is null",
                ))
            return None
        if len(gpus) == 0:
            return None  # nothing to measure; no_energy_sensor already says why
        cache = None
        if self.spec.baseline_cache_dir:
            cache = BaselineCache(Path(self.spec.baseline_cache_dir),
                                  self.config.baseline.cache_ttl_s)
        record = measure_baseline(gpus, self.meter, self.config.baseline, cache)
        record.cool_down = self.spec.cool_down  # the orchestrator's wait before this run
        self.events.emit("baseline", provenance=record.provenance, power_w=record.power_w,
                         temperature_c=record.temperature_c)
        return record

    def _warmup(self, backend: Backend, requests: list[Request], gpus: GpuSet) -> WarmupRecord:
        self._enter("warmup")
        indices = [gpu.index for gpu in gpus]
        record = run_warmup(
            backend,
            warmup_twins(backend.warmup_requests(requests), backend.vocab_ids(),
                         self.config.random_seed),
            self.config.warmup, self.sampler, indices,
            lambda batches, elapsed_s: self.events.emit(
                "warmup", batches=batches, elapsed_s=elapsed_s),
        )
        if record.stable is False:
            self.warnings.append(Warning_(
                code="warmup_cut_short",
                message=f"the steady-state rule was not met within warmup.max_seconds "
                f"({self.config.warmup.max_seconds:g} s): the window opened before thermal "
                f"steady state; final slopes: {final_slopes(record, indices)}",
            ))
        return record

    def _phase_split(self, energy: EnergyMetrics, output: GenerationOutput) -> None:
        """Prefill and decode energy from the counter at each batch's phase edges."""
        if not output.phase_marks:
            return

        prefill_s = sum(m.prefill_end_s - m.start_s for m in output.phase_marks)
        decode_s = sum(m.end_s - m.prefill_end_s for m in output.phase_marks)
        prefill_j: float | None = None
        decode_j: float | None = None
        if energy.energy_j is not None:
            prefill_j = sum(self.meter.energy_at_times(m.start_s, m.prefill_end_s)
                            for m in output.phase_marks)
            decode_j = sum(self.meter.energy_at_times(m.prefill_end_s, m.end_s)
                           for m in output.phase_marks)
        energy.prefill = PhaseEnergy(energy_j=prefill_j, duration_s=prefill_s)
        energy.decode = PhaseEnergy(energy_j=decode_j, duration_s=decode_s)
        energy.phase_split_method = output.phase_split

    def _progress(self, done: int, total: int) -> None:
        self.events.emit("progress", done=done, total=total)

    def _on_samples(self, phase: str, samples: list[GpuSample]) -> None:
        self.series.add(phase, samples)
        now = time.perf_counter()
        if samples and now - self._last_power_event >= POWER_EVENT_PERIOD_S:
            self._last_power_event = now
            self.events.emit("power", power_w=[s.power_w for s in samples])

    def _record_failure(self, error: BaseException) -> None:
        record = ErrorRecord(
            type=type(error).__name__,
            message=str(error) or type(error).__name__,
            traceback="".join(traceback.format_exception(error)),
            phase=self.phase,
        )
        write_json(self.run_dir / "error.json", record)
        self.events.emit("error", phase=self.phase, type=record.type, message=record.message)


def process_started_at() -> float | None:
    """Wall-clock time this process started (epoch s), from /proc; None where unavailable.

    Lets a runner tell its own overhead from the harness's (interpreter start and imports
    included).
    """
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime_s = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    age_s = uptime_s - start_ticks / os.sysconf("SC_CLK_TCK")
    return time.time() - age_s


def baseline_power_w(baseline: BaselineRecord | None) -> float | None:
    """Idle power summed over GPUs, or None without a baseline."""
    return sum(baseline.power_w) if baseline is not None and baseline.power_w else None


def _unique(warnings: list[Warning_]) -> list[Warning_]:
    seen: set[tuple[str, str]] = set()
    unique: list[Warning_] = []
    for warning in warnings:
        key = (warning.code, warning.message)
        if key not in seen:
            seen.add(key)
            unique.append(warning)
    return unique


def run_experiment(
    config: Any, output_dir: Path | None = None, *, run_id: str = "run"
) -> ExperimentResult:
    """Run one experiment in this process and return its result.

    Args:
        config: an ``ExperimentConfig`` (or a dict that validates as one).
        output_dir: run directory to write into; a temporary one (removed afterwards) when
            None.
        run_id: name recorded in the result.
    """
    import tempfile

    from harness.schema.config import ExperimentConfig

    experiment = config if isinstance(config, ExperimentConfig) else ExperimentConfig(**config)
    spec = RunSpec(run_id=run_id, config=experiment, runner="inprocess")
    if output_dir is not None:
        write_json(output_dir / "experiment.json", spec)
        return ExperimentRun(spec, output_dir).execute()
    with tempfile.TemporaryDirectory(prefix="llem-run-") as tmp:
        return ExperimentRun(spec, Path(tmp)).execute()


__all__ = ["ExperimentRun", "process_started_at", "run_experiment"]
