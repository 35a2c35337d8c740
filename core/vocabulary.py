"""The shared vocabulary: alarm names and attribute keys every protocol maps onto.

Decoders put only these names in ``Message.alarms`` and prefer these keys in
``Message.attributes``; a protocol-specific value with no shared meaning goes under a
key prefixed with the protocol name (``jt808.status``, ``teltonika.io69``).
"""

from __future__ import annotations


class Alarm:
    """Alarm names shared by every protocol."""

    SOS = "sos"
    POWER_CUT = "power_cut"  # main (vehicle) power disconnected
    LOW_POWER = "low_power"  # main power under-voltage
    LOW_BATTERY = "low_battery"  # backup battery low
    GNSS_ANTENNA_CUT = "gnss_antenna_cut"
    GNSS_ANTENNA_SHORT = "gnss_antenna_short"
    GNSS_FAULT = "gnss_fault"
    DEVICE_FAULT = "device_fault"  # another module of the terminal reports a fault
    OVERSPEED = "overspeed"
    VIBRATION = "vibration"
    TAMPER = "tamper"
    MOVEMENT = "movement"
    ACCIDENT = "accident"
    GEOFENCE_ENTER = "geofence_enter"
    GEOFENCE_EXIT = "geofence_exit"
    GEOFENCE = "geofence"  # entered or left, the device does not say which
    DOOR = "door"
    FATIGUE = "fatigue"
    HARSH_ACCELERATION = "harsh_acceleration"
    HARSH_BRAKING = "harsh_braking"
    HARSH_CORNERING = "harsh_cornering"
    JAMMING = "jamming"
    TOW = "tow"
    FALL_DOWN = "fall_down"
    GENERAL = "general"


ALARMS: frozenset[str] = frozenset(v for k, v in vars(Alarm).items() if k.isupper())

# Alarms that mean the terminal itself is failing (they open repair tickets), as opposed
# to driver behaviour or vehicle events, which are recorded but are not device faults.
DEVICE_FAULT_ALARMS: frozenset[str] = frozenset(
    {
        Alarm.POWER_CUT,
        Alarm.LOW_POWER,
        Alarm.LOW_BATTERY,
        Alarm.GNSS_ANTENNA_CUT,
        Alarm.GNSS_ANTENNA_SHORT,
        Alarm.GNSS_FAULT,
        Alarm.DEVICE_FAULT,
    }
)


class Attr:
    """Attribute keys shared by every protocol, with their units."""

    ICCID = "iccid"
    IMSI = "imsi"
    BATTERY_LEVEL = "battery_level"  # percent 0-100
    BATTERY_V = "battery_v"  # backup battery, volts
    POWER_V = "power_v"  # main / external power, volts
    POWER_CUT = "power_cut"  # bool: main power disconnected, as reported
    GSM_SIGNAL = "gsm_signal"  # percent 0-100 (protocol scales are converted)
    GSM_SIGNAL_RAW = "gsm_signal_raw"  # the device's own scale, as sent
    ODOMETER_M = "odometer_m"  # metres
    IGNITION = "ignition"  # bool
    CHARGING = "charging"  # bool
    MOTION = "motion"  # bool
    FUEL = "fuel"  # litres or percent as the device reports
    FIRMWARE = "firmware"
    MODEL = "model"
    EVENT_CODE = "event_code"
    GNSS_STATUS = "gnss_status"  # "fix", "no_fix", "off", "sleep"
    PDOP = "pdop"
    VDOP = "vdop"
    TEMPERATURE_C = "temperature_c"
    DRIVER_ID = "driver_id"
    ARMED = "armed"
    BLOCKED = "blocked"  # fuel / power relay cut
    SERIAL = "serial"  # frame serial number
    STATUS = "status"  # raw status word, as sent
    CELL = "cell"  # {"mcc":..,"mnc":..,"lac":..,"cid":..}
    CHECKSUM_OK = "checksum_ok"  # present (False) only when decoded leniently
    RESULT = "result"  # text of a command result
    ARCHIVED = "archived"  # bool: a stored (blind-area) fix uploaded later
    TIME_ZONE = "time_zone"  # zone a login announced, "+08:00"


# The attribute keys that make up a terminal's health snapshot in the latest state.
HEALTH_ATTRIBUTES: tuple[str, ...] = (
    Attr.POWER_V,
    Attr.POWER_CUT,
    Attr.BATTERY_V,
    Attr.BATTERY_LEVEL,
    Attr.GSM_SIGNAL,
    Attr.ICCID,
    Attr.IGNITION,
    Attr.CHARGING,
    Attr.GNSS_STATUS,
    Attr.ODOMETER_M,
    Attr.FIRMWARE,
)
