"""A hostile Redfish BMC: what it answers becomes that node's error, never a crash or gigabytes.

A small HTTP/1.1 server on loopback (plain asyncio, so it can misbehave in ways a
framework would not let it: endless, trickling, lying Content-Length, gzip bombs)
serves a valid little Redfish tree, and then, for the ComputerSystem, whatever the
test asks for.  The real :class:`~console.drivers.redfish.RedfishDriver` reads it.
Memory is measured with tracemalloc's peak (independent of what earlier tests grew
the process to); no test asserts wall-clock speed.
"""

from __future__ import annotations

import asyncio
import copy
import gzip
import json
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from console.drivers.redfish import RedfishDriver
from console.drivers.redfish_http import MAX_BODY, MAX_DEPTH, load_json
from console.drivers.redfish_values import MAX_STRING
from console.errors import DriverError, ProtocolError, Timeout
from console.live.fleet import Fleet
from console.live.poller import PollConfig, Poller
from console.secrets import Secret, Secrets
from inventory.loader import load_site_text
from inventory.model import Bmc

ADDRESS = "127.0.0.1"
SYSTEM = "/redfish/v1/Systems/1"
MiB = 1024 * 1024


def tree() -> dict[str, Any]:
    """A small valid Redfish service: root, one system, chassis, manager, sensors, a SEL."""
    def link(uri: str) -> dict[str, str]:
        return {"@odata.id": uri}

    return {
        "/redfish/v1": {"@odata.id": "/redfish/v1", "Id": "RootService", "Vendor": "Hostile",
                        "Systems": link("/redfish/v1/Systems"), "Chassis": link("/redfish/v1/Chassis")},
        "/redfish/v1/Systems": {"Members": [link(SYSTEM)], "Members@odata.count": 1},
        SYSTEM: {
            "@odata.id": SYSTEM, "Id": "1", "PowerState": "On", "Manufacturer": "Hostile", "Model": "X1",
            "SerialNumber": "S1", "UUID": "00000000-0000-0000-0000-000000000001", "BiosVersion": "1.0",
            "Status": {"State": "Enabled", "Health": "OK", "HealthRollup": "OK"},
            "Boot": {"BootSourceOverrideEnabled": "Disabled", "BootSourceOverrideTarget": "None"},
            "Links": {"Chassis": [link("/redfish/v1/Chassis/1")], "ManagedBy": [link("/redfish/v1/Managers/1")]},
            "EthernetInterfaces": link(f"{SYSTEM}/EthernetInterfaces"),
            "LogServices": link(f"{SYSTEM}/LogServices"),
            "Actions": {"#ComputerSystem.Reset": {"target": f"{SYSTEM}/Actions/ComputerSystem.Reset",
                                                  "ResetType@Redfish.AllowableValues": ["On", "ForceOff"]}},
        },
        f"{SYSTEM}/EthernetInterfaces": {"Members": [link(f"{SYSTEM}/EthernetInterfaces/1")]},
        f"{SYSTEM}/EthernetInterfaces/1": {"Id": "1", "MACAddress": "52:54:00:00:00:01"},
        f"{SYSTEM}/LogServices": {"Members": [link(f"{SYSTEM}/LogServices/SEL")]},
        f"{SYSTEM}/LogServices/SEL": {"Id": "SEL", "Entries": link(f"{SYSTEM}/LogServices/SEL/Entries")},
        f"{SYSTEM}/LogServices/SEL/Entries": {"Members": [
            {"@odata.id": f"{SYSTEM}/LogServices/SEL/Entries/1", "Id": "1", "Severity": "Warning",
             "Message": "Fan 1 low", "Created": "2024-01-01T00:00:00Z", "SensorType": "Fan"}]},
        "/redfish/v1/Chassis": {"Members": [link("/redfish/v1/Chassis/1")]},
        "/redfish/v1/Chassis/1": {"Id": "1", "Thermal": link("/redfish/v1/Chassis/1/Thermal"),
                                  "Power": link("/redfish/v1/Chassis/1/Power")},
        "/redfish/v1/Chassis/1/Thermal": {
            "Temperatures": [{"Name": "CPU", "ReadingCelsius": 40, "UpperThresholdCritical": 90,
                              "Status": {"State": "Enabled", "Health": "OK"}}],
            "Fans": [{"Name": "Fan1", "Reading": 5000, "ReadingUnits": "RPM", "Status": {"Health": "OK"}}]},
        "/redfish/v1/Chassis/1/Power": {
            "Voltages": [{"Name": "12V", "ReadingVolts": 12.1}],
            "PowerControl": [{"Name": "System", "PowerConsumedWatts": 300}]},
        "/redfish/v1/Managers/1": {"Id": "1", "FirmwareVersion": "9.9"},
    }


Answer = Callable[[asyncio.StreamWriter], Any]  # writes a whole HTTP response (may never end)


class HostileBmc:
    """An HTTP/1.1 server on 127.0.0.1:0.  ``docs`` are served as JSON; ``answers[path]``
    replaces a path's answer with a coroutine writing raw bytes."""

    def __init__(self) -> None:
        self.docs = tree()
        self.answers: dict[str, Answer] = {}
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self.connections: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._connection, ADDRESS, 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.connections):
            task.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)
        await self.server.wait_closed()

    def bmc(self) -> Bmc:
        return Bmc(protocol="redfish", address=ADDRESS, port=self.port, scheme="http", username="admin",
                   password="env:UNUSED", verify_tls=False)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:] if ":" in x)}
                if int(headers.get("content-length", 0)):
                    await reader.readexactly(int(headers["content-length"]))
                path = target.split("?", 1)[0].rstrip("/") or "/"
                if path in self.answers and method == "GET":
                    await self.answers[path](writer)
                elif path in self.docs and method == "GET":
                    await send(writer, json.dumps(self.docs[path]).encode())
                else:
                    await send(writer, b'{"error": {"code": "Base.1.0.ResourceMissingAtURI"}}', status="404 Not Found")
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass  # stop(): end quietly (asyncio's stream protocol logs a task that ends cancelled)
        finally:
            writer.close()
            self.connections.discard(asyncio.current_task())  # type: ignore[arg-type]


async def send(writer: asyncio.StreamWriter, body: bytes, *, status: str = "200 OK",
               headers: str = "Content-Type: application/json\r\n") -> None:
    writer.write(f"HTTP/1.1 {status}\r\n{headers}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()


def raw(data: bytes) -> Answer:
    """A 200 with ``data`` as the JSON body."""
    return lambda writer: send(writer, data)


def chunked(total: int | None, chunk: bytes = b"[" + b"0," * 32767) -> Answer:
    """A chunked body of ``total`` bytes (None: endless), no Content-Length."""
    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        sent = 0
        while total is None or sent < total:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    return answer


def lying_length(claimed: int) -> Answer:
    """A Content-Length of ``claimed`` bytes, then the bytes, 1 MiB at a time."""
    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % claimed)
        block = b" " * MiB
        for _ in range(claimed // MiB):
            writer.write(block)
            await writer.drain()
    return answer


def trickle(interval: float) -> Answer:
    """A valid-looking body that comes one byte per ``interval`` seconds, for ever."""
    async def answer(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{")
        while True:
            await asyncio.sleep(interval)
            writer.write(b" ")
            await writer.drain()
    return answer


def gzip_bomb(size: int) -> Answer:
    """``size`` bytes of JSON whitespace, gzip-compressed (about a thousandth of that on the wire)."""
    packed = gzip.compress(b"[" + b" " * size + b"]", 9)
    return lambda writer: send(writer, packed, headers="Content-Type: application/json\r\nContent-Encoding: gzip\r\n")


@pytest.fixture
async def bmc() -> AsyncIterator[HostileBmc]:
    server = HostileBmc()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def driver(bmc: HostileBmc) -> AsyncIterator[Callable[..., RedfishDriver]]:
    made: list[RedfishDriver] = []

    def make(timeout: float = 5.0) -> RedfishDriver:
        d = RedfishDriver(bmc.bmc(), Secret("pw"), timeout=timeout)
        made.append(d)
        return d

    yield make
    for d in made:
        await d.close()


async def peak_memory(call: Callable[[], Any]) -> tuple[BaseException | None, int]:
    """Run ``await call()``; its exception (or None) and the peak Python memory it allocated."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        try:
            await call()
            error = None
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            error = exc
        return error, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


# --------------------------------------------------------------------------- the cases
CASES = {
    # name: (answer for the ComputerSystem, error class, words in the message)
    "endless body": (chunked(None), ProtocolError, "response body over 4 MiB"),
    "100 MB chunked": (chunked(100 * MiB), ProtocolError, "response body over 4 MiB"),
    "100 MB Content-Length": (lying_length(100 * MiB), ProtocolError, "response body over 4 MiB"),
    "gzip bomb": (gzip_bomb(100 * MiB), ProtocolError, "response body over 4 MiB"),
    "100k deep": (raw(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"), ProtocolError,
                  f"nests deeper than {MAX_DEPTH} levels"),
    "deep objects": (raw(b'{"a":' * 5000 + b"1" + b"}" * 5000), ProtocolError, "nests deeper than"),
    "invalid UTF-8": (raw(b'{"PowerState": "On\xff\xfe"}'), ProtocolError, "not UTF-8"),
    "not JSON": (raw(b"<html>hello</html>"), ProtocolError, "not valid JSON"),
    "a list": (raw(b'["On"]'), ProtocolError, "JSON list, not an object"),
    "a million tiny objects": (raw(b"[" + b"{}," * 1_000_000 + b"{}]"), ProtocolError, "more than 100000"),
    "a 5000-digit number": (raw(b'{"PowerState": ' + b"9" * 5000 + b"}"), ProtocolError, "not valid JSON"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_hostile_system_answer_is_the_nodes_error_in_bounded_memory(bmc, driver, case):
    answer, error, words = CASES[case]
    bmc.answers[SYSTEM] = answer
    d = driver()
    got, peak = await peak_memory(d.power_state)
    assert isinstance(got, error), repr(got)
    assert str(got).startswith(f"{ADDRESS}: GET {SYSTEM}") and words in str(got), str(got)
    assert peak < 64 * MiB, f"{case}: peak {peak / MiB:.0f} MiB"
    # the driver is still usable: a BMC that recovers is read again
    del bmc.answers[SYSTEM]
    assert (await d.power_state()).value == "on"


async def test_a_trickling_body_ends_at_the_requests_deadline(bmc, driver):
    bmc.answers[SYSTEM] = trickle(0.02)  # every byte well within httpx's per-read timeout
    d = driver(timeout=0.5)
    with pytest.raises(Timeout, match=rf"^{ADDRESS}: GET {SYSTEM} took longer than 0.5 s"):
        await d.power_state()


async def test_an_error_status_with_a_deep_body_is_still_a_clean_error(bmc, driver):
    async def deep_500(writer: asyncio.StreamWriter) -> None:
        await send(writer, b"[" * 200_000 + b"]" * 200_000, status="500 Internal Server Error")
    bmc.answers[SYSTEM] = deep_500
    with pytest.raises(ProtocolError, match=rf"^{ADDRESS}: GET {SYSTEM} answered HTTP 500$"):
        await driver().power_state()


def test_load_json_checks_depth_outside_strings_only():
    assert load_json(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "b": "\\"[["}') == {
        "a": "[" * 50, "b": '"[['}
    assert load_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    with pytest.raises(ValueError, match="deeper"):
        load_json(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    assert MAX_BODY == 4 * MiB


@pytest.mark.timeout(30)
@pytest.mark.parametrize("body", [
    b'"' + b'\\"' * 1_000_000,          # one string that never ends, full of escaped quotes
    b'{"a": "' + b'x\\' * 1_000_000,     # ... ending in a lone backslash
    b'[' + b'"\\"",' * 300_000 + b'"]',  # many strings, the last one unterminated
], ids=["escaped-quotes", "trailing-backslash", "many-strings"])
def test_an_unterminated_string_is_one_pass_not_one_per_quote(body: bytes):
    """Each quote inside an unterminated string used to start a fresh scan to the end of the
    body: a 200 KB answer held the poller's loop for 85 s (4 MiB: hours).  Now it is one pass;
    the time limit only catches a return of the quadratic scan, it measures nothing."""
    with pytest.raises(ValueError, match="not valid JSON"):
        load_json(body)


# --------------------------------------------------------------------------- wrong types in fields
def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path inside a resource."""
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append(prefix + (k,))
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append(prefix + (i,))
            out += _paths(v, prefix + (i,))
    return out


def _replaced(doc: Any, path: tuple, value: Any) -> Any:
    doc = copy.deepcopy(doc)
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return doc


#: a string 16 times the longest the driver takes (a megabyte one has its own test below: here
#: it would be sent and parsed some 700 times)
WRONG = {"a list": ["On", {"x": 1}], "an object": {"@odata.id": ["x"]}, "a number": 7, "true": True,
         "a huge string": "M" * (16 * MAX_STRING)}


@pytest.mark.parametrize("uri", list(tree()))  # one test per resource: they spread over the workers
async def test_every_field_of_the_wrong_type_is_a_node_error_naming_the_bmc(bmc, driver, uri):
    """Each property of the resource, replaced by a value of every wrong type: each BmcDriver
    call either works or raises a DriverError that names the BMC; nothing else escapes."""
    good = tree()
    doc = good[uri]
    tried = 0
    for path in _paths(doc):
        for what, value in WRONG.items():
            bmc.docs = {**good, uri: _replaced(doc, path, value)}
            d = driver()
            for call in (d.power_state, d.health, d.boot_override, d.sensors, d.events, d.identity):
                try:
                    result = await call()
                except DriverError as exc:
                    assert str(exc).startswith(f"{ADDRESS}:"), (uri, path, what, str(exc))
                    assert "unexpected answer" not in str(exc), (uri, path, what, str(exc))  # no check missed
                else:
                    assert len(repr(result)) < 100_000, (uri, path, what, call.__name__)
                tried += 1
            await d.close()
    assert tried == 6 * len(WRONG) * len(_paths(doc)) > 0


def test_every_resource_has_fields_to_replace():
    """The cases above add up to more than a thousand calls, none of them on an empty resource."""
    counts = {uri: len(_paths(doc)) for uri, doc in tree().items()}
    assert all(counts.values()), counts
    assert 6 * len(WRONG) * sum(counts.values()) > 1000


async def test_a_one_megabyte_model_is_an_error_of_identity_only(bmc, driver):
    bmc.docs[SYSTEM]["Model"] = "M" * MiB
    d = driver()
    assert (await d.power_state()).value == "on"
    with pytest.raises(ProtocolError, match=rf"^{ADDRESS}: ComputerSystem.Model is 1048576 characters long"):
        await d.identity()


async def test_a_power_state_list_is_a_node_error(bmc, driver):
    bmc.docs[SYSTEM]["PowerState"] = ["On"]
    with pytest.raises(ProtocolError, match=rf"^{ADDRESS}: ComputerSystem.PowerState is a list, not a string"):
        await driver().power_state()


# --------------------------------------------------------------------------- through the poller
async def test_poller_marks_the_hostile_node_and_polls_the_good_one(bmc, redfish_lab):
    """``status``'s path: one poller, a good lab BMC and a hostile one sending an endless body."""
    from console.lab.machine import Machine, MachineSpec

    good = Machine(MachineSpec(name="good", mac="52:54:00:83:00:01", bmc_address="127.83.0.1",
                               host_address="127.84.0.1", image=("flatcar", "3815.2.0")),
                   loop=asyncio.get_running_loop(), time_scale=0.01)
    redfish_lab.add(good, "127.83.0.1", 0, scheme="http", username="admin", password="pw", flavor="dmtf")
    port = (await redfish_lab.start())["good"]
    site = load_site_text(
        "site: hostile\ndefaults:\n  bmc: {protocol: redfish, username: admin, password: env:HOSTILE_PW,"
        " scheme: http, verify_tls: false}\nracks:\n  - name: r1\n    nodes:\n"
        f"      - {{name: good, bmc: {{address: 127.83.0.1, port: {port}}}}}\n"
        f"      - {{name: evil, bmc: {{address: {ADDRESS}, port: {bmc.port}}}}}\n")
    bmc.answers[SYSTEM] = chunked(None)
    fleet = Fleet(site)
    poller = Poller(site, fleet, Secrets(environ={"HOSTILE_PW": "pw"}), PollConfig(timeout=5.0, min_interval=0.0))
    try:
        got, peak = await peak_memory(lambda: poller.sweep(("power", "identity"), switches=False))
        assert got is None
    finally:
        await poller.aclose()
    assert fleet.nodes["good"].power == "on" and fleet.nodes["good"].error is None
    assert fleet.nodes["evil"].power == "unknown"
    assert fleet.nodes["evil"].error == (f"protocol error: {ADDRESS}: GET {SYSTEM}: response body over 4 MiB")
    assert peak < 64 * MiB
