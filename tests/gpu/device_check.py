"""Hardware validation (`make device-check`): what llem's energy figures rest on, measured.

    python tests/gpu/device_check.py --mode gpu|cpu --out DIR [--work DIR]

On one NVIDIA GPU, in under 8 minutes, with a ~1B-parameter random-weight Llama built on the
GPU (no download): the machine, the GPU identity proof, idle power, the energy counter's update
period, J/token over three interleaved cycles of two configurations, prefill/decode split
viability, and NVML vs Zeus on the same work. Each section is guarded: a failure is recorded
with its error and the next section runs. Everything goes to DIR/device-check.json, with a
summary in DIR/summary.md (ready for docs/validation/). The settings are short on purpose
(5 s warmup, 5 s baseline, no steady-state rule): this checks the instruments, it is not a
benchmark of the GPU.

``--mode cpu`` runs the same sections on FakeGpu traces and the tiny model on the CPU (see
device_platforms.py); each section then also records the fake's true value (``truth``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform as py_platform
import re
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from device_platforms import (  # noqa: E402
    FAKE_COUNTER_PERIOD_S,
    FAKE_POWER_PERIOD_S,
    Platform,
    Sensor,
    model_dir_for,
    platform_for,
)

from harness.energy.selection import narrow_cuda_view, prove, restore_cuda_view, select  # noqa: E402
from harness.phases import MIN_PHASE_S  # noqa: E402
from harness.schema import ExperimentConfig  # noqa: E402
from harness.schema.result import ExperimentResult  # noqa: E402

JSON_NAME = "device-check.json"
SUMMARY_NAME = "summary.md"


class Skipped(Exception):
    """A section that did not run, and why (time budget, missing library)."""


@dataclass
class Context:
    """What the sections share."""

    platform: Platform
    work: Path
    started_s: float = field(default_factory=time.perf_counter)
    nvml_index: int = 0
    model_dir: Path | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    run_wall_s: list[float] = field(default_factory=list)

    def left_s(self) -> float:
        """Seconds left of the check's time budget."""
        return self.platform.durations.budget_s - (time.perf_counter() - self.started_s)

    def require(self, need_s: float, what: str) -> None:
        """Skip what would overrun the budget."""
        if self.left_s() < need_s:
            raise Skipped(f"{what} needs ~{need_s:.0f} s; {max(self.left_s(), 0):.0f} s of the "
                          f"{self.platform.durations.budget_s:.0f} s budget left")

    def run_estimate_s(self) -> float:
        """Wall time of the next harness run: the longest after the first (which pays for
        one-time imports and kernel loading), else a guess."""
        return max(self.run_wall_s[1:] or self.run_wall_s
                   or [self.platform.durations.first_run_guess_s])


# --- statistics --------------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float:
    """The q-quantile (linear interpolation between order statistics)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def distribution(values: list[float]) -> dict[str, Any]:
    """Median, p10, p90, min, max and count of intervals (s); nulls when there are none."""
    if not values:
        return {"count": 0, "median_s": None, "p10_s": None, "p90_s": None}
    return {"count": len(values), "median_s": statistics.median(values),
            "p10_s": quantile(values, 0.1), "p90_s": quantile(values, 0.9),
            "min_s": min(values), "max_s": max(values)}


def change_intervals(changes: list[tuple[float, float]]) -> list[float]:
    """Seconds between consecutive value changes, from (time, new value) pairs."""
    times = [t for t, _ in changes]
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def hold_integral_j(changes: list[tuple[float, float]], t1_s: float) -> float:
    """Integral of a reading held from each change to the next, up to ``t1_s`` (J)."""
    points = [*changes, (t1_s, changes[-1][1])]
    return sum((b[0] - a[0]) * a[1] for a, b in zip(points, points[1:], strict=False))


def spread(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation and CV (std / mean) of repeated figures."""
    if not values:
        return {"n": 0, "mean": None, "std": None, "cv": None}
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    return {"n": len(values), "mean": mean, "std": std,
            "cv": None if std is None or mean == 0 else std / mean}


def pct(value: float | None, reference: float | None) -> float | None:
    """(value - reference) / reference in percent; None without both."""
    if value is None or not reference:
        return None
    return 100.0 * (value - reference) / reference


# --- sections ----------------------------------------------------------------------------


def section_machine(ctx: Context) -> dict[str, Any]:
    """GPUs as NVML describes them, driver, CUDA, torch, Python, date."""
    import torch

    gpus = ctx.platform.machine()
    try:
        infos = [gpu.info().model_dump() for gpu in gpus]
        driver, cuda = gpus.driver_version, gpus.cuda_version
    finally:
        gpus.close()
    if not infos:
        raise RuntimeError("NVML found no NVIDIA GPU")
    return {"gpus": infos, "driver_version": driver, "cuda_driver_version": cuda,
            "torch_version": torch.__version__, "torch_cuda_version": torch.version.cuda,
            "python_version": py_platform.python_version(), "os": py_platform.platform(),
            "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def section_identity(ctx: Context) -> dict[str, Any]:
    """The harness's selection narrows CUDA to the measured GPU; CUDA device 0 is that GPU.

    Runs before anything initialises CUDA (narrowing is only possible before).
    """
    saved = ctx.platform.prepare_identity()
    machine = ctx.platform.machine()
    try:
        visible_before = os.environ.get("CUDA_VISIBLE_DEVICES")
        selection = select(machine, needed=1)
        narrowed = narrow_cuda_view(selection.bindings)
        cuda_uuids = ctx.platform.cuda_device_uuids()
        binding = selection.bindings[0]
        ctx.nvml_index = binding.nvml_index
        figures: dict[str, Any] = {
            "cuda_visible_devices_before": visible_before,
            "cuda_visible_devices_after": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "narrowed": bool(narrowed), "binding": binding.model_dump(),
            "cuda_device_0_uuid": cuda_uuids[0] if cuda_uuids else None,
            "cuda_device_count": len(cuda_uuids)}
        try:
            proof = prove(selection.bindings, cuda_uuids[:1], [], [], [], [])
            figures.update(match=True, proof=proof.model_dump())
        except Exception as error:  # the proof's failure is this section's figure
            figures.update(match=False, proof_error=str(error))
        return figures
    finally:
        machine.close()
        if ctx.platform.mode == "cpu":  # nothing initialised CUDA: put the view back
            restore_cuda_view(saved)


def section_idle(ctx: Context) -> dict[str, Any]:
    """Idle power: the counter's delta between two of its updates vs the mean sampled power."""
    sensor = ctx.platform.sensor("idle", ctx.nvml_index)
    temperature_start = sensor.temperature_c()
    t0, c0 = counter_edge(sensor)
    powers: list[float] = []
    while time.perf_counter() - t0 < ctx.platform.durations.idle_s:
        powers.append(sensor.power_w())
        time.sleep(0.1)  # the harness sampler's default interval
    t1, c1 = counter_edge(sensor)
    counter_w = (c1 - c0) / (t1 - t0)
    sampled_w = statistics.fmean(powers)
    figures = {"duration_s": t1 - t0, "counter_power_w": counter_w,
               "sampled_mean_power_w": sampled_w, "samples": len(powers),
               "sampled_vs_counter_pct": pct(sampled_w, counter_w),
               "temperature_c": [temperature_start, sensor.temperature_c()]}
    if sensor.fake is not None:
        figures["truth"] = {"mean_power_w": sensor.fake.true_energy_j(t0, t1) / (t1 - t0)}
    return figures


def counter_edge(sensor: Sensor, timeout_s: float = 5.0) -> tuple[float, float]:
    """Spin until the counter moves; its new value and the instant it was first seen.

    Reading at an update (rather than at any instant, up to one update period late) makes a
    counter delta the energy between two known instants, to within the polling interval.
    """
    first = sensor.counter_j()
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        value = sensor.counter_j()
        if value != first:
            return time.perf_counter(), value
    raise RuntimeError(f"the energy counter did not move in {timeout_s:g} s")


def section_update_period(ctx: Context) -> dict[str, Any]:
    """Under a steady load, poll counter and power as fast as possible; time their changes."""
    sensor = ctx.platform.sensor("load", ctx.nvml_index)
    with ctx.platform.load():
        time.sleep(ctx.platform.durations.settle_s)
        polls, energy_changes, power_changes = poll_changes(
            sensor, ctx.platform.durations.poll_s)
    figures = {
        "polls": polls, "poll_duration_s": ctx.platform.durations.poll_s,
        "mean_poll_interval_s": ctx.platform.durations.poll_s / max(polls, 1),
        "energy_counter": distribution(change_intervals(energy_changes)),
        "power_reading": distribution(change_intervals(power_changes)),
        "counter_vs_power": counter_vs_power(energy_changes, power_changes)}
    if sensor.fake is not None:
        figures["truth"] = {"counter_period_s": FAKE_COUNTER_PERIOD_S,
                            "power_period_s": FAKE_POWER_PERIOD_S}
    return figures


def poll_changes(sensor: Sensor, duration_s: float
                 ) -> tuple[int, list[tuple[float, float]], list[tuple[float, float]]]:
    """Read counter and power back to back for ``duration_s``; keep only changes."""
    energy_changes: list[tuple[float, float]] = []
    power_changes: list[tuple[float, float]] = []
    last_energy, last_power = sensor.counter_j(), sensor.power_w()
    start_s = now_s = time.perf_counter()
    polls = 0
    while now_s - start_s < duration_s:
        energy, power = sensor.counter_j(), sensor.power_w()
        now_s = time.perf_counter()
        polls += 1
        if energy != last_energy:
            energy_changes.append((now_s, energy))
            last_energy = energy
        if power != last_power:
            power_changes.append((now_s, power))
            last_power = power
    return polls, energy_changes, power_changes


def counter_vs_power(energy_changes: list[tuple[float, float]],
                     power_changes: list[tuple[float, float]]) -> dict[str, Any]:
    """Counter energy between its first and last update vs the held power readings' integral."""
    if len(energy_changes) < 2 or not power_changes:
        return {"note": "too few changes to compare"}
    (t0, c0), (t1, c1) = energy_changes[0], energy_changes[-1]
    inside = [(t, p) for t, p in power_changes if t0 <= t <= t1]
    before = [p for t, p in power_changes if t < t0]
    start_power = before[-1] if before else power_changes[0][1]
    integral_j = hold_integral_j([(t0, start_power), *inside], t1)
    return {"interval_s": t1 - t0, "counter_j": c1 - c0, "power_integral_j": integral_j,
            "counter_power_w": (c1 - c0) / (t1 - t0),
            "integral_vs_counter_pct": pct(integral_j, c1 - c0)}


def section_model(ctx: Context) -> dict[str, Any]:
    """Build the random-weight model (on the GPU in GPU mode) into the work directory."""
    from harness.tiny_model import build_tiny_model

    workload = ctx.platform.workload
    model_dir = model_dir_for(ctx.platform, ctx.work)
    if not (model_dir / "config.json").exists():
        build_tiny_model(model_dir, **workload.shape, dtype=workload.dtype,
                         device=ctx.platform.device)
    ctx.model_dir = model_dir
    config = json.loads((model_dir / "config.json").read_text())
    weights_bytes = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
    return {"path": str(model_dir), "layers": config["num_hidden_layers"],
            "hidden_size": config["hidden_size"], "dtype": config.get("dtype"),
            "weights_gb": weights_bytes / 1e9}


def experiment(ctx: Context, label: str, **energy: Any) -> ExperimentConfig:
    """One of the two configurations, with the check's short settings."""
    if ctx.model_dir is None:
        raise Skipped("no model (the model section failed)")
    workload = ctx.platform.workload
    settings = workload.settings
    shape = workload.configs[label]
    return ExperimentConfig(
        model=str(ctx.model_dir), backend="pytorch", precision=workload.precision,
        n=shape["n"], input_len=workload.input_len, output_len=workload.output_len,
        warmup=settings["warmup"],
        baseline={"duration_s": settings["baseline_s"]},
        energy={"phase_split": "off", "prefill_pass_min_s": settings["prefill_pass_min_s"],
                **energy},
        pytorch={"batch_size": shape["batch_size"]})


def run_harness(ctx: Context, label: str, cycle: int, config: ExperimentConfig,
                group: str) -> dict[str, Any]:
    """One in-process harness run; its figures, kept for later sections."""
    from harness.protocol import ExperimentRun
    from harness.schema.run_spec import RunSpec

    ctx.require(ctx.run_estimate_s(), f"run {label} ({group}) c{cycle}")
    run_id = f"{len(ctx.runs) + 1:02d}_{group}_{label}_c{cycle}"
    spec = RunSpec(run_id=run_id, cycle=cycle, config=config,
                   baseline_cache_dir=str(ctx.work / "baseline-cache"))
    gpus, zeus_get_gpus = ctx.platform.run_machine()
    started = time.perf_counter()
    result = ExperimentRun(spec, ctx.work / "runs" / run_id, gpus=gpus,
                           device=ctx.platform.device, zeus_get_gpus=zeus_get_gpus).execute()
    ctx.run_wall_s.append(time.perf_counter() - started)
    figures = {"group": group, **run_figures(result, label, ctx.run_wall_s[-1])}
    truth = ctx.platform.run_truth(result.throughput.duration_s)
    if truth is not None:
        figures["truth"] = truth
    ctx.runs.append(figures)
    return figures


def run_figures(result: ExperimentResult, label: str, wall_s: float) -> dict[str, Any]:
    """What the check reports of one run."""
    energy = result.energy
    identity = result.environment.gpu_identity
    return {
        "run_id": result.run_id, "config": label, "cycle": result.cycle,
        "batch_size": result.config.pytorch.batch_size if result.config.pytorch else None,
        "source": result.config.energy.backend, "energy_method": energy.energy_method,
        "energy_j": energy.energy_j, "energy_integrated_j": energy.energy_integrated_j,
        "integrated_vs_counter_pct": pct(energy.energy_integrated_j, energy.energy_j),
        "output_tokens": result.throughput.output_tokens,
        "duration_s": result.throughput.duration_s,
        "j_per_token": energy.energy_per_output_token_j, "mean_power_w": energy.mean_power_w,
        "baseline_power_w": energy.baseline_power_w,
        "baseline_provenance": result.baseline.provenance if result.baseline else None,
        "identity_method": identity.method if identity else None,
        "phase_split_method": energy.phase_split_method,
        "phase_split_null_reason": energy.phase_split_null_reason,
        "shortest_phase_s": energy.shortest_phase_s,
        "prefill": energy.prefill.model_dump() if energy.prefill else None,
        "decode": energy.decode.model_dump() if energy.decode else None,
        "prefill_pass": energy.prefill_pass.model_dump() if energy.prefill_pass else None,
        "sanity_passed": result.sanity.passed if result.sanity else None,
        "sanity_failed_checks": result.sanity.failed_checks if result.sanity else [],
        "warnings": result.warning_codes(), "wall_s": wall_s}


def guarded(function: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """A part of a section: its figures, or its error or skip, so the rest still runs."""
    try:
        return function(*args)
    except Skipped as skip:
        return {"status": "skipped", "reason": str(skip)}
    except Exception as error:
        return {"status": "error", "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(limit=8)}


def section_cycles(ctx: Context) -> dict[str, Any]:
    """J/token of configurations A and B over three cycles, interleaved A,B,A,B,A,B."""
    runs = [guarded(run_harness, ctx, label, cycle, experiment(ctx, label), "cycles")
            for cycle in (1, 2, 3) for label in ("A", "B")]
    failed = [r for r in runs if "status" in r]
    runs = [r for r in runs if "status" not in r]
    if not runs:
        raise RuntimeError(f"no run completed: {failed[0].get('error') or failed[0]['reason']}")
    per_config = {}
    for label, shape in ctx.platform.workload.configs.items():
        mine = [r for r in runs if r["config"] == label and r["j_per_token"] is not None]
        per_config[label] = {**shape, "j_per_token": spread([r["j_per_token"] for r in mine]),
                             "integrated_vs_counter_pct": [r["integrated_vs_counter_pct"]
                                                           for r in mine]}
    return {"order": [r["run_id"] for r in runs], "per_config": per_config, "runs": runs,
            "failed_runs": failed, "settings": ctx.platform.workload.settings}


def section_phase_split(ctx: Context) -> dict[str, Any]:
    """What the harness chose for prefill/decode, and each method forced where it can work."""
    auto = run_harness(ctx, "A", 1, experiment(ctx, "A", phase_split="auto"), "split")
    shortest_s = auto["shortest_phase_s"]
    forced: dict[str, Any] = {}
    for method in ("window_edges", "prefill_pass"):
        if auto["phase_split_method"] == method:
            forced[method] = {"same_as_auto": True}
        elif method == "window_edges" and (shortest_s is None or shortest_s < MIN_PHASE_S):
            forced[method] = {"run": False, "reason": (
                f"shortest phase {fmt(shortest_s, 4)} s < {MIN_PHASE_S:g} s: the harness "
                "refuses window_edges")}
        else:
            forced[method] = guarded(run_harness, ctx, "A", 1,
                                     experiment(ctx, "A", phase_split=method), f"split-{method}")
    return {"auto": {k: auto[k] for k in ("run_id", "phase_split_method",
                                           "phase_split_null_reason", "shortest_phase_s",
                                           "prefill", "decode", "prefill_pass", "energy_j")},
            "min_phase_s": MIN_PHASE_S, "forced": forced}


def section_zeus(ctx: Context) -> dict[str, Any]:
    """NVML vs Zeus: a run through each source, and one window read by both at once."""
    why_not = ctx.platform.zeus_available()
    if why_not:
        raise Skipped(why_not)
    zeus_run = guarded(run_harness, ctx, "A", 1, experiment(ctx, "A", backend="zeus"), "zeus")
    nvml = spread([r["j_per_token"] for r in ctx.runs if r["group"] == "cycles"
                   and r["config"] == "A" and r["j_per_token"] is not None])
    return {"zeus_run": zeus_run, "nvml_runs_a": nvml,
            "zeus_vs_nvml_mean_pct": pct(zeus_run.get("j_per_token"), nvml["mean"]),
            "shared_window": guarded(shared_window, ctx)}


def shared_window(ctx: Context) -> dict[str, Any]:
    """One generate call between readings of NVML's and Zeus's counters of the same GPU."""
    from harness.backends import backend_class
    from harness.datasets import build_requests
    from harness.energy.zeus import discover_zeus_gpus

    ctx.require(ctx.run_estimate_s() / 2, "the shared window")
    config = experiment(ctx, "A")
    machine, zeus_get_gpus = ctx.platform.run_machine()
    facts = select(machine if machine is not None else ctx.platform.machine(), needed=1).gpus
    zeus = discover_zeus_gpus(facts, zeus_get_gpus)
    backend = backend_class("pytorch")(config, ctx.platform.device)
    try:
        backend.load()
        requests = build_requests(config, backend)
        backend.generate(requests[: config.pytorch.batch_size if config.pytorch else 1])
        return read_both(facts[0], zeus[0], backend, requests)
    finally:
        backend.unload()
        zeus.close()


def read_both(nvml_gpu: Any, zeus_gpu: Any, backend: Any, requests: list[Any]) -> dict[str, Any]:
    """Counters read in mirrored order around the window, so read order biases neither."""
    backend.synchronize()
    t0 = time.perf_counter()
    n0, z0 = nvml_gpu.energy_counter_j(), zeus_gpu.energy_counter_j()
    output = backend.generate(requests)
    backend.synchronize()
    z1, n1 = zeus_gpu.energy_counter_j(), nvml_gpu.energy_counter_j()
    t1 = time.perf_counter()
    tokens = sum(item.output_tokens for item in output.outputs)
    figures = {"duration_s": t1 - t0, "output_tokens": tokens, "nvml_j": n1 - n0,
               "zeus_j": z1 - z0, "zeus_vs_nvml_pct": pct(z1 - z0, n1 - n0),
               "nvml_j_per_token": (n1 - n0) / tokens, "zeus_j_per_token": (z1 - z0) / tokens}
    fake = getattr(nvml_gpu, "true_energy_j", None)
    if fake is not None:
        figures["truth"] = {"energy_j": fake(t0, t1)}
    return figures


SECTIONS: list[tuple[str, Callable[[Context], dict[str, Any]]]] = [
    ("machine", section_machine),
    ("identity", section_identity),  # before anything initialises CUDA
    ("idle_baseline", section_idle),  # before any load warms the GPU
    ("counter_update_period", section_update_period),
    ("model", section_model),
    ("j_per_token_cycles", section_cycles),
    ("phase_split", section_phase_split),
    ("nvml_vs_zeus", section_zeus),
]


def run_section(ctx: Context, name: str, function: Callable[[Context], dict[str, Any]]
                ) -> dict[str, Any]:
    """Run one section; an error or a skip is recorded, never raised."""
    started = time.perf_counter()
    try:
        record = {"status": "ok", **function(ctx)}
    except Skipped as skip:
        record = {"status": "skipped", "reason": str(skip)}
    except Exception as error:
        record = {"status": "error", "error": f"{type(error).__name__}: {error}",
                  "traceback": traceback.format_exc(limit=8)}
    record["elapsed_s"] = round(time.perf_counter() - started, 2)
    print(f"[{time.perf_counter() - ctx.started_s:6.1f} s] {name}: {record['status']} "
          f"({record['elapsed_s']:.1f} s) {headline(name, record)}", flush=True)
    return record


# --- reporting ---------------------------------------------------------------------------


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a person: significant digits, or 'n/a'."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def fmt_pct(value: float | None) -> str:
    """A signed percentage with two decimals, or 'n/a'."""
    return "n/a" if value is None else f"{value:+.2f} %"


def headline(name: str, record: dict[str, Any]) -> str:
    """One line of figures per section."""
    if record["status"] != "ok":
        return record.get("reason") or record.get("error", "")
    lines = HEADLINES.get(name)
    return lines(record) if lines else ""


def _machine_line(r: dict[str, Any]) -> str:
    gpu = r["gpus"][0]
    return (f"{gpu['name']} ({gpu['uuid']}), driver {r['driver_version']}, CUDA "
            f"{r['cuda_driver_version']}, cc {gpu['compute_capability']}, limit "
            f"{fmt(gpu['power_limit_w'])} W, torch {r['torch_version']}, Python "
            f"{r['python_version']}")


def _identity_line(r: dict[str, Any]) -> str:
    b = r["binding"]
    return (f"CUDA {b['cuda_index']} -> NVML {b['nvml_index']} ({b['uuid']}); torch device 0 "
            f"UUID {r['cuda_device_0_uuid']}; match={r['match']}")


def _idle_line(r: dict[str, Any]) -> str:
    return (f"counter {fmt(r['counter_power_w'])} W vs sampled {fmt(r['sampled_mean_power_w'])}"
            f" W ({fmt_pct(r['sampled_vs_counter_pct'])}) over {fmt(r['duration_s'])} s")


def _period_line(r: dict[str, Any]) -> str:
    e, p, c = r["energy_counter"], r["power_reading"], r["counter_vs_power"]
    return (f"counter moves every {fmt(e['median_s'])} s (p10 {fmt(e['p10_s'])}, p90 "
            f"{fmt(e['p90_s'])}, n={e['count']}); power every {fmt(p['median_s'])} s (p10 "
            f"{fmt(p['p10_s'])}, p90 {fmt(p['p90_s'])}); {r['polls']} polls; held power "
            f"integral vs counter {fmt_pct(c.get('integral_vs_counter_pct'))}")


def _model_line(r: dict[str, Any]) -> str:
    return f"{r['layers']} layers x {r['hidden_size']}, {r['dtype']}, {fmt(r['weights_gb'])} GB"


def _cycles_line(r: dict[str, Any]) -> str:
    parts = []
    for label, c in r["per_config"].items():
        j = c["j_per_token"]
        cv = "n/a" if j["cv"] is None else f"{100 * j['cv']:.2f} %"
        gaps = [g for g in c["integrated_vs_counter_pct"] if g is not None]
        gap = f"{min(gaps):+.2f} to {max(gaps):+.2f} %" if gaps else "n/a"
        parts.append(f"{label} (bs {c['batch_size']}): {fmt(j['mean'], 4)} J/token, CV {cv} "
                     f"(n={j['n']}), integrated vs counter {gap}")
    parts += [f"run {f['status']}: {_why(f)}" for f in r["failed_runs"]]
    return "; ".join(parts)


def _split_line(r: dict[str, Any]) -> str:
    a = r["auto"]
    return (f"auto chose {a['phase_split_method']} ({a['phase_split_null_reason'] or 'ok'}); "
            f"shortest phase {fmt(a['shortest_phase_s'])} s (window_edges needs "
            f"{r['min_phase_s']:g} s)")


def _zeus_line(r: dict[str, Any]) -> str:
    run, w = r["zeus_run"], r["shared_window"]
    run_text = (f"zeus run {fmt(run['j_per_token'], 4)} J/token vs nvml mean "
                f"{fmt(r['nvml_runs_a']['mean'], 4)} ({fmt_pct(r['zeus_vs_nvml_mean_pct'])})"
                if "status" not in run else f"zeus run {run['status']}: {_why(run)}")
    window_text = (f"same window: nvml {fmt(w['nvml_j'], 5)} J, zeus {fmt(w['zeus_j'], 5)} J "
                   f"({fmt_pct(w['zeus_vs_nvml_pct'])})"
                   if "status" not in w else f"same window {w['status']}: {_why(w)}")
    return f"{run_text}; {window_text}"


def _why(part: dict[str, Any]) -> str:
    return str(part.get("reason") or part.get("error"))


HEADLINES: dict[str, Callable[[dict[str, Any]], str]] = {
    "machine": _machine_line, "identity": _identity_line, "idle_baseline": _idle_line,
    "counter_update_period": _period_line, "model": _model_line,
    "j_per_token_cycles": _cycles_line, "phase_split": _split_line, "nvml_vs_zeus": _zeus_line,
}


def validation_name(report: dict[str, Any]) -> str:
    """docs/validation/<gpu>-<date>.md for this report."""
    machine = report["sections"].get("machine", {})
    gpu = machine["gpus"][0]["name"] if machine.get("status") == "ok" else "unknown-gpu"
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
    return f"{slug}-{report['started_at'][:10]}.md"


def summary_markdown(report: dict[str, Any]) -> str:
    """The human-readable summary, ready for docs/validation/."""
    machine = report["sections"].get("machine", {})
    gpu = machine["gpus"][0]["name"] if machine.get("status") == "ok" else "unknown GPU"
    lines = [f"# Device check: {gpu}, driver {machine.get('driver_version', 'unknown')}, "
             f"{report['started_at'][:10]}", "",
             f"Mode `{report['mode']}`, {report['elapsed_s']:.0f} s in all, "
             f"`make device-check` at commit `{report['commit']}`. Figures: "
             f"`{JSON_NAME}`; method: docs/validation/README.md.", ""]
    if report["mode"] == "cpu":
        lines += ["CPU mode: every figure comes from FakeGpu traces, not from a GPU.", ""]
    for name, record in report["sections"].items():
        lines.append(f"- **{name}** ({record['status']}, {record['elapsed_s']:.1f} s): "
                     f"{headline(name, record)}")
    return "\n".join(lines) + "\n"


def commit() -> str:
    """The checkout's commit, or 'unknown' (the tree may travel without its git folder)."""
    head = Path(__file__).resolve().parents[2] / ".git"
    try:
        import subprocess

        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=head.parent,
                              capture_output=True, text=True, timeout=10, check=True)
        return done.stdout.strip()
    except Exception:  # no git, or no repository: the figure stays usable
        return "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line: --mode, --out, --work."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("gpu", "cpu"), default="gpu")
    parser.add_argument("--out", type=Path, default=Path("results/device-check"))
    parser.add_argument("--work", type=Path, default=None,
                        help="models and run directories (default: a folder under /tmp)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every section, write the JSON and the summary; exit 1 if a section failed."""
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach the model hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # one line per section
    work = args.work or Path(os.environ.get("TMPDIR", "/tmp")) / f"llem-device-check-{args.mode}"
    work.mkdir(parents=True, exist_ok=True)
    try:
        platform = platform_for(args.mode)
    except Exception as error:  # no driver, no NVML: nothing below can run
        print(f"error: cannot read a GPU ({type(error).__name__}: {error}); without a GPU, "
              "run the CPU mode (DEVICE_CHECK_MODE=cpu)", file=sys.stderr)
        return 1
    report = run_all(Context(platform, work), args.out)
    failed = [n for n, r in report["sections"].items() if r["status"] == "error"]
    print(f"wrote {args.out / JSON_NAME} and {args.out / SUMMARY_NAME} "
          f"({report['elapsed_s']:.0f} s); failed sections: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


def run_all(ctx: Context, out: Path) -> dict[str, Any]:
    """Every section in order; the files are rewritten after each, so a kill keeps the rest."""
    report: dict[str, Any] = {
        "schema": "llem-device-check/1", "mode": ctx.platform.mode, "commit": commit(),
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "budget_s": ctx.platform.durations.budget_s, "sections": {}}
    for name, function in SECTIONS:
        report["sections"][name] = run_section(ctx, name, function)
        report["elapsed_s"] = time.perf_counter() - ctx.started_s
        report["validation_doc"] = f"docs/validation/{validation_name(report)}"
        write_outputs(out, report)
    return report


def write_outputs(out: Path, report: dict[str, Any]) -> None:
    """The JSON report and the markdown summary."""
    out.mkdir(parents=True, exist_ok=True)
    (out / JSON_NAME).write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / SUMMARY_NAME).write_text(summary_markdown(report))


if __name__ == "__main__":
    sys.exit(main())
