"""Terminal and markup injection: what BMCs, switches, files and the environment say is shown as text.

A hostile site of its own, on loopback: a Redfish BMC whose Model is ``[/]``, whose
Manufacturer is ``[bold red]x``, whose serial number, sensor and event log carry ESC
sequences (an OSC that sets the terminal title, a CSI that clears the screen), a
C1 CSI and a bidi override; a second "BMC" (a small HTTP server) that answers
every request with HTTP 500 and a Redfish error whose MessageId carries the same;
and an SNMP switch whose sysDescr, port name and LLDP neighbour name do too.  The
console must keep running, show the literal text with the control characters made
visible (``^[``, ``\\x9b``, ``\\u202e``), and never write one of them to the terminal:
not in the TUI, not in any CLI output, not in ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import socket
import threading

import pytest
from aiohttp import web
from rich.console import Console
from textual.widgets import DataTable, Static

from console.cli import act_commands, commands
from console.cli.main import SiteContext
from console.lab.machine import Machine, MachineSpec, SelEvent, SensorReading
from console.lab.redfish_bmc import RedfishLab
from console.lab.snmp_agent import SnmpLab, SwitchPort, SwitchSpec
from console.live.poller import NODE_JOBS, PollConfig
from console.ops.journal import Journal, current_operator
from console.secrets import Secrets
from console.site import load as load_site
from console.text import visible
from screens.app import make_app

#: an OSC that sets the terminal's title, then a CSI that clears the screen
TITLE = "\x1b]0;PWNED-TITLE\x07\x1b[2J"
TITLE_SHOWN = "^[]0;PWNED-TITLE^G^[[2J"
#: a C1 CSI (one character) and a right-to-left override
C1, RLO = "\x9b", "\u202e"
#: what must never reach a terminal from the data
RAW = ("\x1b", "\x07", C1, RLO)

MODEL = "[/]"
VENDOR = "[bold red]x"
SERIAL = f"SN{TITLE}1"
SENSOR = f"[/]FAN{C1}9"
EVENT = f"{TITLE}[/] fan {RLO}stopped"
MESSAGE_ID = f"Base.1.0.{TITLE}[/]"  # the error's text keeps what follows the last dot
DESCR = f"[bold]ToR {TITLE}"
PORT = f"Eth[/]1{RLO}"
LLDP_NAME = f"peer{TITLE}"
OPERATOR = f"[/]{TITLE}"

GOOD, BAD = "evil-n01", "evil-n02"
USER, PASSWORD, COMMUNITY = "admin", "lab-password-1", "lab-community"
TIMEOUT = 5.0


class HostileMachine(Machine):
    """A lab machine whose BMC reports a hostile sensor name and event message."""

    def sensors(self) -> list[SensorReading]:
        return [*super().sensors(), SensorReading(SENSOR, "fan", "RPM", 0.0, 500.0, 1000.0, None, None)]

    def events(self) -> list[SelEvent]:
        return [*super().events(), SelEvent(900, self.clock(), "critical", f"[b]{RLO}FAN", "Fan", EVENT)]


def _wire(text: str) -> str:
    """``text`` as the lab's SNMP agent must be given it to send its UTF-8 bytes (it
    encodes an OctetString's characters as Latin-1, one byte each)."""
    return text.encode().decode("latin-1")


async def _error_bmc(address: str) -> tuple[web.AppRunner, int]:
    """A "BMC" answering every request with HTTP 500 and a hostile Redfish MessageId."""

    async def answer(request: web.Request) -> web.Response:
        body = {"error": {"code": MESSAGE_ID, "message": TITLE}}
        return web.Response(status=500, text=json.dumps(body), content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    sock = socket.socket()
    sock.bind((address, 0))
    await web.SockSite(runner, sock).start()
    return runner, sock.getsockname()[1]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, private_runtime_dir):
    """(site file, SiteContext) of the hostile site; its servers run on a loop of their own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="hostile-lab", daemon=True)
    thread.start()

    def run(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

    redfish, snmp = RedfishLab(), SnmpLab()
    error_runner = None
    try:
        async def build():
            spec = MachineSpec(name=GOOD, mac="52:54:00:77:00:01", bmc_address="127.77.1.1",
                               host_address="127.77.2.1", serial_number=SERIAL, vendor=VENDOR, model=MODEL)
            machine = HostileMachine(spec, asyncio.get_running_loop(), time_scale=0.01)
            redfish.add(machine, "127.77.1.1", 0, scheme="http", username=USER, password=PASSWORD)
            snmp.add(SwitchSpec(name="tor1", address="127.77.0.1", port=0, community=COMMUNITY, sys_descr=DESCR,
                                ports=[SwitchPort(1, _wire(PORT), alias=f"[/]{TITLE}", node_mac=spec.mac,
                                                  lldp=(spec.mac, "eth0", LLDP_NAME))]))
            return (await redfish.start())[GOOD], (await snmp.start())["tor1"], await _error_bmc("127.77.1.2")

        bmc_port, switch_port, (error_runner, error_port) = run(build())
        path = tmp_path_factory.mktemp("hostile-site") / "hostile.yaml"
        path.write_text(f"""\
site: hostile
defaults:
  bmc: {{protocol: redfish, scheme: http, username: {USER}, password: "env:HOSTILE_BMC_PASSWORD"}}
switches:
  - {{name: tor1, address: 127.77.0.1, port: {switch_port}, snmp: {{version: 2c, community: "env:HOSTILE_SNMP"}}}}
racks:
  - name: r01
    nodes:
      - {{name: {GOOD}, u: 1, mac: "52:54:00:77:00:01", bmc: {{address: 127.77.1.1, port: {bmc_port}}},
         switch_port: {{switch: tor1, port: "Eth1"}}}}
      - {{name: {BAD}, u: 2, bmc: {{address: 127.77.1.2, port: {error_port}}}}}
""")
        secrets = Secrets(environ={"HOSTILE_BMC_PASSWORD": PASSWORD, "HOSTILE_SNMP": COMMUNITY})
        yield path, SiteContext(load_site(str(path)), secrets)
    finally:
        async def stop():
            await redfish.stop()
            await snmp.stop()
            if error_runner is not None:
                await error_runner.cleanup()

        run(stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


@pytest.fixture
def own_state(tmp_path, monkeypatch):
    """A journal of this test's own."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"json": False, "timeout": TIMEOUT, **kw})


def assert_clean(output: str) -> None:
    """No control character from the data in ``output`` (what reached stdout or stderr)."""
    for ch in RAW:
        assert ch not in output, f"{ch!r} reached the terminal: {output!r}"


# ------------------------------------------------------------------ the helper
def test_visible_shows_controls_as_cat_v_does():
    assert visible(TITLE) == TITLE_SHOWN
    assert visible("\x00\x7f\t\n") == "^@^?^I^J"
    assert visible("a\nb", newlines=True) == "a\nb"
    assert visible(f"{C1}x{RLO}y\u2066z\u2028") == "\\x9bx\\u202ey\\u2066z\\u2028"
    assert visible("\udcff") == "\\udcff"  # a lone surrogate (from a bad decode) no encoder writes
    plain = "dal1-r01-n07: ✓ ok [b]x[/b] 12°C"
    assert visible(plain) is plain  # the common case: unchanged, no copy
    assert visible(None) == "" and visible(42) == "42"


def test_operator_from_the_environment_is_made_visible(monkeypatch):
    monkeypatch.setenv("FLEET_OPERATOR", OPERATOR)
    assert current_operator() == f"[/]{TITLE_SHOWN}"


def test_the_journal_file_is_plain_ascii(own_state):
    """A BMC's error text in a journal entry cannot reach the terminal of whoever tails the file."""
    journal = Journal("hostile")
    journal.write(action="power on", node=GOOD, step="power-on", result="failed", error=f"{TITLE}{C1}{RLO} ✗")
    raw = journal.path.read_bytes()
    assert raw.isascii() and b"\x1b" not in raw
    assert json.loads(raw)["error"] == f"{TITLE}{C1}{RLO} ✗"  # the exact text, escaped by JSON


# ------------------------------------------------------------------ CLI
def test_status_shows_hostile_error_text_visibly(hostile, capsys):
    _, ctx = hostile
    assert commands.cmd_status(_args(range=None), ctx) == 1  # the error BMC fails
    out, err = capsys.readouterr()
    assert_clean(out + err)
    bad = next(line for line in out.splitlines() if line.startswith(BAD))
    assert "HTTP 500" in bad and "^[]0;PWNED-TITLE^G^[[2J[/]" in bad


def test_status_json_escapes_every_control_character(hostile, capsys):
    _, ctx = hostile
    commands.cmd_status(_args(range=None, json=True), ctx)
    out, err = capsys.readouterr()
    assert_clean(out + err)
    assert out.isascii()
    records = {r["name"]: r for r in json.loads(out)}
    assert f"{TITLE}[/]" in records[BAD]["error"]  # the exact text, for scripts


def test_events_and_sensors_show_what_the_bmc_said_visibly(hostile, capsys):
    _, ctx = hostile
    assert commands.cmd_events(_args(node=GOOD), ctx) == 0
    out, err = capsys.readouterr()
    assert_clean(out + err)
    assert f"{TITLE_SHOWN}[/] fan \\u202estopped" in out
    assert commands.cmd_sensors(_args(node=GOOD), ctx) == 0
    out, err = capsys.readouterr()
    assert_clean(out + err)
    assert "[/]FAN\\x9b9" in out


def test_events_and_sensors_json_escape_every_control_character(hostile, capsys):
    _, ctx = hostile
    commands.cmd_events(_args(node=GOOD, json=True), ctx)
    commands.cmd_sensors(_args(node=GOOD, json=True), ctx)
    out, err = capsys.readouterr()
    assert_clean(out + err)
    assert out.isascii() and "\\u001b]0;PWNED-TITLE\\u0007" in out


def test_a_failing_node_error_on_stderr_is_visible(hostile, capsys):
    _, ctx = hostile
    assert commands.cmd_events(_args(node=BAD), ctx) == 1
    out, err = capsys.readouterr()
    assert_clean(out + err)
    assert "^[]0;PWNED-TITLE^G" in err


def test_switches_show_what_the_switch_said_visibly(hostile, capsys):
    _, ctx = hostile
    commands.cmd_switches(_args(), ctx)
    out, err = capsys.readouterr()
    assert_clean(out + err)
    assert f"[bold]ToR {TITLE_SHOWN}" in out and "Eth[/]1\\u202e" in out
    commands.cmd_switches(_args(json=True), ctx)
    out, err = capsys.readouterr()
    assert_clean(out + err)
    assert out.isascii() and json.loads(out)[0]["descr"] == DESCR


def test_activity_shows_journal_entries_visibly(hostile, own_state, capsys, monkeypatch):
    path, _ = hostile
    Journal("hostile", operator=OPERATOR).write(action="power on", node=GOOD, step="power-on", result="failed",
                                                error=f"{TITLE} {C1}", ticket=f"INC{RLO}1")
    monkeypatch.setenv("FLEET_OPERATOR", OPERATOR)
    Journal("hostile").write(action="power on", node=GOOD, step="plan", result="started")
    assert act_commands.cmd_activity(_args(site=str(path), node=None, limit=50)) == 0
    out, err = capsys.readouterr()
    assert_clean(out + err)
    assert out.count(f"[/]{TITLE_SHOWN}") == 2 and "INC\\u202e1" in out and "\\x9b" in out
    act_commands.cmd_activity(_args(site=str(path), node=None, limit=50, json=True))
    out, err = capsys.readouterr()
    assert_clean(out + err)
    assert out.isascii() and json.loads(out)[0]["operator"] == OPERATOR


def test_error_messages_show_what_was_given_visibly(tmp_path, capsys):
    """An error naming what it was given (here a site path) shows its control characters."""
    from console.cli.main import main

    with pytest.raises(SystemExit) as exit:
        main(["--site", str(tmp_path / f"nope{TITLE}.yaml"), "validate"])
    assert exit.value.code == 2
    out, err = capsys.readouterr()
    assert_clean(out + err)
    assert f"nope{TITLE_SHOWN}.yaml" in err


# ------------------------------------------------------------------ TUI
def shown(widget) -> str:
    """What a Static shows (or a DataTable's cells), as plain text."""
    if isinstance(widget, DataTable):
        return "\n".join(" ".join(getattr(c, "plain", str(c)) for c in widget.get_row_at(i))
                         for i in range(widget.row_count))
    console = Console(width=400, file=io.StringIO(), record=True, color_system=None)
    console.print(widget.content)
    return console.export_text()


async def _app(ctx):
    app = make_app(ctx, poll=False, poll_config=PollConfig(timeout=TIMEOUT, min_interval=0.0))
    await app.poller.sweep(NODE_JOBS, switches=True)
    return app


async def _settle(app, pilot) -> None:
    await app.workers.wait_for_complete()
    app.drain()
    await pilot.pause()
    await pilot.pause()


def assert_screen_clean(app) -> None:
    """What the screen draws holds no control character from the data (ESC, C1, bidi)."""
    svg = app.export_screenshot()
    for ch in ("\x1b", C1, RLO):
        assert ch not in svg, f"{ch!r} is drawn on the screen"


async def test_tui_fleet_and_node_detail_show_hostile_bmc_text(hostile, own_state):
    _, ctx = hostile
    app = await _app(ctx)
    async with app.run_test(size=(160, 48)) as pilot:
        await _settle(app, pilot)
        assert_screen_clean(app)  # the fleet table: the error BMC's text in the ERROR column
        app.open_node(GOOD)
        await _settle(app, pilot)
        screen = app.screen
        identity = shown(screen.query_one("#identity-grid", Static))
        assert MODEL in identity and VENDOR in identity and f"SN{TITLE_SHOWN}1" in identity
        assert "[/]FAN\\x9b9" in shown(screen.query_one("#sensors-table", DataTable))
        assert "[/]FAN\\x9b9" in shown(screen.query_one("#failing-list", Static))
        events = shown(screen.query_one("#events-list", Static))
        assert "PWNED-TITLE^G" in events and "\\u202e" in events
        assert_screen_clean(app)
        await pilot.press("escape")
        app.open_node(BAD)
        await _settle(app, pilot)
        errors = shown(app.screen.query_one("#errors", Static))
        assert f"HTTP 500 ({TITLE_SHOWN}[/])" in errors
        assert_screen_clean(app)
        await pilot.press("escape")
        await pilot.press("r")  # racks: the error goes into a tooltip
        await _settle(app, pilot)
        assert_screen_clean(app)
        await pilot.press("escape", "w")  # switches: sysDescr, port name, LLDP neighbour
        await _settle(app, pilot)
        ports = shown(app.screen.query_one("#ports", DataTable))
        assert "Eth[/]1\\u202e" in ports and f"[/]{TITLE_SHOWN}" in ports
        assert f"[bold]ToR {TITLE_SHOWN}" in shown(app.screen.query_one("#switches", DataTable))
        assert_screen_clean(app)
        assert app.is_running


async def test_tui_filter_echo_and_operator_are_text(hostile, own_state, monkeypatch):
    """``FLEET_OPERATOR='[/]...'`` and a filter of ``[/]`` (echoed in the filter line's border
    and tooltip, and in the Activity screen's summary) are shown, not parsed."""
    _, ctx = hostile
    monkeypatch.setenv("FLEET_OPERATOR", OPERATOR)
    Journal("hostile").write(action="power on", node=GOOD, step="plan", result="started")
    Journal("hostile", operator=OPERATOR).write(action="power on", node=GOOD, step="power-on", result="failed",
                                                error=f"{TITLE}[/]", ticket=f"[b]INC{RLO}")
    app = await _app(ctx)
    async with app.run_test(size=(160, 48)) as pilot:
        await _settle(app, pilot)
        await pilot.press("slash", "left_square_bracket", "slash", "right_square_bracket")
        await _settle(app, pilot)
        assert app.screen.filter_problem is not None
        assert_screen_clean(app)
        await pilot.press("escape")
        app.open_node(GOOD)
        await _settle(app, pilot)
        activity = shown(app.screen.query_one("#activity-list", Static))
        assert activity.count("[/]^[]0;PWNED") == 2 and "[b]INC\\u202e" in activity
        assert_screen_clean(app)
        await pilot.press("escape", "l")
        await _settle(app, pilot)
        table = shown(app.screen.query_one("#activity", DataTable))
        assert "[/]^[]0;PWNED" in table
        await pilot.press("slash", "left_square_bracket", "slash", "right_square_bracket")
        await _settle(app, pilot)
        assert "filter: [/]" in shown(app.screen.query_one("#summary", Static))
        assert_screen_clean(app)
        assert app.is_running
