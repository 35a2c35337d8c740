"""Fault injection for virtual terminals: what breaks, when, and what it does to the output.

A fault is scheduled at a time (seconds after the terminal starts, for a duration or for
good) or drawn with a probability at each report.  Device faults change what the terminal
reports (no fix, an alarm, a low voltage, another ICCID, a clock that runs off); link
faults change the bytes on the wire (garbage, a wrong checksum, a truncated frame, a
frame sent twice) or silence the terminal.  ``FaultState`` answers "what is active now"
and applies it; every activation is counted once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum


class FaultKind(StrEnum):
    GNSS_ANTENNA_CUT = "gnss_antenna_cut"
    NO_FIX = "no_fix"
    FROZEN_FIX = "frozen_fix"
    POWER_CUT = "power_cut"
    LOW_BATTERY = "low_battery"
    WEAK_SIGNAL = "weak_signal"
    SIM_SWAP = "sim_swap"
    SILENT = "silent"
    CLOCK_DRIFT = "clock_drift"
    GARBAGE = "garbage"
    BAD_CHECKSUM = "bad_checksum"
    TRUNCATED = "truncated"
    DUPLICATE = "duplicate"


# Faults that act on the bytes of each frame while they are active.
FRAME_FAULTS: frozenset[FaultKind] = frozenset(
    {FaultKind.GARBAGE, FaultKind.BAD_CHECKSUM, FaultKind.TRUNCATED, FaultKind.DUPLICATE}
)


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One scheduled or random fault of one terminal.

    ``at_s``: seconds after the terminal starts; ``duration_s``: how long it lasts (None:
    until the end).  ``probability``: instead of a time, the chance at each report that
    the fault starts; for frame faults, the chance that a frame is hit (inside the window
    when ``at_s`` is given too; with no probability every frame in the window is hit).
    ``drift_s_per_h``: how fast the clock runs off (CLOCK_DRIFT).
    """

    kind: FaultKind
    at_s: float | None = None
    duration_s: float | None = None
    probability: float = 0.0
    drift_s_per_h: float = 600.0

    def scheduled_active(self, elapsed_s: float) -> bool:
        if self.at_s is None or elapsed_s < self.at_s:
            return False
        return self.duration_s is None or elapsed_s < self.at_s + self.duration_s


@dataclass(slots=True)
class _Window:
    spec: FaultSpec
    started_s: float
    until_s: float | None


@dataclass(slots=True)
class FaultState:
    """The faults of one terminal over its run.  ``update(elapsed)`` once per report."""

    specs: list[FaultSpec]
    rng: random.Random
    injected: int = 0  # activations so far (a frame fault hitting a frame counts once per frame)
    _active: dict[FaultKind, _Window] = field(default_factory=dict)
    _counted: set[int] = field(default_factory=set)
    started_kinds: list[FaultKind] = field(default_factory=list)  # newly active since last update

    def update(self, elapsed_s: float) -> list[FaultKind]:
        """Advance to ``elapsed_s``: start and end windows; returns the kinds that started."""
        started: list[FaultKind] = []
        for kind, window in list(self._active.items()):
            if window.until_s is not None and elapsed_s >= window.until_s:
                del self._active[kind]
        for index, spec in enumerate(self.specs):
            if spec.kind in FRAME_FAULTS and spec.at_s is None:
                continue  # random frame faults are drawn per frame
            if spec.scheduled_active(elapsed_s):
                if spec.kind not in self._active:
                    until = None if spec.duration_s is None else spec.at_s + spec.duration_s  # type: ignore[operator]
                    self._active[spec.kind] = _Window(spec, elapsed_s, until)
                    started.append(spec.kind)
                    if index not in self._counted:
                        self._counted.add(index)
                        self.injected += 1
            elif (
                spec.probability
                and spec.kind not in FRAME_FAULTS
                and spec.kind not in self._active
                and self.rng.random() < spec.probability
            ):
                until = None if spec.duration_s is None else elapsed_s + spec.duration_s
                self._active[spec.kind] = _Window(spec, elapsed_s, until)
                started.append(spec.kind)
                self.injected += 1
        self.started_kinds = started
        return started

    def active(self, kind: FaultKind) -> bool:
        return kind in self._active

    def since(self, kind: FaultKind) -> float | None:
        window = self._active.get(kind)
        return window.started_s if window else None

    @property
    def active_kinds(self) -> list[FaultKind]:
        return list(self._active)

    def clock_offset_s(self, elapsed_s: float) -> float:
        """How far the device clock is off: drift accumulated since the fault started."""
        window = self._active.get(FaultKind.CLOCK_DRIFT)
        if window is None:
            return 0.0
        # A drifting clock jumps first (a lost RTC sync), then keeps running off.
        hours = (elapsed_s - window.started_s) / 3600.0
        return window.spec.drift_s_per_h * (1.0 + hours)

    def frame_hits(self) -> set[FaultKind]:
        """The frame faults that hit the frame about to be sent."""
        hits: set[FaultKind] = set()
        for spec in self.specs:
            if spec.kind not in FRAME_FAULTS:
                continue
            if spec.at_s is not None and spec.kind not in self._active:
                continue  # outside its window
            if not spec.probability or self.rng.random() < spec.probability:
                hits.add(spec.kind)
        if hits:
            self.injected += 1
        return hits


def garbage(rng: random.Random, length: int | None = None) -> bytes:
    """Line noise: random bytes of a plausible burst length."""
    return rng.randbytes(length or rng.randint(3, 40))


def truncate(frame: bytes, rng: random.Random) -> bytes:
    """A prefix of the frame, as when the modem drops the end of a write."""
    if len(frame) < 4:
        return frame[:1]
    return frame[: rng.randint(2, len(frame) - 2)]
