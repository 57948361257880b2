"""Where a site's service listens, and how a client the service started finds it.

Kept apart from the protocol's message models (:mod:`console.service.protocol`), which take
a while to build: every command asks whether a service runs for its site, and when none
does it learns that from here alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from console.lab.runtime import runtime_dir

__all__ = ["SERVICE_ENV", "TOKEN_ENV", "OPERATOR_ENV", "socket_path", "may_run"]

#: where a client process started by the service finds it, and its session token
SERVICE_ENV, TOKEN_ENV, OPERATOR_ENV = "FLEET_SERVICE", "FLEET_SERVICE_TOKEN", "FLEET_OPERATOR"


def socket_path(site: str, *, environ: dict[str, str] | None = None) -> Path:
    """``runtime_dir()/service-<site>.sock`` (``$FLEET_SERVICE`` when a service started this client)."""
    env = os.environ if environ is None else environ
    given = env.get(SERVICE_ENV)
    if given:
        return Path(given)
    if not site or "/" in site or site in (".", "..") or "\x00" in site:
        raise ValueError(f"not a site name: {site!r}")
    return runtime_dir() / f"service-{site}.sock"


def may_run(site: str, *, environ: dict[str, str] | None = None) -> bool:
    """False when no service can be running for ``site``: no ``$FLEET_SERVICE`` and nothing at
    its socket path.  True says only that it is worth asking (the client checks who answers)."""
    env = os.environ if environ is None else environ
    if env.get(SERVICE_ENV):
        return True
    try:
        return os.path.lexists(socket_path(site, environ=environ))
    except ValueError:  # not a site name: the client says so
        return True
