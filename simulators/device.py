"""What a virtual terminal knows about itself and reports: power, battery, signal, SIM, fixes.

``DeviceHealth`` keeps the terminal's own readings (main power, backup battery, GSM
signal, ICCID), moving slowly as a real unit's do; ``compose_report`` turns the vehicle's
true state, the GNSS receiver and the active faults into one ``Message`` ready for the
protocol's ``DeviceCodec``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from core.messages import Message, MessageType
from core.vocabulary import Alarm, Attr
from simulators.faults import FaultKind, FaultState
from simulators.motion import GnssFix, GnssReceiver, Kinematics

FIRMWARE = "SIM-2.4.1"


@dataclass(slots=True)
class DeviceHealth:
    iccid: str
    rng: random.Random
    gsm_signal: float = 80.0
    battery_v: float = 4.1
    spare_iccid: str | None = None  # the SIM someone puts in without telling (SIM_SWAP)
    swapped_iccid: str | None = None  # once swapped, the unit keeps the other SIM

    def step(self) -> None:
        self.gsm_signal = min(100.0, max(35.0, self.gsm_signal + self.rng.gauss(0, 4)))

    def attributes(self, faults: FaultState, ignition: bool) -> tuple[dict[str, Any], list[str]]:
        """The health attributes and the device-fault alarms to report now."""
        alarms: list[str] = []
        if faults.active(FaultKind.SIM_SWAP) and self.swapped_iccid is None and self.spare_iccid:
            self.swapped_iccid = self.spare_iccid
        power_cut = faults.active(FaultKind.POWER_CUT)
        if power_cut:
            power_v = 0.0
            self.battery_v = max(3.55, self.battery_v - 0.01)  # running on the backup battery
            alarms.append(Alarm.POWER_CUT)
        else:
            power_v = round((13.9 if ignition else 12.5) + self.rng.uniform(-0.15, 0.15), 2)
            self.battery_v = min(4.15, self.battery_v + 0.02)
        battery_v = self.battery_v
        if faults.active(FaultKind.LOW_BATTERY):
            battery_v = 3.35
            alarms.append(Alarm.LOW_BATTERY)
        battery_level = int(max(0.0, min(100.0, (battery_v - 3.3) / (4.15 - 3.3) * 100)))
        signal = 6.0 if faults.active(FaultKind.WEAK_SIGNAL) else self.gsm_signal
        if faults.active(FaultKind.GNSS_ANTENNA_CUT):
            alarms.append(Alarm.GNSS_ANTENNA_CUT)
        attributes: dict[str, Any] = {
            Attr.POWER_V: power_v,
            Attr.POWER_CUT: power_cut,
            Attr.BATTERY_V: round(battery_v, 2),
            Attr.BATTERY_LEVEL: battery_level,
            Attr.GSM_SIGNAL: int(signal),
            Attr.ICCID: self.current_iccid,
            Attr.IGNITION: ignition,
            Attr.CHARGING: not power_cut,
            Attr.FIRMWARE: FIRMWARE,
        }
        return attributes, alarms

    @property
    def current_iccid(self) -> str:
        return self.swapped_iccid or self.iccid


@dataclass(slots=True)
class ReportComposer:
    """Builds one terminal's reports from its motion, receiver, health and faults."""

    gnss: GnssReceiver
    health: DeviceHealth
    faults: FaultState
    frozen: GnssFix | None = field(default=None)

    def compose(self, now: datetime, elapsed_s: float, truth: Kinematics) -> Message:
        fix = self._fix(now, truth)
        attributes, alarms = self.health.attributes(self.faults, truth.ignition)
        if not fix.valid:
            attributes[Attr.GNSS_STATUS] = "no_fix"
        else:
            attributes[Attr.GNSS_STATUS] = "fix"
        attributes[Attr.ODOMETER_M] = round(truth.odometer_m)
        attributes[Attr.MOTION] = truth.speed_kmh > 1.0
        device_time = now + timedelta(seconds=self.faults.clock_offset_s(elapsed_s))
        return Message(
            type=MessageType.POSITION,
            time=device_time.replace(microsecond=0),
            valid=fix.valid,
            lat=round(fix.position.lat, 6),
            lon=round(fix.position.lon, 6),
            speed_kmh=fix.speed_kmh,
            course=fix.course,
            altitude_m=fix.altitude_m,
            satellites=fix.satellites,
            hdop=fix.hdop,
            alarms=alarms,
            attributes=attributes,
        )

    def _fix(self, now: datetime, truth: Kinematics) -> GnssFix:
        if self.faults.active(FaultKind.GNSS_ANTENNA_CUT):
            return self.gnss.no_fix(now, truth, satellites=0)
        if self.faults.active(FaultKind.NO_FIX):
            return self.gnss.no_fix(now, truth, satellites=self.health.rng.randint(0, 3))
        fix = self.gnss.read(truth, now)
        if self.faults.active(FaultKind.FROZEN_FIX):
            # The receiver hangs and repeats its last solution, still flagged valid.
            if self.frozen is None:
                self.frozen = fix
            frozen = self.frozen
            return GnssFix(
                time=now,
                valid=True,
                position=frozen.position,
                speed_kmh=frozen.speed_kmh,
                course=frozen.course,
                altitude_m=frozen.altitude_m,
                satellites=frozen.satellites,
                hdop=frozen.hdop,
            )
        self.frozen = None
        return fix
