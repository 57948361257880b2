"""The lab Redfish BMC's inventory and service resources: what a client such as Ironic's sushy reads.

Processors, Memory, Storage (with Drives and Volumes) and SimpleStorage, Bios (with its
settings object), SecureBoot, the manager's own EthernetInterfaces, and the
UpdateService, TaskService and EventService singletons.  They are small but
schema-valid, shaped after the DMTF ``public-rackmount1`` mockup and the vendor captures
in ``tests/data/redfish-mockups``, and the same for every flavor (ids come from the
flavor where vendors differ).

:class:`InventoryResources` is a mixin of :class:`console.lab.redfish_bmc._Bmc`; its
``get_*``/``patch_*``/``post_*`` handlers are routed by :data:`ROUTES`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from .machine import Machine
from .redfish_common import RedfishError, Reply, collection, iso, link, status

__all__ = ["ROUTES", "InventoryResources", "SystemExtras", "known_ids"]

_ROOT = "/redfish/v1"
_SYS = "/redfish/v1/Systems/{sys}"

#: path template -> {HTTP method: handler name}; merged into redfish_bmc's route table.
ROUTES: dict[str, dict[str, str]] = {
    _SYS + "/Processors": {"GET": "get_processors"},
    _SYS + "/Processors/{cpu}": {"GET": "get_processor"},
    _SYS + "/Memory": {"GET": "get_memory_collection"},
    _SYS + "/Memory/{dimm}": {"GET": "get_memory"},
    _SYS + "/Storage": {"GET": "get_storage_collection"},
    _SYS + "/Storage/{stor}": {"GET": "get_storage"},
    _SYS + "/Storage/{stor}/Drives/{drive}": {"GET": "get_drive"},
    _SYS + "/Storage/{stor}/Volumes": {"GET": "get_volumes"},
    _SYS + "/Storage/{stor}/Volumes/{vol}": {"GET": "get_volume"},
    _SYS + "/SimpleStorage": {"GET": "get_simple_storage_collection"},
    _SYS + "/SimpleStorage/{stor}": {"GET": "get_simple_storage"},
    _SYS + "/Bios": {"GET": "get_bios"},
    _SYS + "/Bios/Settings": {"GET": "get_bios_settings", "PATCH": "patch_bios_settings"},
    _SYS + "/Bios/Actions/Bios.ResetBios": {"POST": "post_reset_bios"},
    _SYS + "/SecureBoot": {"GET": "get_secure_boot", "PATCH": "patch_secure_boot"},
    "/redfish/v1/Managers/{mgr}/EthernetInterfaces": {"GET": "get_manager_nics"},
    "/redfish/v1/Managers/{mgr}/EthernetInterfaces/{nic}": {"GET": "get_manager_nic"},
    "/redfish/v1/UpdateService": {"GET": "get_update_service"},
    "/redfish/v1/UpdateService/FirmwareInventory": {"GET": "get_firmware_inventory"},
    "/redfish/v1/UpdateService/FirmwareInventory/{fw}": {"GET": "get_firmware"},
    "/redfish/v1/TaskService": {"GET": "get_task_service"},
    "/redfish/v1/TaskService/Tasks": {"GET": "get_tasks"},
    "/redfish/v1/EventService": {"GET": "get_event_service"},
    "/redfish/v1/EventService/Subscriptions": {"GET": "get_subscriptions"},
}

_CPUS = ("CPU1", "CPU2")
_DIMMS = ("DIMM1", "DIMM2", "DIMM3", "DIMM4")
_DIMM_MIB = 65536  # four 64 GiB DIMMs: the 256 GiB MemorySummary says
_DRIVE_BYTES = 960_197_124_096  # a 960 GB SSD, as sold
_BIOS_DEFAULTS: dict[str, Any] = {
    "BootMode": "Uefi", "ProcTurboMode": "Enabled", "ProcVirtualization": "Enabled",
    "SriovGlobalEnable": "Disabled", "EmbeddedSata": "AhciMode", "PxeDev1EnDis": "Enabled",
}


def known_ids() -> tuple[str, ...]:
    """The ids these resources use in their paths (for a case-insensitive flavor's routing)."""
    return (*_CPUS, *_DIMMS, "BMC", "BIOS", "eth0", "Settings")


@dataclass
class SystemExtras:
    """Per ComputerSystem state the inventory resources keep: BIOS attributes and Secure Boot."""

    bios: dict[str, Any] = field(default_factory=lambda: dict(_BIOS_DEFAULTS))
    bios_pending: dict[str, Any] = field(default_factory=dict)
    secure_boot: bool = False


class InventoryResources:
    """Handlers of the resources in :data:`ROUTES`; mixed into the lab's ``_Bmc``."""

    # Provided by _Bmc (declared here for the type checker).
    machine: Machine
    address: str
    systems: dict[str, Machine]
    extras: dict[str, SystemExtras]
    manager_uri: str
    manager_id: str
    uuid: str

    def _system(self, sid: str) -> Machine:
        raise NotImplementedError

    def _missing(self, *parts: str) -> RedfishError:
        raise NotImplementedError

    # ------------------------------------------------------------- processors and memory
    def get_processors(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        self._system(p["sys"])
        uri = f"{_ROOT}/Systems/{p['sys']}/Processors"
        return collection(uri, "ProcessorCollection", "Processors Collection", [f"{uri}/{c}" for c in _CPUS])

    def get_processor(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        self._system(p["sys"])
        if p["cpu"] not in _CPUS:
            raise self._missing("Systems", p["sys"], "Processors", p["cpu"])
        return {
            "@odata.id": f"{_ROOT}/Systems/{p['sys']}/Processors/{p['cpu']}",
            "@odata.type": "#Processor.v1_11_0.Processor", "Id": p["cpu"], "Name": "Processor",
            "Socket": f"CPU {_CPUS.index(p['cpu']) + 1}", "ProcessorType": "CPU", "ProcessorArchitecture": "x86",
            "InstructionSet": "x86-64", "Manufacturer": "Fleet Lab", "Model": "Fleet Lab vCPU",
            "MaxSpeedMHz": 3700, "OperatingSpeedMHz": 2400, "TotalCores": 16, "TotalThreads": 32,
            "Status": status(),
        }

    def get_memory_collection(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        self._system(p["sys"])
        uri = f"{_ROOT}/Systems/{p['sys']}/Memory"
        return collection(uri, "MemoryCollection", "Memory Module Collection", [f"{uri}/{d}" for d in _DIMMS])

    def get_memory(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        self._system(p["sys"])
        if p["dimm"] not in _DIMMS:
            raise self._missing("Systems", p["sys"], "Memory", p["dimm"])
        n = _DIMMS.index(p["dimm"])
        return {
            "@odata.id": f"{_ROOT}/Systems/{p['sys']}/Memory/{p['dimm']}",
            "@odata.type": "#Memory.v1_10_0.Memory", "Id": p["dimm"], "Name": f"DIMM Slot {n + 1}",
            "CapacityMiB": _DIMM_MIB, "DataWidthBits": 64, "BusWidthBits": 72, "ErrorCorrection": "MultiBitECC",
            "MemoryType": "DRAM", "MemoryDeviceType": "DDR4", "BaseModuleType": "RDIMM", "OperatingSpeedMhz": 3200,
            "MemoryLocation": {"Socket": n // 2 + 1, "MemoryController": 1, "Channel": n % 2 + 1, "Slot": n + 1},
            "Status": status(),
        }

    # ------------------------------------------------------------- storage
    def _check_storage(self, p: dict[str, str], kind: str = "Storage") -> Machine:
        m = self._system(p["sys"])
        if p["stor"] != "1":
            raise self._missing("Systems", p["sys"], kind, p["stor"])
        return m

    def get_storage_collection(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        self._system(p["sys"])
        uri = f"{_ROOT}/Systems/{p['sys']}/Storage"
        return collection(uri, "StorageCollection", "Storage Collection", [f"{uri}/1"])

    def get_storage(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        m = self._check_storage(p)
        uri = f"{_ROOT}/Systems/{p['sys']}/Storage/1"
        return {
            "@odata.id": uri, "@odata.type": "#Storage.v1_9_0.Storage", "Id": "1", "Name": "Local Storage Controller",
            "Status": {**status(), "HealthRollup": "OK"},
            "StorageControllers": [{
                "@odata.id": f"{uri}#/StorageControllers/0", "MemberId": "0", "Name": "SATA Controller",
                "Status": status(), "Manufacturer": "Fleet Lab", "Model": "AHCI", "SpeedGbps": 6,
                "SupportedControllerProtocols": ["PCIe"], "SupportedDeviceProtocols": ["SATA"],
            }],
            "Drives@odata.count": 1, "Drives": [link(f"{uri}/Drives/0")],
            "Volumes": link(f"{uri}/Volumes"),
            "Description": f"Storage of {m.name}",
        }

    def get_drive(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        m = self._check_storage(p)
        if p["drive"] != "0":
            raise self._missing("Systems", p["sys"], "Storage", "1", "Drives", p["drive"])
        serial = hashlib.sha256(f"{m.name}/disk0".encode()).hexdigest()[:12].upper()
        return {
            "@odata.id": f"{_ROOT}/Systems/{p['sys']}/Storage/1/Drives/0", "@odata.type": "#Drive.v1_9_0.Drive",
            "Id": "0", "Name": "Solid State Drive 0", "Manufacturer": "Fleet Lab", "Model": "FL-SSD-960",
            "SerialNumber": serial, "CapacityBytes": _DRIVE_BYTES, "MediaType": "SSD", "Protocol": "SATA",
            "BlockSizeBytes": 512, "Status": status(), "IndicatorLED": "Off",
        }

    def get_volumes(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        self._check_storage(p)
        uri = f"{_ROOT}/Systems/{p['sys']}/Storage/1/Volumes"
        return collection(uri, "VolumeCollection", "Volume Collection", [f"{uri}/1"])

    def get_volume(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        self._check_storage(p)
        if p["vol"] != "1":
            raise self._missing("Systems", p["sys"], "Storage", "1", "Volumes", p["vol"])
        uri = f"{_ROOT}/Systems/{p['sys']}/Storage/1"
        return {
            "@odata.id": f"{uri}/Volumes/1", "@odata.type": "#Volume.v1_5_0.Volume", "Id": "1",
            "Name": "Boot Volume", "Status": status(), "CapacityBytes": _DRIVE_BYTES, "RAIDType": "RAID0",
            "Links": {"Drives": [link(f"{uri}/Drives/0")]},
        }

    def get_simple_storage_collection(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        self._system(p["sys"])
        uri = f"{_ROOT}/Systems/{p['sys']}/SimpleStorage"
        return collection(uri, "SimpleStorageCollection", "Simple Storage Collection", [f"{uri}/1"])

    def get_simple_storage(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        self._check_storage(p, "SimpleStorage")
        return {
            "@odata.id": f"{_ROOT}/Systems/{p['sys']}/SimpleStorage/1",
            "@odata.type": "#SimpleStorage.v1_3_0.SimpleStorage", "Id": "1", "Name": "Simple Storage Controller",
            "UefiDevicePath": "PciRoot(0x0)/Pci(0x17,0x0)", "Status": status(),
            "Devices": [{"Name": "Solid State Drive 0", "Manufacturer": "Fleet Lab", "Model": "FL-SSD-960",
                         "CapacityBytes": _DRIVE_BYTES, "Status": status()}],
        }

    # ------------------------------------------------------------- BIOS and Secure Boot
    def _extras(self, sid: str) -> SystemExtras:
        self._system(sid)
        return self.extras.setdefault(sid, SystemExtras())

    def get_bios(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        x = self._extras(p["sys"])
        uri = f"{_ROOT}/Systems/{p['sys']}/Bios"
        return {
            "@odata.id": uri, "@odata.type": "#Bios.v1_1_0.Bios", "Id": "Bios", "Name": "BIOS Configuration",
            "AttributeRegistry": "BiosAttributeRegistryFleetLab.v1_0_0", "Attributes": dict(x.bios),
            "@Redfish.Settings": {"@odata.type": "#Settings.v1_3_5.Settings",
                                  "SettingsObject": link(f"{uri}/Settings"),
                                  "SupportedApplyTimes": ["OnReset"]},
            "Actions": {"#Bios.ResetBios": {"target": f"{uri}/Actions/Bios.ResetBios"}},
        }

    def get_bios_settings(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        x = self._extras(p["sys"])
        return {
            "@odata.id": f"{_ROOT}/Systems/{p['sys']}/Bios/Settings", "@odata.type": "#Bios.v1_1_0.Bios",
            "Id": "Settings", "Name": "BIOS Configuration Pending Settings",
            "AttributeRegistry": "BiosAttributeRegistryFleetLab.v1_0_0", "Attributes": {**x.bios, **x.bios_pending},
        }

    def patch_bios_settings(self, p: dict[str, str], body: dict[str, Any]) -> Reply:
        x = self._extras(p["sys"])
        for key in body:
            if key != "Attributes":
                raise RedfishError("PropertyUnknown", key)
        attrs = body.get("Attributes", {})
        if not isinstance(attrs, dict):
            raise RedfishError("PropertyValueTypeError", attrs, "Attributes")
        for key, value in attrs.items():
            if key not in _BIOS_DEFAULTS:
                raise RedfishError("PropertyUnknown", f"Attributes/{key}")
            if not isinstance(value, type(_BIOS_DEFAULTS[key])):
                raise RedfishError("PropertyValueTypeError", value, f"Attributes/{key}")
        x.bios_pending.update(attrs)  # applied at the next reset, as BIOS settings are
        return Reply(204)

    def apply_bios(self, sid: str) -> None:
        """The system reset: pending BIOS settings take effect."""
        if (x := self.extras.get(sid)) is not None and x.bios_pending:
            x.bios.update(x.bios_pending)
            x.bios_pending.clear()

    def post_reset_bios(self, p: dict[str, str], body: Any) -> Reply:
        x = self._extras(p["sys"])
        x.bios_pending = dict(_BIOS_DEFAULTS)
        return Reply(204)

    def get_secure_boot(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        x = self._extras(p["sys"])
        m = self._system(p["sys"])
        on = x.secure_boot and m.powered
        return {
            "@odata.id": f"{_ROOT}/Systems/{p['sys']}/SecureBoot", "@odata.type": "#SecureBoot.v1_1_0.SecureBoot",
            "Id": "SecureBoot", "Name": "UEFI Secure Boot", "SecureBootEnable": x.secure_boot,
            "SecureBootCurrentBoot": "Enabled" if on else "Disabled", "SecureBootMode": "DeployedMode",
        }

    def patch_secure_boot(self, p: dict[str, str], body: dict[str, Any]) -> Reply:
        x = self._extras(p["sys"])
        for key in body:
            if key in ("SecureBootCurrentBoot", "SecureBootMode", "Id", "Name"):
                raise RedfishError("PropertyNotWritable", key)
            if key != "SecureBootEnable":
                raise RedfishError("PropertyUnknown", key)
        value = body.get("SecureBootEnable", x.secure_boot)
        if not isinstance(value, bool):
            raise RedfishError("PropertyValueTypeError", value, "SecureBootEnable")
        x.secure_boot = value
        return Reply(204)

    # ------------------------------------------------------------- the manager's own network
    def _bmc_mac(self) -> str:
        digest = hashlib.sha256(f"{self.machine.name}/bmc".encode()).digest()
        return "02:" + ":".join(f"{b:02X}" for b in digest[:5])

    def _check_manager(self, mgr: str) -> None:
        if mgr != self.manager_id:
            raise self._missing("Managers", mgr)

    def get_manager_nics(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        self._check_manager(p["mgr"])
        uri = f"{self.manager_uri}/EthernetInterfaces"
        return collection(uri, "EthernetInterfaceCollection", "Manager Ethernet Interfaces", [f"{uri}/eth0"])

    def get_manager_nic(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        self._check_manager(p["mgr"])
        if p["nic"] != "eth0":
            raise self._missing("Managers", p["mgr"], "EthernetInterfaces", p["nic"])
        mac = self._bmc_mac()
        return {
            "@odata.id": f"{self.manager_uri}/EthernetInterfaces/eth0",
            "@odata.type": "#EthernetInterface.v1_9_0.EthernetInterface", "Id": "eth0",
            "Name": "Manager Ethernet Interface", "Status": status(), "InterfaceEnabled": True,
            "LinkStatus": "LinkUp", "MACAddress": mac, "PermanentMACAddress": mac, "SpeedMbps": 1000,
            "FullDuplex": True, "HostName": f"{self.machine.name}-bmc",
            "IPv4Addresses": [{"Address": self.address, "SubnetMask": "255.0.0.0", "AddressOrigin": "Static",
                               "Gateway": "0.0.0.0"}],
        }

    # ------------------------------------------------------------- update, task and event services
    def get_update_service(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        return {
            "@odata.id": f"{_ROOT}/UpdateService", "@odata.type": "#UpdateService.v1_8_0.UpdateService",
            "Id": "UpdateService", "Name": "Update Service", "Status": status(), "ServiceEnabled": True,
            "FirmwareInventory": link(f"{_ROOT}/UpdateService/FirmwareInventory"),
        }

    def _firmware(self) -> dict[str, tuple[str, str]]:
        spec = self.machine.spec
        return {"BMC": ("BMC Firmware", spec.bmc_firmware), "BIOS": ("System BIOS", spec.bios_version)}

    def get_firmware_inventory(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        uri = f"{_ROOT}/UpdateService/FirmwareInventory"
        return collection(uri, "SoftwareInventoryCollection", "Firmware Inventory Collection",
                          [f"{uri}/{k}" for k in self._firmware()])

    def get_firmware(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        fw = self._firmware()
        if p["fw"] not in fw:
            raise self._missing("UpdateService", "FirmwareInventory", p["fw"])
        name, version = fw[p["fw"]]
        return {
            "@odata.id": f"{_ROOT}/UpdateService/FirmwareInventory/{p['fw']}",
            "@odata.type": "#SoftwareInventory.v1_3_0.SoftwareInventory", "Id": p["fw"], "Name": name,
            "Version": version, "Updateable": False, "Status": status(),
        }

    def get_task_service(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        return {
            "@odata.id": f"{_ROOT}/TaskService", "@odata.type": "#TaskService.v1_1_5.TaskService",
            "Id": "TaskService", "Name": "Task Service", "DateTime": iso(self.machine.clock()),
            "CompletedTaskOverWritePolicy": "Oldest", "LifeCycleEventOnTaskStateChange": False,
            "Status": status(), "ServiceEnabled": True, "Tasks": link(f"{_ROOT}/TaskService/Tasks"),
        }

    def get_tasks(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        return collection(f"{_ROOT}/TaskService/Tasks", "TaskCollection", "Task Collection", [])

    def get_event_service(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        return {
            "@odata.id": f"{_ROOT}/EventService", "@odata.type": "#EventService.v1_5_0.EventService",
            "Id": "EventService", "Name": "Event Service", "Status": status(), "ServiceEnabled": False,
            "DeliveryRetryAttempts": 3, "DeliveryRetryIntervalSeconds": 60,
            "EventTypesForSubscription": ["StatusChange", "ResourceUpdated", "ResourceAdded", "ResourceRemoved",
                                          "Alert"],
            "Subscriptions": link(f"{_ROOT}/EventService/Subscriptions"),
        }

    def get_subscriptions(self, p: dict[str, str], body: Any) -> dict[str, Any]:
        return collection(f"{_ROOT}/EventService/Subscriptions", "EventDestinationCollection",
                          "Event Subscriptions Collection", [])
