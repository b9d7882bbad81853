"""Which physical GPUs a run measures: the ones its backend computes on, and no others.

A model computes on CUDA devices; energy is read from NVML devices. The two number GPUs
differently: CUDA counts only the GPUs in ``CUDA_VISIBLE_DEVICES`` (indices or UUIDs), in the
order given there, and by default sorts them fastest first; NVML counts every GPU of the
machine in PCI bus order and ignores ``CUDA_VISIBLE_DEVICES``. Measuring "GPU 0" of one while the
model runs on "GPU 0" of the other measures the wrong GPU without any error.

So a run resolves, before anything touches CUDA:

1. the candidates: the GPUs the process may use (``CUDA_VISIBLE_DEVICES`` mapped onto NVML by
   index in PCI bus order or by UUID, optionally narrowed to the NVML indices the runner
   chose), in CUDA order;
2. how many the backend uses (one for a single-device model, tensor x pipeline parallel for an
   engine, all candidates for a multi-device ``device_map``): the first that many candidates are
   measured, the rest are not;
3. the process's own CUDA view is narrowed to exactly those GPUs by UUID
   (``CUDA_VISIBLE_DEVICES=GPU-...``, ``CUDA_DEVICE_ORDER=PCI_BUS_ID``), so CUDA device *i* is
   measured GPU *i* in this process and in every worker process an engine starts.

After the model has loaded the mapping is *proven* (:func:`prove`): from the CUDA side through
the UUIDs of the devices the model's tensors live on, or, for engines whose workers live in
other processes, from the NVML side through new compute processes or memory growth on every
measured GPU. A mismatch fails the run. The map goes into ``environment.gpu_bindings``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from harness.energy.device import GpuSample, GpuSet
from harness.errors import PreflightError
from harness.schema.result import GpuBinding, GpuIdentityProof, GpuInfo

VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
ORDER_ENV = "CUDA_DEVICE_ORDER"
PCI_ORDER = "PCI_BUS_ID"

MIN_MEMORY_GROWTH_MB = 256.0
"""Memory growth on a GPU across the load that proves an engine placed its model there (MiB).

Well above driver noise (a few MiB), well below any model's weights plus a CUDA context."""


@dataclass(frozen=True)
class Selection:
    """The GPUs a run measures, and how CUDA numbers them.

    Attributes:
        gpus: the measured GPUs (a subset of the machine's, in CUDA order).
        bindings: CUDA index -> NVML index -> UUID, one per measured GPU.
        candidates: how many GPUs the process could have used.

    """

    gpus: GpuSet
    bindings: list[GpuBinding]
    candidates: int


def parse_visible(value: str | None) -> list[str] | None:
    """The device tokens of ``CUDA_VISIBLE_DEVICES`` (None when unset: every GPU is visible).

    CUDA stops reading the list at the first token that names no device; an empty value hides
    every GPU.
    """
    if value is None:
        return None
    return [token.strip() for token in value.split(",") if token.strip()]


def _uuid_key(uuid: str) -> str:
    # NVML says "GPU-8f0c...", torch's device property gives the bare "8f0c...".
    return uuid.strip().lower().removeprefix("gpu-")


def pci_order(infos: Sequence[GpuInfo]) -> list[int]:
    """NVML positions sorted by PCI bus id: CUDA's device order under PCI_BUS_ID.

    NVML usually enumerates in PCI bus order but does not promise it, so the order is taken
    from the bus ids themselves (NVML order where a bus id is unknown).
    """
    return sorted(range(len(infos)), key=lambda p: (infos[p].pci_bus_id or "", p))


def _find(token: str, infos: Sequence[GpuInfo], order: str | None) -> int | None:
    """Position of the GPU a ``CUDA_VISIBLE_DEVICES`` token names, or None."""
    if token.lstrip("-").isdigit():
        index = int(token)
        if not 0 <= index < len(infos):
            return None
        _check_integer_order(infos, order)
        return pci_order(infos)[index]
    if token.upper().startswith("MIG-"):
        raise PreflightError(
            f"{VISIBLE_ENV} names a MIG device ({token}); NVML can only measure the whole GPU",
            fix=f"set {VISIBLE_ENV} to the parent GPU's UUID (nvidia-smi -L) and expect the "
            "mig_enabled warning: energy is that of the whole GPU",
        )
    key = _uuid_key(token)
    matches = [i for i, info in enumerate(infos) if _uuid_key(info.uuid).startswith(key)]
    return matches[0] if len(matches) == 1 else None


def _check_integer_order(infos: Sequence[GpuInfo], order: str | None) -> None:
    """Integer entries mean PCI bus order only under CUDA_DEVICE_ORDER=PCI_BUS_ID.

    CUDA's default order is fastest first; among GPUs of one model it falls back to PCI bus
    order, so integers are unambiguous there. Among different models they are not.
    """
    if order == PCI_ORDER or len({info.name for info in infos}) <= 1:
        return
    raise PreflightError(
        f"{VISIBLE_ENV} holds integer indices and {ORDER_ENV} is {order or 'unset'} (fastest "
        "first) on a machine with different GPU models: which GPU an index names is unknown",
        fix=f"set {ORDER_ENV}=PCI_BUS_ID, or name GPUs by UUID in {VISIBLE_ENV} "
        "(nvidia-smi -L)",
    )


def candidate_positions(infos: Sequence[GpuInfo], visible: list[str] | None,
                        allowed: list[int] | None, order: str | None = PCI_ORDER) -> list[int]:
    """Positions (NVML order) of the GPUs the process may use, in CUDA order.

    Args:
        infos: every GPU NVML lists, in NVML order.
        visible: ``CUDA_VISIBLE_DEVICES`` tokens, or None for all GPUs (in PCI bus order).
        allowed: NVML indices the runner restricted the run to, or None.
        order: ``CUDA_DEVICE_ORDER`` (integers in ``visible`` count in that order).

    Raises:
        PreflightError: ``allowed`` names a GPU that does not exist, a MIG device is visible,
            or integer indices are ambiguous.

    """
    positions: list[int] = []
    for token in visible if visible is not None else [str(i) for i in range(len(infos))]:
        position = _find(token, infos, order if visible is not None else PCI_ORDER)
        if position is None:
            break  # CUDA ignores the rest of the list after a token it cannot resolve
        if position not in positions:
            positions.append(position)
    if allowed is None:
        return positions
    missing = [index for index in allowed if not 0 <= index < len(infos)]
    if missing:
        raise PreflightError(
            f"GPU index {missing} not found: this machine has {len(infos)} GPU(s), "
            f"indices 0..{len(infos) - 1}",
            fix="set execution.gpus to indices that exist (see nvidia-smi)",
        )
    return [index for index in allowed if index in positions]


def select(gpus: GpuSet, needed: int | None, allowed: list[int] | None = None,
           visible: str | None = None) -> Selection:
    """Choose the GPUs a run measures among those NVML lists.

    Args:
        gpus: every GPU NVML lists (the empty set on a machine without NVIDIA GPUs).
        needed: how many GPUs the backend computes on; None means every candidate.
        allowed: NVML indices the runner restricted the run to (None: no restriction).
        visible: the value of ``CUDA_VISIBLE_DEVICES`` (default: this process's).

    Raises:
        PreflightError: fewer candidates than the backend needs.

    """
    if len(gpus) == 0:
        return Selection(gpus, [], 0)
    infos = [gpu.info() for gpu in gpus]
    if visible is None:
        visible = os.environ.get(VISIBLE_ENV)
    positions = candidate_positions(infos, parse_visible(visible), allowed,
                                    os.environ.get(ORDER_ENV))
    count = len(positions) if needed is None else needed
    if count > len(positions) or count == 0:
        raise PreflightError(
            f"the backend computes on {count or 'at least one'} GPU(s) but the run may use "
            f"{len(positions)} ({VISIBLE_ENV}={visible!r}, execution.gpus={allowed})",
            fix="give the run enough GPUs (execution.gpus, or CUDA_VISIBLE_DEVICES), or lower "
            "the parallelism (vllm.tensor_parallel_size, tensorrt.tp_size x pp_size)",
        )
    chosen = positions[:count]
    by_bus = pci_order(infos)
    bindings = [GpuBinding(cuda_index=cuda, nvml_index=gpus[p].index, uuid=infos[p].uuid,
                           pci_index=by_bus.index(p), pci_bus_id=infos[p].pci_bus_id)
                for cuda, p in enumerate(chosen)]
    return Selection(gpus.subset([gpus[p] for p in chosen]), bindings, len(positions))


def cuda_initialised() -> bool:
    """Whether this process has already initialised CUDA through torch (too late to narrow)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    try:
        return bool(torch.cuda.is_initialized())
    except Exception:  # a torch without CUDA support, or a broken one: nothing initialised
        return False


def narrow_cuda_view(bindings: Sequence[GpuBinding],
                     form: str = "uuid") -> dict[str, str | None]:
    """Make the measured GPUs the only CUDA devices of this process and of its children.

    Does nothing when there is nothing to narrow or when CUDA is already initialised in this
    process (too late: only :func:`prove` can tell then).

    Args:
        bindings: the measured GPUs, in CUDA order.
        form: how the view names them: ``uuid`` (robust; what torch reads) or ``index``
            (integer indices in PCI bus order, with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``): vLLM
            converts every entry with ``int()`` and fails at start-up on a UUID.

    Returns:
        The variables' previous values (None: unset), for :func:`restore_cuda_view`; empty
        when nothing was changed.

    """
    if not bindings or cuda_initialised():
        return {}
    saved = {name: os.environ.get(name) for name in (ORDER_ENV, VISIBLE_ENV)}
    os.environ[ORDER_ENV] = PCI_ORDER
    os.environ[VISIBLE_ENV] = ",".join(
        str(b.pci_index) if form == "index" else b.uuid for b in bindings)
    return saved


def restore_cuda_view(saved: dict[str, str | None]) -> None:
    """Put back what :func:`narrow_cuda_view` changed (a library caller's process goes on)."""
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def prove(bindings: Sequence[GpuBinding], device_uuids: list[str] | None,
          before: Sequence[GpuSample | None], after: Sequence[GpuSample | None],
          processes_before: Sequence[Sequence[int]],
          processes_after: Sequence[Sequence[int]]) -> GpuIdentityProof:
    """Show that the model computes on exactly the measured GPUs, or fail the run.

    Args:
        bindings: the measured GPUs.
        device_uuids: UUIDs of the CUDA devices the model's tensors live on, as the backend's
            own library reports them; None when the backend's workers live in other
            processes (vLLM, TensorRT-LLM).
        before: one sample per measured GPU taken before the load (None: the read failed).
        after: one sample per measured GPU taken after the load (None: the read failed).
        processes_before: compute-process PIDs per measured GPU before the load.
        processes_after: the same after the load.

    Raises:
        PreflightError: the model's devices and the measured GPUs differ.

    """
    measured = {_uuid_key(binding.uuid): binding for binding in bindings}
    if device_uuids is not None:
        return _prove_by_uuid(measured, device_uuids)
    evidence = [
        _engine_evidence(binding, b, a, set(p_after) - set(p_before))
        for binding, b, a, p_before, p_after in zip(
            bindings, before, after, processes_before, processes_after, strict=True)
    ]
    unproven = [binding for binding, found in zip(bindings, evidence, strict=True) if not found]
    if unproven:
        names = ", ".join(f"GPU {b.nvml_index} ({b.uuid})" for b in unproven)
        raise PreflightError(
            f"after the model loaded, {names} showed no new compute process and no memory "
            f"growth (>= {MIN_MEMORY_GROWTH_MB:g} MiB): the engine is not running on the GPUs "
            "being measured",
            fix="check CUDA_VISIBLE_DEVICES and execution.gpus; the engine must see exactly "
            "the measured GPUs",
        )
    return GpuIdentityProof(method="nvml_processes_or_memory", evidence=evidence)


def _prove_by_uuid(measured: dict[str, GpuBinding],
                   device_uuids: list[str]) -> GpuIdentityProof:
    used = {_uuid_key(uuid) for uuid in device_uuids}
    if used != set(measured):
        raise PreflightError(
            f"the model's tensors are on GPU(s) {sorted(used)} but the run measures "
            f"{sorted(measured)} (UUIDs): its energy would be another GPU's",
            fix="do not initialise CUDA before the run starts (the harness narrows "
            f"{VISIBLE_ENV} to the measured GPUs), and check execution.gpus",
        )
    evidence = [f"CUDA device {b.cuda_index} has UUID {b.uuid} = NVML GPU {b.nvml_index}"
                for b in measured.values()]
    return GpuIdentityProof(method="cuda_device_uuid", evidence=evidence)


def _engine_evidence(binding: GpuBinding, before: GpuSample | None, after: GpuSample | None,
                     new_pids: set[int]) -> str:
    """Why this GPU is in use after the load, or "" when nothing shows it."""
    if new_pids:
        return f"GPU {binding.nvml_index}: new compute process(es) {sorted(new_pids)}"
    if before is None or after is None:
        return ""
    if before.mem_used_mb is not None and after.mem_used_mb is not None:
        growth_mb = after.mem_used_mb - before.mem_used_mb
        if growth_mb >= MIN_MEMORY_GROWTH_MB:
            return f"GPU {binding.nvml_index}: memory used grew by {growth_mb:.0f} MiB"
    return ""
