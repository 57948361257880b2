"""The site service's local protocol: newline-delimited JSON over a unix socket.

Every line is one message, a pydantic model with a ``type`` discriminator
(:data:`Message`).  A client opens with :class:`Hello` (its :data:`PROTOCOL_VERSION`
and, when the SSH front door started it, a session token); the service answers
:class:`Welcome` (who it decided the client is) or :class:`Refused` (why, e.g. another
protocol version, naming both) and closes.

Requests carry an ``id``; the service answers each with one :class:`Reply` of that
``id``.  Unasked, the service sends :class:`States` (after :class:`Subscribe`: a
snapshot in chunks, ``snapshot_done`` on the last, then what changed), :class:`Progress`
and :class:`JobEnded` for the runs a client follows, and :class:`Bye` when it stops.

Serial consoles (:mod:`console.service.consoles`): :class:`ConsoleOpen` is answered by a
:class:`ConsoleOpened` (state and history) before its Reply, then :class:`ConsoleOutput`
and :class:`ConsoleEventMsg` as they happen; :class:`ConsoleAcquire`, :class:`ConsoleWrite`,
:class:`ConsoleBreak`, :class:`ConsoleResize`, :class:`ConsoleRelease` and
:class:`ConsoleClose` act on it.  Console bytes cross as base64.

Limits: a line is at most :data:`MAX_LINE` bytes (a longer one ends the connection;
snapshots are chunked well below it); each client's outgoing queue holds at most
:data:`QUEUE_MAX` messages (a client that falls that far behind is dropped, with a
reason, rather than slowing the service).  Node and switch states cross as JSON and
are validated on the way in (:func:`node_states`, :func:`switch_states`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from console.live.fleet import NodeActivity, NodeState, SwitchState
from console.service.address import OPERATOR_ENV, SERVICE_ENV, TOKEN_ENV, socket_path
from console.service.identity import Role

__all__ = ["PROTOCOL_VERSION", "MAX_LINE", "QUEUE_MAX", "CHUNK_NODES", "Message", "Hello", "Welcome", "Refused",
           "Subscribe", "States", "PollNode", "PollSwitch", "PlanAction", "RunPlan", "Cancel", "Follow", "Jobs",
           "Who", "Reply", "Progress", "JobEnded", "Bye", "encode", "decode", "ProtocolError", "socket_path",
           "node_states", "switch_states", "dump_node", "dump_switch", "dump_activity", "activities",
           "SERVICE_ENV", "TOKEN_ENV", "OPERATOR_ENV", "CONSOLE_CHUNK", "CONSOLE_REQUESTS", "ConsoleOpen",
           "ConsoleClose", "ConsoleAcquire", "ConsoleRelease", "ConsoleWrite", "ConsoleBreak", "ConsoleResize",
           "ConsoleOpened", "ConsoleOutput", "ConsoleEventMsg"]

#: bumped on any change a client of the other version would misread
PROTOCOL_VERSION = 2
#: the longest line either side accepts (bytes, newline included)
MAX_LINE = 1 << 20
#: messages waiting for one client before it counts as too slow and is dropped
QUEUE_MAX = 2000
#: nodes per States message of a snapshot (a node's JSON is a few hundred bytes to a few KiB)
CHUNK_NODES = 100



class ProtocolError(Exception):
    """A line that is not a message of this protocol (the text says why)."""


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str


# ---------------------------------------------------------------- opening
class Hello(_Msg):
    type: Literal["hello"] = "hello"
    version: int
    client: str = Field("cli", max_length=64)  # tui, cli, ssh-exec: for "who"
    token: str | None = None
    pid: int | None = None


class IdentityModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    role: Role
    via: str


class Welcome(_Msg):
    type: Literal["welcome"] = "welcome"
    version: int
    site: str
    pid: int
    identity: IdentityModel
    session: str


class Refused(_Msg):
    type: Literal["refused"] = "refused"
    reason: str


# ---------------------------------------------------------------- requests
class Subscribe(_Msg):
    type: Literal["subscribe"] = "subscribe"
    id: int


class PollNode(_Msg):
    type: Literal["poll_node"] = "poll_node"
    id: int
    name: str
    jobs: list[str] = Field(default_factory=lambda: ["power"])


class PollSwitch(_Msg):
    type: Literal["poll_switch"] = "poll_switch"
    id: int
    name: str


class PlanAction(_Msg):
    """Make a plan (``kind`` power, pxe or reimage) in the service; the Reply has it."""

    type: Literal["plan"] = "plan"
    id: int
    kind: Literal["power", "pxe", "reimage"]
    names: list[str]
    power_action: str | None = None
    image: str | None = None
    ticket: str | None = None
    force_protected: bool = False
    force: bool = False
    timeout: float = 10.0
    power_timeout: float = 120.0
    soft_timeout: float = 300.0
    hard_after: float | None = None


class RunPlan(_Msg):
    """Run a plan this client made (confirmed); progress follows to this client."""

    type: Literal["run"] = "run"
    id: int
    plan_id: str
    options: dict[str, Any] = Field(default_factory=dict)  # RunOptions fields
    #: typed at confirmation (after the plan was made): goes with every journal entry
    ticket: str | None = None


class Cancel(_Msg):
    type: Literal["cancel"] = "cancel"
    id: int
    plan_id: str
    rollback: bool | None = None


class Follow(_Msg):
    """Follow a running job's progress (a client back after a dropped connection)."""

    type: Literal["follow"] = "follow"
    id: int
    plan_id: str


class Jobs(_Msg):
    type: Literal["jobs"] = "jobs"
    id: int


class Who(_Msg):
    type: Literal["who"] = "who"
    id: int


# ---------------------------------------------------------------- from the service
class Reply(_Msg):
    type: Literal["reply"] = "reply"
    id: int
    ok: bool = True
    error: str | None = None
    data: dict[str, Any] | None = None


class States(_Msg):
    type: Literal["states"] = "states"
    nodes: list[dict[str, Any]] = Field(default_factory=list)
    switches: list[dict[str, Any]] = Field(default_factory=list)
    #: node -> what is being done to it (None: nothing any more)
    activity: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    last_sweep_at: float | None = None
    snapshot_done: bool = False


class Progress(_Msg):
    type: Literal["progress"] = "progress"
    plan_id: str
    node: dict[str, Any]  # NodeProgress.to_json()


class JobEnded(_Msg):
    type: Literal["job_ended"] = "job_ended"
    plan_id: str
    summary: str
    ok: bool
    result: dict[str, Any] | None = None  # RunResult.to_json()
    error: str | None = None


class Bye(_Msg):
    type: Literal["bye"] = "bye"
    reason: str


# ---------------------------------------------------------------- serial consoles
#: the most raw bytes one console_write or console_output carries (base64 in the JSON)
CONSOLE_CHUNK = 32 * 1024
_NODE_NAME = Field(min_length=1, max_length=256)


class ConsoleOpen(_Msg):
    """Watch ``node``'s console (the service's one session per node): a ConsoleOpened (state
    and history) comes before the Reply, then ConsoleOutput and ConsoleEvent as they happen."""

    type: Literal["console_open"] = "console_open"
    id: int
    node: str = _NODE_NAME


class ConsoleClose(_Msg):
    """Stop watching ``node``'s console (letting it go when this client held it)."""

    type: Literal["console_close"] = "console_close"
    id: int
    node: str = _NODE_NAME


class ConsoleAcquire(_Msg):
    """Become the console's one writer (``force``: take it over, the admin role)."""

    type: Literal["console_acquire"] = "console_acquire"
    id: int
    node: str = _NODE_NAME
    force: bool = False


class ConsoleRelease(_Msg):
    type: Literal["console_release"] = "console_release"
    id: int
    node: str = _NODE_NAME


class ConsoleWrite(_Msg):
    """Keys for the node (``data``: base64, at most :data:`CONSOLE_CHUNK` bytes); the holder only."""

    type: Literal["console_write"] = "console_write"
    id: int
    node: str = _NODE_NAME
    data: str = Field(max_length=4 * CONSOLE_CHUNK // 3 + 4)


class ConsoleBreak(_Msg):
    type: Literal["console_break"] = "console_break"
    id: int
    node: str = _NODE_NAME


class ConsoleResize(_Msg):
    type: Literal["console_resize"] = "console_resize"
    id: int
    node: str = _NODE_NAME
    cols: int = Field(ge=1, le=1000)
    rows: int = Field(ge=1, le=1000)


class ConsoleOpened(_Msg):
    """The console as it is when this client starts watching: ``history`` (base64) is what the
    node printed before; ``holder_is_you``: this client holds it."""

    type: Literal["console_opened"] = "console_opened"
    node: str
    description: str
    state: str
    holder: str | None = None
    holder_is_you: bool = False
    error: str | None = None
    history: str = ""


class ConsoleOutput(_Msg):
    """What the node printed (``data``: base64); ``dropped``: bytes left out before it because
    this client read too slowly."""

    type: Literal["console_output"] = "console_output"
    node: str
    data: str = ""
    dropped: int = 0


class ConsoleEventMsg(_Msg):
    """Something happened to the console (attach, detach, takeover, lost, reconnected, busy,
    closed); its state after it; ``who_is_you`` / ``holder_is_you``: that is this client."""

    type: Literal["console_event"] = "console_event"
    node: str
    kind: str
    who: str | None = None
    who_is_you: bool = False
    detail: str = ""
    time: float = 0.0
    state: str
    holder: str | None = None
    holder_is_you: bool = False
    error: str | None = None


#: the requests the service's consoles answer (console/service/consoles.py)
CONSOLE_REQUESTS = (ConsoleOpen, ConsoleClose, ConsoleAcquire, ConsoleRelease, ConsoleWrite, ConsoleBreak,
                    ConsoleResize)


Message = Annotated[
    Hello | Welcome | Refused | Subscribe | PollNode | PollSwitch | PlanAction | RunPlan | Cancel | Follow | Jobs
    | Who | Reply | States | Progress | JobEnded | Bye
    | ConsoleOpen | ConsoleClose | ConsoleAcquire | ConsoleRelease | ConsoleWrite | ConsoleBreak | ConsoleResize
    | ConsoleOpened | ConsoleOutput | ConsoleEventMsg,
    Field(discriminator="type"),
]
_MESSAGE: TypeAdapter[Any] = TypeAdapter(Message)


def encode(message: _Msg) -> bytes:
    """One line of JSON (ASCII: any control character in a value is escaped)."""
    line = message.model_dump_json().encode() + b"\n"
    if len(line) > MAX_LINE:
        raise ProtocolError(f"a {message.type} message of {len(line)} bytes is over the {MAX_LINE}-byte limit")
    return line


def decode(line: bytes) -> Any:
    """The message on ``line``; ProtocolError (one line of text) if it is none."""
    if len(line) > MAX_LINE:
        raise ProtocolError(f"a line of {len(line)} bytes is over the {MAX_LINE}-byte limit")
    try:
        return _MESSAGE.validate_json(line)
    except ValidationError as exc:
        errors = exc.errors()
        where = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
        why = errors[0]["msg"] if errors else "invalid"
        raise ProtocolError(f"not a message of protocol {PROTOCOL_VERSION}: {where or 'line'}: {why}") from None


# ---------------------------------------------------------------- states as JSON
_HISTORY = {"transitions", "since", "observed", "known"}
_NODE: TypeAdapter[NodeState] = TypeAdapter(NodeState)
_SWITCH: TypeAdapter[SwitchState] = TypeAdapter(SwitchState)
_ACTIVITY: TypeAdapter[NodeActivity] = TypeAdapter(NodeActivity)


def dump_node(st: NodeState) -> dict[str, Any]:
    """A node's state as JSON, without its history (each Fleet keeps what it saw itself)."""
    return _NODE.dump_python(st, mode="json", exclude=_HISTORY)


def dump_switch(sw: SwitchState) -> dict[str, Any]:
    return _SWITCH.dump_python(sw, mode="json")


def dump_activity(activity: NodeActivity | None) -> dict[str, Any] | None:
    return None if activity is None else _ACTIVITY.dump_python(activity, mode="json")


def node_states(raw: list[dict[str, Any]]) -> dict[str, NodeState]:
    """Validated NodeStates (ProtocolError naming the first bad one)."""
    out: dict[str, NodeState] = {}
    for item in raw:
        try:
            st = _NODE.validate_python(item)
        except ValidationError as exc:
            raise ProtocolError(f"a node state that does not validate: {exc.errors()[0].get('msg')}") from None
        out[st.name] = st
    return out


def switch_states(raw: list[dict[str, Any]]) -> dict[str, SwitchState]:
    out: dict[str, SwitchState] = {}
    for item in raw:
        try:
            sw = _SWITCH.validate_python(item)
        except ValidationError as exc:
            raise ProtocolError(f"a switch state that does not validate: {exc.errors()[0].get('msg')}") from None
        out[sw.name] = sw
    return out


def activities(raw: dict[str, dict[str, Any] | None]) -> dict[str, NodeActivity | None]:
    out: dict[str, NodeActivity | None] = {}
    for name, item in raw.items():
        try:
            out[name] = None if item is None else _ACTIVITY.validate_python(item)
        except ValidationError:
            raise ProtocolError(f"an activity of node {name!r} that does not validate") from None
    return out
