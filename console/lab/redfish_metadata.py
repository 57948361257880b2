"""The lab Redfish service's OData documents: ``/redfish/v1/$metadata`` and ``/redfish/v1/odata``.

Redfish clients (and DMTF's validators) read ``$metadata`` to learn which schema
versions a service implements, and the ``odata`` service document to list its
top-level resources.  Both are public (DSP0266: no authentication for
``/redfish``, ``/redfish/v1``, ``/redfish/v1/odata`` and ``/redfish/v1/$metadata``).
:data:`SCHEMAS` names every versioned type the lab serves; a test crawls each flavor
and checks that every ``@odata.type`` it meets is in it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["COLLECTIONS", "SCHEMAS", "metadata_xml", "service_document"]

#: every versioned namespace the lab's resources use (Namespace.vX_Y_Z)
SCHEMAS = (
    "ServiceRoot.v1_15_0", "ComputerSystem.v1_20_0", "EthernetInterface.v1_9_0", "LogService.v1_5_0",
    "LogEntry.v1_15_0", "VirtualMedia.v1_3_0", "Chassis.v1_14_0", "Thermal.v1_7_0", "Power.v1_7_0",
    "Sensor.v1_7_0", "Manager.v1_10_0", "SessionService.v1_1_8", "Session.v1_6_0", "AccountService.v1_5_0",
    "ManagerAccount.v1_4_0", "Role.v1_2_0", "Message.v1_1_1", "ActionInfo.v1_1_2", "Processor.v1_11_0",
    "Memory.v1_10_0", "Storage.v1_9_0", "Drive.v1_9_0", "Volume.v1_5_0", "SimpleStorage.v1_3_0", "Bios.v1_1_0",
    "SecureBoot.v1_1_0", "UpdateService.v1_8_0", "SoftwareInventory.v1_3_0", "TaskService.v1_1_5",
    "EventService.v1_5_0", "Settings.v1_3_5",
)
#: the collection namespaces (unversioned)
COLLECTIONS = (
    "ComputerSystemCollection", "EthernetInterfaceCollection", "LogServiceCollection", "LogEntryCollection",
    "VirtualMediaCollection", "ChassisCollection", "SensorCollection", "ManagerCollection", "SessionCollection",
    "ManagerAccountCollection", "RoleCollection", "ProcessorCollection", "MemoryCollection", "StorageCollection",
    "VolumeCollection", "SimpleStorageCollection", "SoftwareInventoryCollection", "TaskCollection",
    "EventDestinationCollection",
)
_DMTF = "http://redfish.dmtf.org/schemas/v1"
_SINGLETONS = ("Systems", "Chassis", "Managers", "SessionService", "AccountService", "UpdateService",
               "TaskService", "EventService")


def metadata_xml() -> bytes:
    """The CSDL document: one ``edmx:Reference`` per schema file, and the Service container."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">']
    by_file: dict[str, list[str]] = {}
    for versioned in SCHEMAS:
        ns = versioned.split(".", 1)[0]
        by_file.setdefault(ns, [ns]).append(versioned)
    for ns in COLLECTIONS:
        by_file.setdefault(ns, [ns])
    by_file["Resource"] = ["Resource", "Resource.v1_0_0"]
    by_file["RedfishExtensions"] = ["RedfishExtensions.v1_0_0"]
    for ns, includes in by_file.items():
        lines.append(f'  <edmx:Reference Uri="{_DMTF}/{ns}_v1.xml">')
        for inc in includes:
            alias = ' Alias="Redfish"' if inc.startswith("RedfishExtensions.") else ""
            lines.append(f'    <edmx:Include Namespace="{inc}"{alias}/>')
        lines.append("  </edmx:Reference>")
    lines += ["  <edmx:DataServices>",
              '    <Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="Service">',
              '      <EntityContainer Name="Service" Extends="ServiceRoot.v1_15_0.ServiceContainer"/>',
              "    </Schema>", "  </edmx:DataServices>", "</edmx:Edmx>", ""]
    return "\n".join(lines).encode()


def service_document() -> dict[str, Any]:
    """The OData service document: the service root and its top-level resources."""
    value = [{"name": "Service", "kind": "Singleton", "url": "/redfish/v1/"}]
    value += [{"name": n, "kind": "Singleton", "url": f"/redfish/v1/{n}"} for n in _SINGLETONS]
    value.append({"name": "Sessions", "kind": "Singleton", "url": "/redfish/v1/SessionService/Sessions"})
    return {"@odata.context": "/redfish/v1/$metadata", "value": value}
