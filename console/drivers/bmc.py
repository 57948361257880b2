"""The one interface every BMC driver satisfies, and the value types it returns.

Screens, the poller and actions only ever see :class:`BmcDriver`; whether a node
speaks IPMI or Redfish is the driver's business.  Drivers raise only
:class:`console.errors.DriverError` subclasses (mapped from their library's
exceptions in one place, ``from exc``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = [
    "BmcDriver",
    "BootOverride",
    "BootTarget",
    "Event",
    "Identity",
    "PowerAction",
    "PowerState",
    "Sensor",
    "worst_health",
]


class PowerState(str, enum.Enum):  # noqa: UP042 -- str() and f-strings keep "PowerState.ON"
    """What the BMC says about chassis power."""

    ON = "on"
    OFF = "off"
    UNKNOWN = "unknown"


class PowerAction(str, enum.Enum):  # noqa: UP042 -- as PowerState
    """Power requests, in the operator's words."""

    ON = "on"
    OFF = "off"  # hard off
    SOFT = "soft"  # ACPI shutdown request
    CYCLE = "cycle"  # off, then on
    RESET = "reset"  # warm reset


class BootTarget(str, enum.Enum):  # noqa: UP042 -- as PowerState
    """Boot override targets (IPMI boot device / Redfish BootSourceOverrideTarget)."""

    NONE = "none"
    PXE = "pxe"
    DISK = "disk"
    CD = "cd"
    BIOS = "bios"
    OTHER = "other"  # read back only: a device this interface has no name for (USB, UEFI target ...)


@dataclass(frozen=True)
class BootOverride:
    """The boot override as read back from the BMC."""

    target: BootTarget
    persistent: bool = False  # False: once (consumed by the next boot)
    #: IPMI boot flags whose valid bit is clear but whose device selector names a device:
    #: that device (``target`` is then NONE, as ipmitool and pyghmi read such flags).  Some
    #: BMCs never set the bit and still boot the device (OpenIPMI's ipmi_sim); the spec
    #: lets others clear it on a timer, keeping the selector.
    unflagged: BootTarget | None = None


@dataclass(frozen=True)
class Sensor:
    """One sensor reading with thresholds; ``health`` is the BMC's or derived from them."""

    name: str
    kind: str  # temperature | fan | voltage | power | other
    value: float | None
    unit: str  # C | RPM | V | W | % | ""
    health: str  # ok | warning | critical | unknown
    lower_critical: float | None = None
    lower_warning: float | None = None
    upper_warning: float | None = None
    upper_critical: float | None = None


@dataclass(frozen=True)
class Event:
    """One event log entry (IPMI SEL / Redfish LogEntry)."""

    id: str
    timestamp: float | None  # unix seconds, None when the BMC gives no usable time
    severity: str  # ok | warning | critical
    message: str
    sensor: str = ""


@dataclass(frozen=True)
class Identity:
    """What the machine is."""

    vendor: str = ""
    model: str = ""
    serial: str = ""
    uuid: str = ""
    bios_version: str = ""
    bmc_firmware: str = ""
    macs: tuple[str, ...] = field(default_factory=tuple)


_ORDER = {"ok": 0, "unknown": 0, "warning": 1, "critical": 2}


def worst_health(values: list[str]) -> str:
    """The worst of several health words (``ok`` for none)."""
    worst = max((_ORDER.get(v, 0) for v in values), default=0)
    return ["ok", "warning", "critical"][worst]


@runtime_checkable
class BmcDriver(Protocol):
    """An open connection to one BMC.  One in-flight request at a time per driver."""

    async def power_state(self) -> PowerState:
        """Chassis power as the BMC reports it."""

    async def power(self, action: PowerAction) -> None:
        """Request a power change (returns when the BMC accepted it, not when done)."""

    async def boot_override(self) -> BootOverride:
        """Read the boot override back."""

    async def set_boot_override(self, target: BootTarget, *, persistent: bool = False) -> None:
        """Set the boot override (once unless ``persistent``)."""

    async def health(self) -> str:
        """Overall health: ok, warning, critical or unknown."""

    async def sensors(self) -> list[Sensor]:
        """Every sensor with thresholds."""

    async def events(self, limit: int = 100) -> list[Event]:
        """The most recent event log entries, newest last."""

    async def identity(self) -> Identity:
        """Vendor, model, serial, firmware versions, MACs."""

    async def close(self) -> None:
        """Log out and release the session (always call; idempotent)."""
