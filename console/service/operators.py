"""The operators file: who may log in to the site service over SSH, with which keys and role.

::

    operators:
      - {name: alice, role: operator, keys: ["ssh-ed25519 AAAA... alice@laptop"]}
      - {name: bob, role: viewer, keys: ["ssh-ed25519 AAAA..."]}
    limits: {sessions_per_operator: 4, sessions_total: 64, idle_minutes: 30}

An operator logs in as their ``name`` (``ssh alice@host``) with one of their ``keys``
(OpenSSH public key lines, parsed with :func:`asyncssh.import_public_key`; no
``authorized_keys`` options).  A key may belong to one operator only.

The file decides who may act on the fleet, so it is trusted as a site file is: it and
every directory above it must be owned by us or root and not writable by group or
others (a sticky directory excepted); it is opened without following a symbolic link
at its last component, checked again after opening (:func:`os.fstat`), and read with a
size limit.  Every problem is reported as ``file:line:column: field: message``.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from console.service.identity import Role
from console.trust import check_chain, owner_words
from inventory.errors import FleetError, InventoryError, Problem
from inventory.yamldoc import Doc, Shape

__all__ = ["Limits", "Operator", "Operators", "OperatorsError", "load_operators", "MAX_OPERATORS_BYTES"]

#: the largest operators file read (a thousand operators with four keys each is ~500 KB)
MAX_OPERATORS_BYTES = 2 * 1024 * 1024
#: a login name as useradd(8) takes it
_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
#: the longest public key line accepted (an RSA 16384 key is ~2.8 KB)
_MAX_KEY_CHARS = 8192


class OperatorsError(FleetError):
    """The operators file cannot be used; ``problems`` are located when they come from its text."""

    title = "operators file"

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class Limits(BaseModel):
    """How much the SSH front door lets in at once, and for how long an idle session stays."""

    model_config = ConfigDict(extra="forbid")

    sessions_per_operator: int = Field(4, ge=1, le=1000, description="sessions one operator may have at once")
    sessions_total: int = Field(64, ge=1, le=10000, description="sessions of all operators at once")
    idle_minutes: float = Field(30.0, ge=0, le=7 * 24 * 60,
                                description="a terminal session without input for this long is closed (0: never)")


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    role: Role
    keys: list[str] = Field(min_length=1)


@dataclass(frozen=True)
class Operator:
    """One operator: their login name, role and accepted public keys."""

    name: str
    role: Role
    keys: tuple[asyncssh.SSHKey, ...]

    def has_key(self, key: asyncssh.SSHKey) -> bool:
        data = key.public_data
        return any(k.public_data == data for k in self.keys)


@dataclass(frozen=True)
class Operators:
    """A loaded operators file; ``stamp`` tells whether the file changed since."""

    path: Path
    operators: dict[str, Operator]
    limits: Limits
    stamp: tuple[int, int, int, int]

    def match(self, username: str, key: asyncssh.SSHKey) -> Operator | None:
        """The operator ``username`` if ``key`` is one of theirs, else None."""
        op = self.operators.get(username)
        return op if op is not None and op.has_key(key) else None


_SHAPE = Shape("the operators file", frozenset({"operators", "limits"}), {
    "operators": Shape("the operators list", items=Shape("an operator", frozenset({"name", "role", "keys"}))),
    "limits": Shape("limits", frozenset(Limits.model_fields)),
})


def _check_chain(given: Path, path: Path) -> None:
    """OperatorsError unless ``path`` and each directory above it are ours or root's and not
    writable by others (a sticky directory excepted)."""
    check_chain(given, path, what="operators file", why="the file says who may act on the fleet",
                untrusted=OperatorsError, unreadable=OperatorsError)


def file_stamp(path: Path) -> tuple[int, int, int, int] | None:
    """(device, inode, size, mtime in ns) of the file ``path`` names, None if it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read(given: Path) -> tuple[str, tuple[int, int, int, int]]:
    absolute = Path(os.path.abspath(given))
    real = Path(os.path.realpath(given))
    _check_chain(given, absolute)
    if real != absolute:
        _check_chain(given, real)
    try:
        # O_NOFOLLOW: a link swapped in after the check is refused; O_NONBLOCK: a FIFO never hangs us
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise OperatorsError(f"cannot open the operators file {given}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OperatorsError(f"operators file {given} is not a regular file")
        if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
            raise OperatorsError(f"refusing operators file {given}: it changed while it was checked "
                                 f"(owner {owner_words(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o})")
        if st.st_size > MAX_OPERATORS_BYTES:
            raise OperatorsError(f"operators file {given} is {st.st_size} bytes; "
                                 f"the most read is {MAX_OPERATORS_BYTES}")
        chunks: list[bytes] = []
        left = MAX_OPERATORS_BYTES + 1
        while left > 0:
            chunk = os.read(fd, min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:
            raise OperatorsError(f"operators file {given} is larger than {MAX_OPERATORS_BYTES} bytes")
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    try:
        return data.decode("utf-8"), stamp
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise OperatorsError(f"{given}:{line}: the operators file is not UTF-8 text",
                             [Problem(str(given), line, None, None, "not UTF-8 text")]) from None


def _problems_error(problems: list[Problem]) -> OperatorsError:
    return OperatorsError("\n".join(str(p) for p in problems), problems)


def load_operators(path: str | os.PathLike[str]) -> Operators:
    """Read, check and parse the operators file at ``path``; OperatorsError says what and where."""
    given = Path(path)
    text, stamp = _read(given)
    file = str(given)
    try:
        doc = Doc(text, file, _SHAPE, max_values=50_000)
    except InventoryError as exc:
        raise _problems_error(exc.problems) from None
    data: Any = doc.data
    if data is None:
        raise _problems_error([Problem(file, 1, 1, None, "the file is empty; it needs 'operators:' "
                                                         "(a list of {name, role, keys})")])
    if not isinstance(data, dict):
        raise _problems_error([Problem(file, 1, 1, None, "the file must be a mapping with 'operators:'")])
    limits = Limits()
    if "limits" in data:
        try:
            limits = Limits.model_validate(data["limits"] if data["limits"] is not None else {})
        except ValidationError as exc:
            for err in exc.errors(include_input=False, include_url=False):
                doc.problem(("limits", *err["loc"]), _message(err))
    raw = data.get("operators")
    operators: dict[str, Operator] = {}
    owner_of_key: dict[bytes, str] = {}
    if not isinstance(raw, list):
        doc.problem(("operators",), "required: a list of operators, each {name, role, keys}"
                    if raw is None else "must be a list of operators, each {name, role, keys}", key=True)
        raw = []
    for i, item in enumerate(raw):
        where: tuple[Any, ...] = ("operators", i)
        try:
            entry = _Entry.model_validate(item)
        except ValidationError as exc:
            for err in exc.errors(include_input=False, include_url=False):
                doc.problem(where + tuple(err["loc"]), _message(err))
            continue
        if not _NAME.match(entry.name):
            doc.problem(where + ("name",), f"{entry.name!r} is not a login name "
                                           "(lowercase letters, digits, '_', '.', '-'; at most 32)")
            continue
        if entry.name in operators:
            doc.problem(where + ("name",), f"operator {entry.name!r} is listed twice")
            continue
        keys: list[asyncssh.SSHKey] = []
        for j, line in enumerate(entry.keys):
            key = _key(doc, where + ("keys", j), line)
            if key is None:
                continue
            other = owner_of_key.get(key.public_data)
            if other is not None:
                doc.problem(where + ("keys", j), f"this key ({key.get_fingerprint()}) is also {other}'s: "
                                                 "a key must name one operator")
                continue
            owner_of_key[key.public_data] = entry.name
            keys.append(key)
        operators[entry.name] = Operator(entry.name, entry.role, tuple(keys))
    if doc.problems:
        raise _problems_error(doc.problems)
    return Operators(given, operators, limits, stamp)


def _message(err: Any) -> str:
    msg = str(err["msg"])
    if err["type"] == "missing":
        return f"required field {err['loc'][-1]!r} is missing"
    if err["type"] == "extra_forbidden":
        return f"unknown field {err['loc'][-1]!r}"
    if err["type"] == "literal_error" and err["loc"] and err["loc"][-1] == "role":
        return "role must be viewer, operator or admin"
    return msg.removeprefix("Value error, ")


def _key(doc: Doc, where: tuple[Any, ...], line: str) -> asyncssh.SSHKey | None:
    text = line.strip()
    if len(text) > _MAX_KEY_CHARS:
        doc.problem(where, f"a public key line of {len(text)} characters; the most accepted is {_MAX_KEY_CHARS}")
        return None
    if "\n" in text or "\r" in text:
        doc.problem(where, "one public key per entry, on one line")
        return None
    first = text.split(None, 1)[0] if text else ""
    if first and not (first.startswith(("ssh-", "ecdsa-", "sk-"))):
        doc.problem(where, f"expected an OpenSSH public key line ('ssh-ed25519 AAAA... comment'), "
                           f"not one starting {first[:20]!r} (authorized_keys options are not supported)")
        return None
    try:
        key = asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError) as exc:
        doc.problem(where, f"not a public key asyncssh can read: {exc}")
        return None
    if getattr(key, "algorithm", b"").startswith(b"ssh-dss"):
        doc.problem(where, "DSA keys are refused (OpenSSH dropped them); use ed25519")
        return None
    return key
