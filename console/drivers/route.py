"""Which local address the kernel sends from to a peer: the address a client UDP socket binds to.

The poller's UDP sockets (RMCP+ in :mod:`console.drivers.rmcp`, SNMP in
:mod:`console.drivers.snmp`) are bound to this source address, not to the wildcard,
so that on a shared jump host they do not listen on every interface.
"""

from __future__ import annotations

import socket

from console.errors import Unreachable

__all__ = ["source_address"]


def source_address(address: str, port: int) -> str:
    """The local address a datagram to ``(address, port)`` leaves from.

    ``connect()`` on a UDP socket sends nothing: it only picks the route.  No route is
    :class:`Unreachable`.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((address, port))
        except OSError as exc:
            raise Unreachable(f"{address}: {exc.strerror or exc}") from exc
        return probe.getsockname()[0]
