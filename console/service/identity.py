"""Who is talking to the site service, and what their role lets them do.

An Identity is decided by the service (SO_PEERCRED for a local client, a session
token for a client started by the SSH front door), never by the environment alone.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from typing import Literal, get_args

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
ROLE_RANK: dict[Role, int] = {"viewer": 0, "operator": 1, "admin": 2}

# What each kind of request needs, at least.
NEEDS: dict[str, Role] = {
    "watch": "viewer",
    "power": "operator",
    "pxe": "operator",
    "console-input": "operator",
    "reimage": "admin",
    "console-force": "admin",
    "protected": "admin",
}


def allows(role: str, what: str) -> bool:
    """True when `role` may do `what`. Unknown roles and unknown requests are refused."""
    need = NEEDS.get(what)
    if need is None or role not in ROLE_RANK:
        return False
    return ROLE_RANK[role] >= ROLE_RANK[need]


def needed_role(what: str) -> Role | None:
    """The least role that allows `what` (None for an unknown request)."""
    return NEEDS.get(what)


def is_role(value: object) -> bool:
    return isinstance(value, str) and value in ROLE_RANK


@dataclass(frozen=True)
class Identity:
    name: str
    role: Role
    via: str  # "local" or "ssh"

    def allows(self, what: str) -> bool:
        return allows(self.role, what)

    def label(self) -> str:
        return f"{self.name} ({self.role}, {self.via})"


class SessionTokens:
    """Opaque tokens the service hands to the client processes it starts.

    A token is only a key into this table: it carries no identity itself, and
    revoking it (session closed, service stopping) makes it worthless.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_token: dict[str, Identity] = {}

    def issue(self, identity: Identity) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._by_token[token] = identity
        return token

    def resolve(self, token: str) -> Identity | None:
        if not isinstance(token, str) or not token:
            return None
        with self._lock:
            for known, identity in self._by_token.items():
                if secrets.compare_digest(known, token):
                    return identity
        return None

    def revoke(self, token: str) -> None:
        with self._lock:
            self._by_token.pop(token, None)

    def revoke_all(self) -> None:
        with self._lock:
            self._by_token.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_token)
