"""The root of the error hierarchy, and the errors the inventory layer raises.

::

    FleetError              base: every error fleet-console raises on purpose
    ├── InventoryError      a site file is wrong: every problem found, each located (Problem)
    ├── SelectionError      a node selection is malformed or matches nothing
    ├── RangeError          a node range is malformed or too large (inventory.ranges; also a ValueError)
    ├── SiteNotFound        no site file of that name in the trusted places
    └── SecretError         a credential reference cannot be resolved (raised by console.secrets)

The engine's errors (drivers, lab, actions, locks, boot server) derive from
:class:`FleetError` too; :mod:`console.errors` draws the whole tree.  They live
there because the inventory layer must not know about the engine.

Each error has a short ``title`` for the UI and a ``detail`` for logs; ``str()`` is
the one-line message an operator reads.
"""

from __future__ import annotations

from dataclasses import dataclass


class FleetError(Exception):
    """Base of every error fleet-console raises deliberately."""

    title = "error"

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or message


@dataclass(frozen=True)
class Problem:
    """One located problem in a site file."""

    file: str
    line: int | None
    column: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class InventoryError(FleetError):
    """A site file is invalid; carries every problem found, each located."""

    title = "invalid inventory"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        first = self.problems[0] if self.problems else None
        self.file = first.file if first else None
        self.line = first.line if first else None
        self.column = first.column if first else None
        self.field = first.field if first else None
        super().__init__("\n".join(str(p) for p in self.problems))


class SelectionError(FleetError):
    """A node selection (noderange) is malformed or selects nothing."""

    title = "bad selection"


class SiteNotFound(FleetError):
    """No site file by that name on the search path."""

    title = "site not found"


class SecretError(FleetError):
    """A credential reference cannot be resolved (never includes the secret)."""

    title = "credential problem"
