"""The host's own energy: CPU package and DRAM from RAPL, through the Linux powercap interface.

Intel and AMD processors expose their RAPL energy counters as powercap zones:
``/sys/class/powercap/intel-rapl:N`` (``name`` = ``package-N``) with subzones such as
``intel-rapl:N:M`` (``name`` = ``dram``, ``core``, ``uncore``). Each zone's ``energy_uj`` is a
counter in microjoules that wraps back to zero at ``max_energy_range_uj``.

:class:`HostEnergyMeter` reads every zone at the window's edges (:meth:`~HostEnergyMeter.mark`)
and every ``poll_s`` in between from its own thread, so that between two reads a counter can wrap
at most once and each wrap is unwrapped. A zone that cannot be read (missing, permission denied,
gone mid-run) gives null energy and a reason, never an estimate.

Why not Zeus's RAPL reader (``zeus.device.cpu``): its root is a module constant (the host's
``/sys/class/powercap/intel-rapl`` or a fixed container path), so it cannot be pointed at a
test tree; it counts wraps in one spawned process per counter file, and counts every decrease
as a wrap. The counter arithmetic needed here is a few lines.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from harness.schema.result import HostEnergy, HostEnergyZone, Warning_

DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")
"""Where the kernel exposes powercap; a container sees it only through a bind mount."""

ROOT_ENV = "LLEM_POWERCAP_ROOT"
"""Set by the Docker runner to the read-only bind of the host's RAPL zones (docs/runners.md)."""

METHOD = "rapl_powercap"

DEFAULT_POLL_S = 2.0
"""Seconds between two reads of every zone inside a run. The smallest ranges seen are tens of
kJ (AMD package zones: ~65 kJ), so a counter wraps at most once between reads below ~30 kW."""

PERMISSION_HINT = (
    "energy_uj is readable by root only on kernels patched for CVE-2020-8694 (2020); "
    "see docs/runners.md for the read permission and a container's read-only bind"
)


@dataclass(frozen=True)
class RaplZone:
    """One powercap zone: a counter and the value it wraps at.

    Attributes:
        zone: the zone's directory name, e.g. ``intel-rapl:0:1``.
        name: what the zone measures, as the kernel names it: ``package-0``, ``dram``, ...;
            None when its ``name`` file is unreadable (then no host total can be trusted).
        energy_uj_path: the counter file.
        max_energy_range_uj: the counter wraps back to 0 after this value (uJ); None when
            unreadable or malformed (then a wrap cannot be unwrapped and the zone's energy is
            null).

    """

    zone: str
    name: str | None
    energy_uj_path: Path
    max_energy_range_uj: int | None

    def read_uj(self) -> int:
        """The counter now (uJ); raises OSError or ValueError when it cannot be read."""
        return int(self.energy_uj_path.read_text().strip())


def forward_step_uj(before_uj: int, after_uj: int, max_range_uj: int) -> int | None:
    """Energy between two reads of one counter (uJ), or None for a counter that was reset.

    A decrease is a wrap, ``(max - before) + after``, only if that step is shorter than half
    the range; a decrease that unwraps to nearly the whole range is a reset (a reloaded
    driver), not energy.
    """
    if after_uj >= before_uj:
        return after_uj - before_uj
    wrapped = (max_range_uj - before_uj) + after_uj
    return wrapped if wrapped < max_range_uj / 2 else None


def _zone_dirs(root: Path) -> list[Path]:
    """Every ``intel-rapl:N`` zone and ``intel-rapl:N:M`` subzone once, in numeric order.

    ``/sys/class/powercap`` lists every zone flat (links into the device tree), while the
    device tree a container gets bind-mounted (``.../powercap/intel-rapl``) nests subzones in
    their zone; both layouts are read, each zone counted once.
    """
    found: dict[str, Path] = {}
    for top in root.glob("intel-rapl:*"):
        for path in (top, *top.glob("intel-rapl:*")):
            found.setdefault(path.name, path)
    return [found[name] for name in sorted(found, key=_zone_order)]


def _zone_order(name: str) -> list[int]:
    return [int(part) if part.isdigit() else -1 for part in name.split(":")[1:]]


def powercap_root() -> Path:
    """Where this process reads RAPL: ``$LLEM_POWERCAP_ROOT`` (set in containers) or sysfs."""
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_POWERCAP_ROOT)


def _read_text(path: Path, problems: list[str]) -> str | None:
    try:
        return path.read_text().strip()
    except OSError as error:
        problems.append(_why(error, path))
        return None


def _open_zone(path: Path, problems: list[str]) -> tuple[RaplZone, bool]:
    """A zone and whether its counter can be read now; each failure is added to ``problems``.

    An unreadable zone is kept (its energy is then null, and so is every total that would
    include it) rather than dropped, which would make a total silently partial.
    """
    name = _read_text(path / "name", problems) or None
    zone = RaplZone(path.name, name, path / "energy_uj",
                    _read_range(path / "max_energy_range_uj", problems))
    return zone, _read_text(zone.energy_uj_path, problems) is not None


def _read_range(path: Path, problems: list[str]) -> int | None:
    """A zone's wrap value (uJ), or None (and the reason in ``problems``) when unknown.

    Never 0: a wrap unwrapped against a range of 0 gives negative energy.
    """
    text = _read_text(path, problems)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        problems.append(f"{path}: not a positive integer ({text!r})")
        return None
    return value


def _why(error: Exception, path: Path) -> str:
    if isinstance(error, PermissionError):
        return f"{path}: permission denied ({PERMISSION_HINT})"
    if isinstance(error, FileNotFoundError):
        return f"{path}: missing"
    return f"{path}: {type(error).__name__}: {error}"


def discover_zones(root: Path = DEFAULT_POWERCAP_ROOT) -> tuple[list[RaplZone], list[str]]:
    """The RAPL zones under ``root`` and why any of them could not be read.

    Returns:
        (zones, problems); no zone when powercap or RAPL is absent or no counter is readable,
        and then the problems say why.

    """
    try:
        if not root.is_dir():
            return [], [f"{root}: missing (no powercap interface on this machine or in this "
                        "container)"]
        dirs = _zone_dirs(root)
    except OSError as error:
        return [], [_why(error, root)]
    if not dirs:
        return [], [f"{root}: no intel-rapl zone (the CPU or kernel exposes no RAPL)"]
    problems: list[str] = []
    opened = [_open_zone(path, problems) for path in dirs]
    if not any(readable for _, readable in opened):
        return [], problems
    return [zone for zone, _ in opened], problems


@dataclass
class _ZoneState:
    """One zone's counter unwrapped since the start of its current chain of good reads."""

    last_uj: int | None = None
    chain: int = 0
    total_uj: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HostMark:
    """Every zone's unwrapped counter at one instant: (chain, uJ), None where unreadable.

    Two readings of a zone are comparable only within one chain: a failed read or a reset
    starts a new one, since the energy across it is unknown.
    """

    t_s: float
    totals: tuple[tuple[int, int] | None, ...]
    raw_uj: tuple[int | None, ...] = ()
    """Every zone's counter as read (uJ): tells mirrored per-die zones from distinct ones."""


class HostEnergyMeter:
    """Read the host's RAPL zones at marks and every ``poll_s`` between them.

    Args:
        zones: the zones found (:func:`discover_zones`); with none, nothing is read.
        problems: why zones (or powercap itself) could not be opened.
        poll_s: seconds between reads by the background thread.
        clock: returns seconds (the protocol's clock).

    """

    def __init__(self, zones: Sequence[RaplZone], problems: Sequence[str] = (),
                 poll_s: float = DEFAULT_POLL_S,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.zones = list(zones)
        self.problems = list(problems)
        self.poll_s = poll_s
        self.clock = clock
        self._states = [_ZoneState() for _ in self.zones]
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.reads = 0  # reads of every zone so far (marks and polls)

    @classmethod
    def open(cls, root: Path | None = None, poll_s: float = DEFAULT_POLL_S
             ) -> HostEnergyMeter:
        """A meter over every zone under ``root`` (default: :func:`powercap_root`)."""
        zones, problems = discover_zones(powercap_root() if root is None else root)
        return cls(zones, problems, poll_s)

    def poll(self) -> HostMark:
        """Read every zone now (the thread calls this; tests may call it directly)."""
        with self._lock:
            t_s = self.clock()
            totals = tuple(self._read(zone, state)
                           for zone, state in zip(self.zones, self._states, strict=True))
            raw_uj = tuple(state.last_uj if total else None
                           for state, total in zip(self._states, totals, strict=True))
            self.reads += 1
        return HostMark(t_s, totals, raw_uj)

    def _read(self, zone: RaplZone, state: _ZoneState) -> tuple[int, int] | None:
        try:
            now_uj = zone.read_uj()
        except (OSError, ValueError) as error:
            if state.last_uj is not None or not state.failures:  # once per streak of failures
                state.failures.append(_why(error, zone.energy_uj_path))
            state.last_uj = None
            return None
        if zone.max_energy_range_uj is None:  # a wrap could not be unwrapped (in problems)
            state.last_uj = now_uj
            return None
        step = None if state.last_uj is None else forward_step_uj(
            state.last_uj, now_uj, zone.max_energy_range_uj)
        if step is None:  # first read, or first after a failure or a reset: a new chain
            if state.last_uj is not None:
                state.failures.append(f"{zone.energy_uj_path}: counter reset from "
                                      f"{state.last_uj} to {now_uj} uJ")
            state.chain += 1
            state.total_uj = 0
        else:
            state.total_uj += step
        state.last_uj = now_uj
        return state.chain, state.total_uj

    def mark(self) -> HostMark:
        """Read every zone now: a window edge."""
        return self.poll()

    def between(self, start: HostMark, end: HostMark) -> tuple[HostEnergy, list[Warning_]]:
        """The host's energy from ``start`` to ``end`` and the warnings that explain nulls."""
        if not self.zones:
            reason = "; ".join(self.problems) or "no RAPL zone"
            return HostEnergy(null_reason=reason), [Warning_(
                code="host_energy_unavailable",
                message=f"CPU package and DRAM energy (energy.host) are null: RAPL through "
                f"powercap is not readable: {reason}. Host energy is never estimated.")]
        zones = [HostEnergyZone(zone=z.zone, name=z.name or "unknown", energy_j=_delta_j(a, b))
                 for z, a, b in zip(self.zones, start.totals, end.totals, strict=True)]
        lost = [f"{z.zone} ({z.name})" for z in zones if z.energy_j is None]
        package_j, package_why = self._package_total(zones, start, end)
        dram_j, dram_why = self._dram_total(zones)
        host = HostEnergy(
            method=METHOD, duration_s=end.t_s - start.t_s, zones=zones,
            cpu_package_energy_j=package_j, dram_energy_j=dram_j,
            null_reason="; ".join(why for why in (package_why, dram_why) if why) or None,
        )
        warnings = self._incomplete_warnings(lost)
        if package_why:
            warnings.append(Warning_(
                code="host_package_energy_unknown",
                message=f"cpu_package_energy_j (energy.host) is null although RAPL zones were "
                f"read: {package_why}. Host energy is never estimated."))
        return host, warnings

    def _unnamed(self) -> str | None:
        """Why no total can be trusted when a zone has no readable name, else None."""
        unnamed = [z.zone for z in self.zones if z.name is None]
        if not unnamed:
            return None
        return (f"zone(s) {', '.join(unnamed)} have no readable name, so whether they are a "
                "package or a dram zone is unknown and a total without them may be partial")

    def _found(self) -> str:
        return ", ".join(f"{z.zone} ({z.name or 'unknown'})" for z in self.zones)

    def _package_total(self, zones: list[HostEnergyZone], start: HostMark, end: HostMark
                       ) -> tuple[float | None, str | None]:
        """The packages' energy (J) and, when it is null for a reason no warning gives, why."""
        if unnamed := self._unnamed():
            return None, unnamed
        picked = [i for i, z in enumerate(self.zones) if (z.name or "").startswith("package")]
        if not picked:
            return None, f"no package-* zone among the RAPL zones found: {self._found()}"
        counted: list[int] = []
        for dies in _by_package(self.zones, picked).values():
            if any(zones[i].energy_j is None for i in dies):
                return None, None  # an unreadable zone: host_energy_incomplete says why
            if len(dies) > 1 and not _mirrored(dies, start, end):
                names = ", ".join(f"{self.zones[i].zone} ({self.zones[i].name})" for i in dies)
                return None, (f"per-die package zones {names} read different counters, and "
                              "llem cannot tell distinct dies from dies mirroring one socket "
                              "counter read at slightly different instants")
            counted.append(dies[0])  # mirrored dies are one meter: counted once
        return _sum_known([zones[i].energy_j for i in counted]), None

    def _dram_total(self, zones: list[HostEnergyZone]) -> tuple[float | None, str | None]:
        """The dram zones' energy (J) and, when it is null for a reason no warning gives, why."""
        if unnamed := self._unnamed():
            return None, unnamed
        picked = [z.energy_j for z in zones if z.name == "dram"]
        if not picked:
            return None, f"no dram zone among the RAPL zones found: {self._found()}"
        return _sum_known(picked), None

    def _incomplete_warnings(self, lost: list[str]) -> list[Warning_]:
        if not lost:
            return []
        details = dict.fromkeys(self.problems + [f for s in self._states for f in s.failures])
        return [Warning_(
            code="host_energy_incomplete",
            message=f"RAPL zone(s) {', '.join(lost)} could not be read throughout "
            f"the run ({'; '.join(details)}): their energy and every host total that includes "
            "them are null.")]

    def start(self) -> None:
        """Read in a daemon thread every ``poll_s``; a no-op without zones or when running."""
        if self._thread is not None or not self.zones:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="llem-rapl", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it; a no-op when not running."""
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join()
        self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.poll()
            self._stopping.wait(self.poll_s)

    def __enter__(self) -> HostEnergyMeter:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _delta_j(start: tuple[int, int] | None, end: tuple[int, int] | None) -> float | None:
    if start is None or end is None or start[0] != end[0]:
        return None
    return (end[1] - start[1]) / 1e6


def _sum_known(picked: list[float | None]) -> float | None:
    """Sum of zone energies (J); None when one is unreadable (the incomplete warning says why)."""
    if any(e is None for e in picked):
        return None
    return sum(e for e in picked if e is not None)


_DIE_NAME = re.compile(r"package-(\d+)-die-\d+")


def _by_package(zones: list[RaplZone], picked: list[int]) -> dict[str, list[int]]:
    """The picked package zones grouped by socket: ``package-N-die-M`` zones share N."""
    groups: dict[str, list[int]] = {}
    for i in picked:
        die = _DIE_NAME.fullmatch(zones[i].name or "")
        groups.setdefault(f"socket {die.group(1)}" if die else f"zone {i}", []).append(i)
    return groups


def _mirrored(dies: list[int], start: HostMark, end: HostMark) -> bool:
    """Whether per-die zones read one counter: the same value at both edges of the window.

    Multi-die AMD parts expose a zone per die that all read the socket's one counter; summing
    them multiplies the socket's energy. Distinct dies (Intel Cascade Lake-AP) have counters
    that differ. Equal reads at both edges are taken as one counter; anything else is
    ambiguous (one counter read a few microseconds apart also differs) and nulls the total.
    """
    for mark in (start, end):
        values = {mark.raw_uj[i] if i < len(mark.raw_uj) else None for i in dies}
        if None in values or len(values) != 1:
            return False
    return True
