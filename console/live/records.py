"""Switch and port records: what the ``switches`` command prints and the switches screen shows.

:func:`switch_records` puts together, from a :class:`~console.live.fleet.Fleet`, each
switch with its ports and, on each port, the node the inventory expects there, the
node the switches see there (FDB and LLDP) and the cabling :func:`cabling` finds.
``as_json()`` gives the stable ``switches --json`` form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from console.live.words import iso, port_finding

if TYPE_CHECKING:
    from console.live.fleet import Fleet

__all__ = ["PortRecord", "SwitchRecord", "switch_records", "cabling"]


@dataclass(frozen=True)
class PortRecord:
    """One switch port as last polled, with the nodes expected and seen on it."""

    ifindex: int
    name: str
    alias: str
    admin: str  # up | down
    oper: str  # up | down
    speed_mbps: int
    in_bps: float | None
    out_bps: float | None
    in_errors: int
    out_errors: int
    node_expected: str | None
    node_seen: str | None
    macs: list[str]
    lldp: dict[str, str] | None
    #: a node is seen here that the inventory puts elsewhere (or nowhere): in words
    finding: str | None

    def as_json(self) -> dict[str, Any]:
        """The ``switches --json`` form of the port."""
        return {
            "ifindex": self.ifindex, "name": self.name, "alias": self.alias,
            "admin": self.admin, "oper": self.oper,
            "speed_mbps": self.speed_mbps, "in_bps": self.in_bps, "out_bps": self.out_bps,
            "in_errors": self.in_errors, "out_errors": self.out_errors,
            "node_expected": self.node_expected, "node_seen": self.node_seen,
            "macs": self.macs, "lldp": self.lldp, "finding": self.finding,
        }


@dataclass(frozen=True)
class SwitchRecord:
    """One switch: what it said about itself, its error, and its ports in ifIndex order."""

    name: str
    address: str
    descr: str | None
    uptime_s: float | None
    error: str | None
    polled_at: float | None
    ports: list[PortRecord] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The ``switches --json`` form of the switch."""
        return {"name": self.name, "address": self.address, "descr": self.descr, "uptime_s": self.uptime_s,
                "error": self.error, "polled_at": iso(self.polled_at), "ports": [p.as_json() for p in self.ports]}


def switch_records(fleet: Fleet) -> list[SwitchRecord]:
    """Every switch of the site with its ports, in inventory order."""
    site = fleet.site
    port_owner: dict[tuple[str, str], dict[str, str]] = {}
    for n in site.nodes:
        st = fleet.nodes[n.name]
        if n.switch_port:
            port_owner.setdefault((n.switch_port.switch, n.switch_port.port), {})["expected"] = n.name
        if st.discovered_port:
            port_owner.setdefault(st.discovered_port, {})["seen"] = n.name
    out = []
    for sw in site.switches:
        state = fleet.switches[sw.name]
        ports = []
        for p in sorted(state.ports.values(), key=lambda p: p.ifindex):
            own = port_owner.get((sw.name, p.name), {})
            expected, seen = own.get("expected"), own.get("seen")
            finding = None
            if expected and seen and expected != seen:
                finding = f"expected {expected}, found {seen}"
            elif seen and not expected:
                finding = f"{seen} is cabled here, not where the inventory says"
            ports.append(PortRecord(
                ifindex=p.ifindex, name=p.name, alias=p.alias,
                admin="up" if p.admin_up else "down", oper="up" if p.oper_up else "down",
                speed_mbps=p.speed_mbps, in_bps=p.in_bps, out_bps=p.out_bps,
                in_errors=p.in_errors, out_errors=p.out_errors,
                node_expected=expected, node_seen=seen, macs=p.macs, lldp=p.lldp, finding=finding,
            ))
        out.append(SwitchRecord(name=sw.name, address=sw.address, descr=state.descr, uptime_s=state.uptime_s,
                                error=state.error, polled_at=state.polled_at, ports=ports))
    return out


def cabling(fleet: Fleet, port: PortRecord) -> tuple[str | None, str]:
    """The cabling finding on one port: (word, explanation).

    The word is ``match``, ``mismatch``, ``ambiguous``, ``unknown`` or None (no node
    expected or seen).  A port is a mismatch both where a node turns up that the
    inventory puts elsewhere and where the inventory's node is seen elsewhere.
    """
    expected = port.node_expected
    if port.finding:  # someone is seen here who the inventory does not put here
        return "mismatch", port.finding
    if not expected:
        return None, ""
    st = fleet.nodes[expected]
    word = port_finding(fleet.site.node(expected), st)
    if word == "mismatch" and st.discovered_port:
        return "mismatch", f"{expected} is seen on {'/'.join(st.discovered_port)}"
    if word == "ambiguous":
        where = sorted({f"{e['switch']}/{e['port']}" for e in st.port_evidence})
        return "ambiguous", f"{expected} is seen on several ports: {', '.join(where)}"
    if word == "unknown":
        why = "link down" if port.oper != "up" else "not in the FDB or LLDP"
        return "unknown", f"{expected} not learned ({why})"
    return word, ""
