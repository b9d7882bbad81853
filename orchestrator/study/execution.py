"""How a study runs: cycles, order, gaps, devices and time limits.

This model is the one place these defaults live; the CLI only overrides what the user passes.
None of it is part of the study design hash.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.errors import ConfigError
from harness.schema.events import HEARTBEAT_PERIOD_S

STALL_TIMEOUT_MIN_S = 2 * HEARTBEAT_PERIOD_S
"""Two heartbeat periods: a shorter stall timeout would stop healthy runs."""


SlurmExec = Literal["docker", "apptainer", "pyxis", "local"]
SLURM_TIME = r"^(\d+-)?\d+(:\d{1,2}){0,2}$"
"""Slurm's time formats: minutes, minutes:seconds, hours:minutes:seconds, days-hours[...]."""


class SlurmConfig(BaseModel):
    """The ``execution.slurm:`` block: how the Slurm runner submits each run (docs/runners.md)."""

    model_config = ConfigDict(extra="forbid")

    exec: SlurmExec = Field(
        "docker",
        description="How a job runs the harness on its node: docker (the backend's image with "
        "the Docker runner's container plan), apptainer (apptainer exec --nv of the image as a "
        "SIF file), pyxis (srun --container-image) or local (a Python environment on storage "
        "the nodes share).")
    partition: str | None = Field(None, description="sbatch --partition (null: the default).")
    account: str | None = Field(None, description="sbatch --account.")
    qos: str | None = Field(None, description="sbatch --qos.")
    time_limit: str | None = Field(
        None, pattern=SLURM_TIME,
        description="sbatch --time in Slurm's format (e.g. 90, 1:30:00, 1-00:00:00); null: "
        "execution.timeout_s rounded up to whole minutes plus 5 minutes, so that llem's own "
        "timeout stops the run first and records it.")
    gpus_per_run: int = Field(
        1, ge=0, description="GPUs each job allocates (sbatch --gres=gpu:N); 0 for a run on "
        "the node's CPUs (pytorch, or vLLM's CPU build: the cpu images), which a GPU-only "
        "backend refuses.")
    cpus_per_run: int | None = Field(None, ge=1, description="sbatch --cpus-per-task.")
    mem: str | None = Field(
        None, pattern=r"^\d+[KMGT]?$",
        description="Memory of each job (sbatch --mem, e.g. 64G); a job above it is recorded "
        "as oom.")
    sbatch_options: list[str] = Field(
        default_factory=list,
        description="More sbatch options, each one argument as on the command line (e.g. "
        "--constraint=h100); options llem sets itself are refused.")
    python: str | None = Field(
        None, description="exec local: the interpreter on the nodes, with llem and the backend "
        "installed (null: the one running llem, which must then be on shared storage). It is "
        "not looked for on the submitting host: a node-local install is fine; a missing one "
        "fails the run with the node's error.")
    image: str | None = Field(
        None, description="exec docker or pyxis: the image reference on the nodes (null: the "
        "backend's llem image, as the Docker runner names it).")
    sif: str | None = Field(
        None, description="exec apptainer: the image converted to a SIF file on shared storage "
        "(docs/runners.md says how).")
    nodes: list[str] | None = Field(
        None, min_length=1,
        description="Run the study on these nodes at once, one lane per node: the runs are "
        "dealt out over the nodes (whole cycles where there are enough), each node runs its "
        "share in the study's order, one job after another (--nodelist, and --dependency on "
        "the node's previous job), so the gap before a run is kept on its node. Null: one run "
        "at a time, wherever Slurm places it (or lanes).")
    lanes: int | None = Field(
        None, ge=1,
        description="Runs in flight at once without pinning nodes: the runs are dealt out over "
        "this many chains of jobs, each chain in the study's order with its gaps; two chains "
        "may share a node (not a GPU: each job allocates its own). Null: the number of nodes, "
        "else 1.")
    poll_s: float = Field(
        5.0, ge=1.0,
        description="How often the one watcher of a study's jobs asks the controller (s): one "
        "squeue call per period, whatever the number of jobs.")


    @field_validator("nodes")
    @classmethod
    def _distinct_nodes(cls, nodes: list[str] | None) -> list[str] | None:
        if nodes is not None and len(set(nodes)) != len(nodes):
            raise ValueError("execution.slurm.nodes names a node twice; list each node once")
        return nodes

    @model_validator(mode="after")
    def _lanes_fit_nodes(self) -> SlurmConfig:
        if self.nodes is not None and self.lanes is not None and self.lanes != len(self.nodes):
            raise ValueError(
                f"execution.slurm.lanes is {self.lanes} but nodes lists {len(self.nodes)}: with "
                "nodes there is one lane per node; leave lanes out")
        return self

    @property
    def lane_count(self) -> int:
        """How many chains of jobs run at once (one per node when nodes are named)."""
        return len(self.nodes) if self.nodes else (self.lanes or 1)


class ExecutionConfig(BaseModel):
    """The ``execution:`` block of a study file."""

    model_config = ConfigDict(extra="forbid")

    runner: Literal["docker", "local", "slurm"] | None = Field(
        None, description="Where the study runs when neither --runner nor LLEM_RUNNER says "
        "(null: the user config's runner, else docker).")
    slurm: SlurmConfig = Field(
        default_factory=SlurmConfig, description="The Slurm runner's submission settings.")

    n_cycles: int = Field(
        1, ge=1, description="How many times every configuration is measured (repetitions)."
    )
    cycle_order: Literal["sequential", "interleaved", "shuffled"] = Field(
        "interleaved",
        description=(
            "sequential: all cycles of one configuration, then the next; interleaved: every "
            "configuration once per cycle; shuffled: a seeded random order per cycle (the "
            "realised order is recorded)."
        ),
    )
    shuffle_seed: int = Field(42, description="Seed of the shuffled order.")
    config_gap_s: float = Field(
        60.0, ge=0,
        description=(
            "Pause between two consecutive runs (s), so the GPU cools down; cycle_gap_s takes "
            "its place where the pause separates two cycles."
        ),
    )
    cycle_gap_s: float = Field(
        300.0, ge=0,
        description=(
            "Pause between two cycles (s): where every run before the pause is of an earlier "
            "cycle than every run after it. Interleaved and shuffled orders pause so after each "
            "cycle; sequential order with two or more configurations runs its cycles side by "
            "side and never does (config_gap_s between all its runs)."
        ),
    )
    gap_until_cool: bool = Field(
        False,
        description=(
            "Extend each pause until the GPU temperature is back within a margin of its idle "
            "value (bounded)."
        ),
    )
    cool_margin_c: float = Field(
        3.0, gt=0, description="gap_until_cool: within this many degC of the idle temperature."
    )
    cool_max_s: float = Field(
        600.0, gt=0, description="gap_until_cool: never wait longer than this (s)."
    )
    gpus: list[Annotated[int, Field(ge=0)]] | None = Field(
        None,
        min_length=1,
        description="Device indices the runs use, each once (default: the runner's choice).",
    )
    timeout_s: float = Field(3600.0, gt=0, description="Limit on one run's wall time (s).")
    stall_timeout_s: float | None = Field(
        300.0,
        ge=STALL_TIMEOUT_MIN_S,
        description=(
            "Stop a run as stalled when its events.jsonl gets no event for this long (s) while "
            "its process or container still runs; the harness appends a heartbeat every "
            f"{HEARTBEAT_PERIOD_S:g} s, so at least {STALL_TIMEOUT_MIN_S:g} s. null: never."
        ),
    )

    load_timeout_s: float | None = Field(
        1800.0,
        gt=0,
        description=(
            "Stop a run whose model load (phase load) has not finished after this long (s), "
            "as a timeout: a load that hangs (an engine process that died while starting) "
            "then costs this much, not all of timeout_s. Long enough for a large model's "
            "first load: a 70B model's 140 GB read from storage at 100 MB/s take about "
            "23 min, and a first TensorRT-LLM engine build of such a model can take as long. "
            "Raise it for slower loads; null: no limit of its own (timeout_s still applies; "
            "the smaller of the two stops the run)."
        ),
    )

    @field_validator("gpus")
    @classmethod
    def _each_gpu_once(cls, gpus: list[int] | None) -> list[int] | None:
        if gpus is not None and len(set(gpus)) != len(gpus):
            raise ValueError(f"names a device twice: {gpus}")
        return gpus


GPUS_FIX = ("name the device indices nvidia-smi shows, each once, e.g. --gpus 0,1; leave --gpus "
            "out to let the runner choose")


def parse_gpus(text: str) -> list[int]:
    """The device indices of ``--gpus 0,1``.

    Raises:
        ConfigError: empty, not a comma-separated list of integers, a negative index or one
            named twice.
    """
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise ConfigError(f"--gpus {text!r} names no GPU", fix=GPUS_FIX)
    try:
        gpus = [int(part) for part in parts]
    except ValueError as error:
        raise ConfigError(f"--gpus {text!r} is not a list of device indices",
                          fix=GPUS_FIX) from error
    if min(gpus) < 0:
        raise ConfigError(f"--gpus {text!r}: a device index is 0 or more", fix=GPUS_FIX)
    if len(set(gpus)) != len(gpus):
        raise ConfigError(f"--gpus {text!r} names a device twice", fix=GPUS_FIX)
    return gpus
