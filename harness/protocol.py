"""The measurement protocol: preflight, baseline, load, warmup, measure, write.

One :class:`ExperimentRun` owns one run directory. Every phase is marked in ``events.jsonl``
and in the time series; a failure in any phase leaves ``error.json`` naming it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
import traceback
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from harness import checks, metrics, models, phases, sanity
from harness.backends import Backend, backend_class
from harness.backends.base import GenerationOutput, Request
from harness.baseline import BaselineCache, measure_baseline
from harness.datasets import build_requests, check_dataset, warmup_twins
from harness.energy import EMPTY_GPUS, EnergyMeter, GpuSet, PowerSampler, discover_gpus
from harness.energy.codecarbon import CodeCarbonGpuSet, TrackerFactory, codecarbon_tracker
from harness.energy.device import GpuSample
from harness.energy.meter import NO_SENSOR_MESSAGE, EnergyReading, Mark
from harness.energy.rapl import HostEnergyMeter, HostMark
from harness.energy.selection import (
    Selection,
    narrow_cuda_view,
    prove,
    restore_cuda_view,
    select,
)
from harness.energy.sources import open_energy_source
from harness.environment import snapshot
from harness.errors import ConfigError, PreflightError
from harness.heartbeat import Heartbeat
from harness.io import EventLog, write_json
from harness.load import LoadRun, StreamChunk, StreamFn
from harness.load import arrivals as load_arrivals
from harness.load import metrics as load_metrics
from harness.load.driver import drive
from harness.schema import events as ev
from harness.schema.config import ExperimentConfig
from harness.schema.result import (
    BaselineRecord,
    EnergyMetrics,
    ErrorRecord,
    ExperimentResult,
    GpuIdentityProof,
    MemoryMetrics,
    ServingMetrics,
    WarmupRecord,
    Warning_,
)
from harness.schema.run_spec import RunSpec
from harness.timeseries import TimeSeriesWriter
from harness.warmup import final_slopes, run_warmup

POWER_EVENT_PERIOD_S = 1.0

SERVING_NO_SPLIT = ("serving: requests arrive over time, so every engine step mixes one "
                    "request's prefill with others' decode; no phase edge exists to cut at")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class ExperimentRun:
    """Runs one experiment into ``run_dir``.

    Args:
        spec: the resolved experiment and its place in a study.
        run_dir: directory that receives result.json, timeseries.parquet, events.jsonl and,
            on failure, error.json.
        gpus: every GPU of the machine as NVML lists them; discovered through NVML when
            None. The run measures only those its backend computes on (see
            :mod:`harness.energy.selection`). Pass a ``GpuSet`` of
            ``harness.testing.FakeGpu`` to replay a recorded power trace.
        device: where the backend computes ("cuda:0", "cpu"); by default CUDA when GPUs were
            found, else CPU.
        tracker_factory: makes a GPU's CodeCarbon tracker when ``energy.backend`` is
            codecarbon (a fake in tests).
        zeus_get_gpus: ``zeus.device.get_gpus`` when ``energy.backend`` is zeus; imported
            when None (``harness.testing.fake_zeus_get_gpus`` replays FakeGpu traces).
        on_event: also receives every event written to events.jsonl (from harness threads).
        heartbeat_s: seconds between two heartbeat events.
        powercap_root: where the host's RAPL zones are read (``energy.host``): by default
            ``$LLEM_POWERCAP_ROOT`` or ``/sys/class/powercap``; a fake tree in tests.
    """

    def __init__(
        self,
        spec: RunSpec,
        run_dir: Path,
        gpus: GpuSet | None = None,
        device: str | None = None,
        tracker_factory: TrackerFactory = codecarbon_tracker,
        zeus_get_gpus: Callable[[], Any] | None = None,
        on_event: Callable[[ev.RunEvent], None] | None = None,
        heartbeat_s: float = ev.HEARTBEAT_PERIOD_S,
        powercap_root: Path | None = None,
    ) -> None:
        self.spec = spec
        self.config = spec.config
        self.run_dir = run_dir
        self.phase = "preflight"
        self.warnings: list[Warning_] = []
        self._gpus = gpus
        self._device = device
        self._tracker_factory = tracker_factory
        self._zeus_get_gpus = zeus_get_gpus
        self._last_power_event = 0.0
        self._machine: GpuSet = EMPTY_GPUS
        self.selection = Selection(EMPTY_GPUS, [], 0)
        self.identity: GpuIdentityProof | None = None
        self._saved_cuda_view: dict[str, str | None] = {}
        self._heartbeat_s = heartbeat_s
        self._powercap_root = powercap_root
        run_dir.mkdir(parents=True, exist_ok=True)
        self.events = EventLog(run_dir / "events.jsonl", on_event)
        self.series = TimeSeriesWriter(run_dir / "timeseries.parquet")

    def execute(self) -> ExperimentResult:
        """Run every phase; on failure write error.json and re-raise.

        Every resource is a context on one exit stack, released in reverse order whatever
        fails; the log's last line (done, or error) is written once all but the files are.
        """
        with contextlib.ExitStack() as stack:
            stack.callback(self.events.close)
            stack.callback(self.series.close)
            stack.callback(lambda: restore_cuda_view(self._saved_cuda_view))
            stack.push(self._last_line)
            self.events.emit(ev.StartEvent(
                run_id=self.spec.run_id, config_hash=self.config.measurement_config_hash,
                process_started_at=process_started_at(), heartbeat_s=self._heartbeat_s))
            stack.enter_context(Heartbeat(self.events, lambda: self.phase, self._heartbeat_s))
            self._result = self._phases(stack, _now())
        return self._result

    def _last_line(self, kind: type[BaseException] | None, error: BaseException | None,
                   tb: object) -> bool:
        if error is not None:
            self._record_failure(error)
        else:
            self.events.emit(ev.DoneEvent(output_tokens=self._result.throughput.output_tokens,
                                          duration_s=self._result.throughput.duration_s))
        return False  # an error always propagates

    def _enter(self, phase: str) -> None:
        self.phase = phase
        self.events.emit(ev.PhaseEvent(phase=phase))
        self.series.mark_phase(phase, time.perf_counter())
        if hasattr(self, "sampler"):
            self.sampler.set_phase(phase)

    def _phases(self, stack: contextlib.ExitStack[bool | None],
                started_at: str) -> ExperimentResult:
        gpus, backend = self._preflight(stack)
        stack.callback(backend.unload)
        self.sampler = PowerSampler(
            gpus, self.config.energy.sample_interval_ms, sink=self._on_samples
        )
        self.meter = EnergyMeter(gpus, self.sampler)
        self.sampler.start()
        stack.callback(self.sampler.stop)
        # the host's RAPL zones are read in every run, GPU or CPU, by their own thread
        self.host = stack.enter_context(HostEnergyMeter.open(self._powercap_root))
        return self._measure_all(gpus, backend, started_at)

    def _measure_all(self, gpus: GpuSet, backend: Backend, started_at: str) -> ExperimentResult:
        baseline = self._baseline(gpus)
        cold_start = self._load(backend)
        requests = build_requests(self._workload_config(), backend)
        warmup = self._warmup(backend, requests, gpus)
        serving: ServingMetrics | None = None
        if self.config.load.serving:
            run, reading, window_samples, host_edges = self._serve(backend, requests)
            work = load_metrics.window_throughput(run)
            latency = load_metrics.window_latency(run)
        else:
            output, reading, window_samples, host_edges = self._window(backend, requests)
            work = metrics.throughput(output, reading.duration_s)
            latency = metrics.latency(output)
        energy = metrics.energy(reading, work, baseline_power_w(baseline), len(gpus))
        energy.host, host_warnings = self.host.between(*host_edges)
        self.warnings.extend(host_warnings)
        energy.cold_start_energy_j = cold_start.energy_j
        energy.cold_start_duration_s = cold_start.duration_s
        if isinstance(gpus, CodeCarbonGpuSet):
            energy.source_gpus = gpus.found
        if self.config.load.serving:
            serving = load_metrics.serving_metrics(
                run, self.config.load, self.config.slo, self._load_seed(),
                baseline_power_w(baseline), energy.mean_power_w)
            self.warnings.extend(checks.serving_warnings(run, serving))
            phases.apply(energy, None, SERVING_NO_SPLIT)
        else:
            self._phase_split(energy, output, backend, requests, reading.duration_s)
        self._enter("write")
        thermal = metrics.thermal(window_samples, [gpu.index for gpu in gpus])
        self.warnings.extend(reading.warnings)
        self.warnings.extend(
            checks.window_warnings(work, reading, thermal,
                                   self.selection.gpus if len(gpus) else gpus)
        )
        self.warnings.extend(checks.cache_warnings(self.config, work))
        _, non_embedding = backend.parameter_counts()
        result = ExperimentResult(
            run_id=self.spec.run_id,
            config=self.config,
            measurement_config_hash=self.config.measurement_config_hash,
            effective_parameters=backend.effective_parameters(),
            cycle=self.spec.cycle,
            runner=self.spec.runner,
            started_at=started_at,
            finished_at=_now(),
            energy=energy,
            throughput=work,
            latency=latency,
            serving=serving,
            memory=self._memory(backend, gpus, window_samples),
            thermal=thermal,
            flops_estimate=metrics.flops(non_embedding, work),
            warmup=warmup,
            baseline=baseline,
            engine_cache=backend.engine_cache(),
            environment=snapshot(gpus, backend.versions(), self.selection, self.identity,
                                 backend.determinism()),
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
        """Load the model outside every window; its time and energy are the cold start.

        Around the load, the measured GPUs' memory and processes are read so that the
        placement of the model can be proven afterwards (:meth:`_prove_placement`).
        """
        self._enter("load")
        before = self._placement_facts()
        start = self.meter.mark()
        backend.load()
        backend.synchronize()
        end = self.meter.mark()
        after = self._placement_facts()
        self._load_edges_s = (start.t_s, end.t_s)
        self.identity = self._prove_placement(backend, before, after)
        return self.meter.between(start, end)

    def _placement_facts(self) -> list[tuple[GpuSample | None, list[int]]]:
        """Each measured GPU's sample (None when the read failed) and compute processes."""
        facts: list[tuple[GpuSample | None, list[int]]] = []
        for gpu in self.selection.gpus:
            with self.sampler.read_lock:
                try:
                    sample: GpuSample | None = gpu.sample(time.perf_counter())
                except Exception:  # one failed read is evidence missing, not a failed run
                    sample = None
            facts.append((sample, gpu.compute_processes()))
        return facts

    def _prove_placement(self, backend: Backend,
                         before: list[tuple[GpuSample | None, list[int]]],
                         after: list[tuple[GpuSample | None, list[int]]]
                         ) -> GpuIdentityProof | None:
        """Fail the run unless the model computes on exactly the measured GPUs."""
        bindings = self.selection.bindings
        if not bindings:
            return None
        if backend.device == "cpu":
            message = (f"the backend computed on the CPU while GPU(s) "
                       f"{[b.nvml_index for b in bindings]} were measured (a replayed trace): "
                       "their energy is not this model's")
            self.warnings.append(Warning_(code="gpu_identity_unproven", message=message))
            return GpuIdentityProof(method="none", evidence=[message])
        return prove(bindings, backend.device_uuids(),
                     [sample for sample, _ in before], [sample for sample, _ in after],
                     [pids for _, pids in before], [pids for _, pids in after])

    def _window(self, backend: Backend, requests: list[Request]
                ) -> tuple[GenerationOutput, EnergyReading, list[GpuSample],
                           tuple[HostMark, HostMark]]:
        """The measurement window: the whole workload between two synchronised edges.

        The host's RAPL zones are read just inside the GPU edges.
        """
        self._enter("measure")
        backend.synchronize()  # the window opens when all queued work has finished
        start = self.meter.mark()
        host_start = self.host.mark()
        output = backend.generate(requests, on_batch=self._progress)
        backend.synchronize()  # ... and closes only when the last token really exists
        host_end = self.host.mark()
        end = self.meter.mark()
        return (output, self.meter.between(start, end),
                self.sampler.samples_between(start.t_s, end.t_s), (host_start, host_end))

    def _workload_config(self) -> ExperimentConfig:
        """The config requests are built from: serving with ``duration_s`` sets their count."""
        if not self.config.load.serving:
            return self.config
        return self.config.model_copy(update={"n": load_arrivals.request_count(self.config)})

    def _load_seed(self) -> int:
        seed = self.config.load.seed
        return self.config.random_seed if seed is None else seed

    def _serve(self, backend: Backend, requests: list[Request]
               ) -> tuple[LoadRun, EnergyReading, list[GpuSample], tuple[HostMark, HostMark]]:
        """Serving mode: requests arrive over time; the window is the steady state.

        The window opens when the ramp-up's arrivals are done and closes at the last arrival
        (or at ``duration_s``); the drain after it, while the last requests finish, is outside.
        The energy counters and the host's RAPL zones are read at those two instants, from the
        event loop that sends the requests (docs/serving.md).
        """
        arrivals = load_arrivals.schedule(self.config, requests)
        duration_s = self.config.load.duration_s
        close_offset_s = arrivals[-1].offset_s if duration_s is None else duration_s
        ramp_up_s = self.config.load.ramp_up_s
        if close_offset_s <= ramp_up_s:
            raise ConfigError(
                f"load.ramp_up_s ({ramp_up_s:g} s) leaves no steady-state window: arrivals end "
                f"{close_offset_s:.3g} s after the start",
                fix="lower load.ramp_up_s, or raise n or load.duration_s (more arrivals)")
        edges: dict[str, tuple[Mark, HostMark]] = {}

        def on_edge(edge: str) -> None:
            if edge == "open":
                self._enter("measure")
                edges["open"] = (self.meter.mark(), self.host.mark())
            else:
                host = self.host.mark()
                edges["close"] = (self.meter.mark(), host)
                self._enter("drain")

        self._enter("ramp_up")
        run = backend.serve(lambda stream: drive(
            arrivals, self._counted(stream, len(arrivals)),
            max_concurrency=self.config.load.max_concurrency, ramp_up_s=ramp_up_s,
            close_offset_s=close_offset_s, on_edge=on_edge))
        (start, host_start), (end, host_end) = edges["open"], edges["close"]
        return (run, self.meter.between(start, end),
                self.sampler.samples_between(start.t_s, end.t_s), (host_start, host_end))

    def _counted(self, stream: StreamFn, total: int) -> StreamFn:
        """``stream``, with a progress event each time a request ends (liveness, progress)."""
        done = 0

        async def counted(request: Request, key: str) -> AsyncIterator[StreamChunk]:
            nonlocal done
            try:
                async for chunk in stream(request, key):
                    yield chunk
            finally:
                done += 1
                self._progress(done, total)

        return counted

    def _preflight(self, stack: contextlib.ExitStack[bool | None]) -> tuple[GpuSet, Backend]:
        """Open the GPUs and the backend; each resource goes on ``stack`` as it is opened."""
        self._enter("preflight")
        machine = self._gpus if self._gpus is not None else discover_gpus()
        stack.callback(machine.close)
        self._machine = machine
        device = self._device or ("cuda:0" if len(machine) else "cpu")
        backend = backend_class(self.config.backend)(self.config, device)
        problems: list[str] = []
        try:
            self.selection = select(machine, backend.gpus_needed(), self.spec.gpus)
        except PreflightError as error:
            self.selection = Selection(EMPTY_GPUS, [], len(machine))
            problems.append(str(error))
        self._saved_cuda_view = narrow_cuda_view(self.selection.bindings,
                                                 backend.cuda_visible_form)
        gpus, source_problems = open_energy_source(
            self.config.energy.backend, self.selection.gpus, self._tracker_factory,
            self._zeus_get_gpus)
        stack.callback(gpus.close)
        backend.gpu_info = [gpu.info() for gpu in self.selection.gpus]
        if self.spec.engine_cache_dir:
            backend.engine_cache_root = Path(self.spec.engine_cache_dir)
        problems += source_problems + backend.preflight()
        problems += models.content_problems(self.config.model, self.config.model_digest)
        problems += check_dataset(self.config)
        if problems:
            raise PreflightError(
                "preflight found problems:\n  - " + "\n  - ".join(problems),
                fix="fix each problem listed above and run again",
            )
        self._source_warnings(gpus)
        self.warnings.extend(checks.machine_warnings(gpus))
        self.warnings.extend(checks.config_warnings(self.config))
        for warning in self.warnings:
            self.events.emit(ev.WarningEvent(code=warning.code, message=warning.message))
        return gpus, backend

    def _source_warnings(self, gpus: GpuSet) -> None:
        if self.config.energy.backend == "none":
            self.warnings.append(Warning_(
                code="energy_source_none",
                message="energy.backend is 'none': energy is not measured and energy fields "
                "are null",
            ))
        elif len(gpus) == 0:
            self.warnings.append(Warning_(code="no_energy_sensor", message=NO_SENSOR_MESSAGE))

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
        if record.busy_gpus:
            self.warnings.append(Warning_(
                code="baseline_not_idle",
                message=f"GPU(s) {record.busy_gpus} ran other compute or showed utilisation "
                "while idle power was measured: baseline_power_w is not idle power, so "
                "energy_dynamic_j is not dynamic energy (the baseline was not cached)",
            ))
        self.events.emit(ev.BaselineEvent(provenance=record.provenance, power_w=record.power_w,
                                       temperature_c=record.temperature_c))
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
                ev.WarmupEvent(batches=batches, elapsed_s=elapsed_s)),
        )
        if record.stable is False:
            self.warnings.append(Warning_(
                code="warmup_not_stable",
                message=f"the steady-state rule was not met within warmup.max_seconds "
                f"({self.config.warmup.max_seconds:g} s): the window opened before thermal "
                f"steady state; final slopes: {final_slopes(record, indices)}",
            ))
        return record

    def _phase_split(self, energy: EnergyMetrics, output: GenerationOutput, backend: Backend,
                     requests: list[Request], duration_s: float) -> None:
        """Prefill and decode energy, by the configured method where it is valid."""
        energy.shortest_phase_s = phases.shortest_phase_s(output)
        split, reason = None, self._no_split_reason(energy, output, backend)
        if reason is None:
            assert energy.energy_j is not None  # checked by _no_split_reason
            if self._edges_allowed() and phases.edges_problem(
                    output, self._resolution_s()) is None:
                split = phases.split_by_edges(self.meter, output.phase_marks)
            else:
                self._enter("prefill_pass")
                split = phases.run_prefill_pass(
                    backend, requests, self.meter, energy.energy_j, duration_s,
                    self.config.energy.prefill_pass_min_s,
                    update_period_s=self._update_period_s())
        phases.apply(energy, split, reason)

    def _update_period_s(self) -> float:
        """The slowest measured GPU's energy-counter update period (s)."""
        return max((gpu.counter_update_period_s for gpu in self.sampler.gpus), default=0.0)

    def _resolution_s(self) -> float:
        """How finely the counter is known inside the window: it is read at sampler ticks."""
        return max(self._update_period_s(), self.sampler.interval_s)

    def _edges_allowed(self) -> bool:
        # CodeCarbon is read only at marks (one task per window), so the window holds no
        # counter readings to cut at phase edges; a prefill pass is measured between marks.
        counter_inside = not isinstance(self.sampler.gpus, CodeCarbonGpuSet)
        return counter_inside and self.config.energy.phase_split in ("auto", "window_edges")

    def _no_split_reason(self, energy: EnergyMetrics, output: GenerationOutput,
                         backend: Backend) -> str | None:
        """Why no method can split this run's energy (None: one can)."""
        method = self.config.energy.phase_split
        if method == "off":
            return "energy.phase_split is off"
        if energy.energy_j is None:
            return "no energy sensor: energy is not measured"
        edges = phases.edges_problem(output, self._resolution_s())
        if method == "window_edges":
            return None if edges is None else f"window_edges: {edges}"
        if edges is None and method == "auto":
            return None
        if backend.caches_across_requests():
            return ("a prefill-only pass would be served from the cross-request cache the "
                    "study turned on (prefix caching / KV block reuse); "
                    + (edges or ""))
        return None

    def _progress(self, done: int, total: int) -> None:
        self.events.emit(ev.ProgressEvent(done=done, total=total))

    def _on_samples(self, phase: str, samples: list[GpuSample]) -> None:
        self.series.add(phase, samples)
        now = time.perf_counter()
        if samples and now - self._last_power_event >= POWER_EVENT_PERIOD_S:
            self._last_power_event = now
            self.events.emit(ev.PowerEvent(power_w=[s.power_w for s in samples]))

    def _record_failure(self, error: BaseException) -> None:
        record = ErrorRecord(
            type=type(error).__name__,
            message=str(error) or type(error).__name__,
            traceback="".join(traceback.format_exception(error)),
            phase=self.phase,
        )
        write_json(self.run_dir / "error.json", record)
        self.events.emit(ev.ErrorEvent(phase=self.phase, type=record.type, message=record.message))


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
    config: Any, output_dir: Path | None = None, *, run_id: str = "run",
    on_event: Callable[[ev.RunEvent], None] | None = None,
) -> ExperimentResult:
    """Run one experiment in this process and return its result.

    Args:
        config: an ``ExperimentConfig`` (or a dict that validates as one).
        output_dir: run directory to write into; a temporary one (removed afterwards) when
            None.
        run_id: name recorded in the result.
        on_event: receives every typed run event as it is written to events.jsonl (called
            from the harness's threads; keep it quick).
    """
    import tempfile

    from harness.schema.config import ExperimentConfig

    experiment = config if isinstance(config, ExperimentConfig) else ExperimentConfig(**config)
    spec = RunSpec(run_id=run_id, config=experiment, runner="inprocess")
    if output_dir is not None:
        write_json(output_dir / "experiment.json", spec)
        return ExperimentRun(spec, output_dir, on_event=on_event).execute()
    with tempfile.TemporaryDirectory(prefix="llem-run-") as tmp:
        return ExperimentRun(spec, Path(tmp), on_event=on_event).execute()


__all__ = ["ExperimentRun", "process_started_at", "run_experiment"]
