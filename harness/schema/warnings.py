"""Every warning code a result can carry, each for exactly one condition.

A warning never changes a figure; it says how far to trust one. Codes are stable and
machine-readable (``result.warnings[].code``); the message names the GPUs concerned by index.
The table in ``docs/methodology.md`` is this registry (``python -m harness.schema.warnings``
prints it; a unit test fails when the two differ), and a unit test fails when the harness emits
a code that is not registered here.
"""

from __future__ import annotations

WARNING_CODES: dict[str, str] = {
    "no_energy_sensor": "no NVIDIA GPU or NVML library was found: every energy field is null",
    "energy_source_none": "`energy.backend: none`: energy is not measured, every energy field "
    "is null",
    "gpu_unreadable": "a measured GPU gave neither an energy counter nor power samples in the "
    "window: every energy field is null",
    "no_baseline": "baseline disabled although a sensor exists: `energy_dynamic_j` is null",
    "baseline_not_idle": "a GPU ran another process's compute or showed utilisation while its "
    "idle power was measured: the baseline is not idle power (not cached; the run is flagged "
    "in statistics)",
    "warmup_cut_short": "`warmup.min_seconds` < 60 s without `warmup.until_stable`: the window "
    "may open before thermal steady state",
    "warmup_not_stable": "`warmup.until_stable` and the steady-state rule was not met by "
    "`warmup.max_seconds` (final slopes per GPU in the message)",
    "short_window": "measurement window < 10 s",
    "few_samples": "a measured GPU had fewer than 10 successful power reads in the window",
    "sampler_read_errors": "sampler reads of a measured GPU's power and counter failed in the "
    "window",
    "secondary_read_errors": "reads of a measured GPU's temperature, clocks, utilisation, memory "
    "or throttle reasons failed (those values null; power and energy kept)",
    "energy_disagreement": "a GPU's counter and its integrated sampled power differ by more than "
    "5 % (over 10 % in a window of 10 s or more also fails sanity)",
    "thermal_drift": "a measured GPU's temperature moved more than 5 degC within the window",
    "throttling": "a measured GPU slowed its clocks in the window for a reason other than "
    "holding its software power cap (thermal, hardware slowdown, power brake, ...)",
    "foreign_processes": "other compute processes on a measured GPU before the run: their "
    "energy is in the measurement",
    "mig_enabled": "MIG on for a measured GPU: energy is the whole GPU's",
    "persistence_off": "persistence mode off on a measured GPU",
    "power_limit_below_default": "a measured GPU's power limit is below its default",
    "grace_hopper_module": "a measured GPU is a Grace Hopper module: its power and energy "
    "readings cover the whole module (Grace CPU and memory too), not the GPU alone",
    "gpu_identity_unproven": "GPUs were measured while the backend computed on the CPU (a "
    "replayed trace): their energy is not this model's",
    "cross_request_cache_hits": "prompt tokens in the window came from a cross-request KV cache "
    "(`throughput.cached_prompt_tokens` > 0) although the study did not turn caching on",
    "host_energy_unavailable": "RAPL through powercap is not readable (the path missing, no "
    "RAPL zone, or permission denied; the message names it): `energy.host` figures are null, "
    "never estimated",
    "host_energy_incomplete": "a RAPL zone could not be read throughout the run (gone, "
    "permission denied or its counter reset): its energy and every host total including it "
    "are null",
    "host_package_energy_unknown": "RAPL zones were read but `energy.host.cpu_package_energy_j` "
    "is null: no package-* zone, a zone whose name is unreadable, or per-die package zones that "
    "may mirror one socket counter (the message and `energy.host.null_reason` say which)",
    "serving_requests_failed": "serving mode: requests ended with an error (the count and the "
    "first error in the message): they miss every SLO and are not completed requests, while "
    "the tokens they received before failing still count in the window (docs/serving.md)",
    "serving_saturated": "serving mode: the run counts as saturated by the rule in "
    "docs/serving.md (`serving.saturation_reason` says which part fired, with its numbers): "
    "its figures describe an engine that did not keep up with the offered load",
    "sanity_check_failed": "a post-run sanity check failed (see `sanity.failed_checks`)",
}


def table() -> str:
    """The registry as the markdown table of ``docs/methodology.md``."""
    rows = [f"| `{code}` | {when} |" for code, when in WARNING_CODES.items()]
    return "\n".join(["| code | when |", "|---|---|", *rows]) + "\n"


if __name__ == "__main__":
    print(table(), end="")
