"""The console panes against the lab over real IPMI SOL: watch, type, take over, a grid, the key and palette."""

from __future__ import annotations

import threading

import pytest

from console.site import SiteContext
from screens.app import make_app
from screens.console import ConsolePane, ConsoleScreen, ConsoleView, TakeOver, key_bytes
from tests.support import wait_for, wait_until

SITE = """\
site: contui
defaults:
  bmc: {protocol: ipmi, username: admin, password: "lab:bmc"}
  image: flatcar@4081.2.1
images:
  - {name: flatcar, version: 4081.2.1, kernel: http://127.0.0.1:8069/k, initrd: http://127.0.0.1:8069/i}
provisioner: {kind: ipxe, url: "http://127.0.0.1:8069"}
ssh: {username: core, password: "lab:ssh", known_hosts: "lab:known_hosts"}
racks:
  - name: r01
    nodes:
      - name: con-n[01-04]
        u: "[1-4]"
        mac: "52:54:00:74:00:[01-04]"
        host: 127.2.74.[1-4]
        bmc: {address: "127.1.74.[1-4]"}
      - name: con-held
        mac: "52:54:00:74:00:10"
        host: 127.2.74.10
        bmc: {address: 127.1.74.10}
      - name: con-rf
        mac: "52:54:00:74:00:20"
        host: 127.2.74.20
        bmc: {protocol: redfish, scheme: http, address: 127.1.74.20}
lab:
  sol_faults: {con-held: held}
"""


@pytest.fixture
def ctx(site_ctx) -> SiteContext:
    site, secrets = site_ctx
    return SiteContext(site, secrets)


@pytest.fixture(autouse=True)
def private_state(tmp_path, monkeypatch, site_lab):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    yield
    wait_for(lambda: site_lab.sessions()["ipmi"] == 0, timeout=10, what="every IPMI session to be closed")
    wait_for(lambda: not [t for t in threading.enumerate() if t.name == "sol-pump" or t.name.startswith("sol-io")],
             timeout=10, what="the SOL threads to end")


def pane(app, node: str) -> ConsolePane:
    return next(p for p in app.screen.query(ConsolePane) if p.node == node)


async def test_c_watches_the_cursor_node_and_t_types(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.screen.query_one("FleetTable").move_cursor(row=1)  # con-n02
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, ConsoleScreen)
        p = pane(app, "con-n02")
        await wait_until(lambda: p.session is not None and p.session.state == "open", what="the SOL session")
        title = str(p.query_one("#title").render())
        assert "con-n02" in title and "IPMI SOL" in title and "read-only" in title
        # read-only: keys do not reach the node
        await pilot.press("z", "enter")  # (x would be PXE: app keys act on the focused console's node)
        await pilot.press("t")
        await wait_until(lambda: p.typing, what="typing")
        assert p.session.holder == app.operator
        await pilot.press("enter")
        await wait_until(lambda: "con-n02 login:" in p.view.text(), what="the login prompt")
        for ch in "core":
            await pilot.press(ch)
        await pilot.press("enter")
        await wait_until(lambda: "Password:" in p.view.text(), what="the password prompt")
        await pilot.press("ctrl+right_square_bracket")
        await wait_until(lambda: not p.typing, what="typing stopped")
        assert p.session.holder is None
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ConsoleScreen)
        # the broker keeps the session for the next viewer until the app ends
        assert "con-n02" in app.consoles.sessions()


async def test_a_grid_of_marked_nodes_and_a_node_without_console(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        from screens.console import ConsoleScreen as CS

        app.push_screen(CS(["con-n03", "con-n04", "con-rf"]))
        await pilot.pause()
        panes = list(app.screen.query(ConsolePane))
        assert [p.node for p in panes] == ["con-n03", "con-n04", "con-rf"]
        await wait_until(lambda: all(p.session and p.session.state == "open" for p in panes[:2]),
                         what="both SOL sessions")
        rf = panes[2]
        await wait_until(lambda: "no console" in str(rf.query_one("#title").render()), what="the reason")
        assert "console:" in str(rf.query_one("#title").render())  # says how to add one
        # output reaches the watchers: power-cycle a machine from the lab's side by typing as writer
        await pilot.press("t")
        await wait_until(lambda: panes[0].typing, what="typing")
        await pilot.press("enter")
        await wait_until(lambda: "con-n03 login:" in panes[0].view.text(), what="the prompt")
        await pilot.press("tab")  # typing: tab goes to the node
        await pilot.pause()
        assert app.focused is panes[0].view
        await pilot.press("ctrl+right_square_bracket", "tab")  # not typing: the next pane
        await pilot.pause()
        assert app.focused is panes[1].view
        from screens.actions import targets_of

        assert targets_of(app.screen) == ["con-n04"]  # p, x, i act on the focused console's node


async def test_a_held_console_asks_before_taking_it_over(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        session = await app.consoles.session("con-n01")
        await session.acquire("bob")
        app.push_screen(ConsoleScreen(["con-n01"]))
        await pilot.pause()
        p = pane(app, "con-n01")
        await wait_until(lambda: p.session is not None, what="the session")
        assert "typed by bob" in str(p.query_one("#title").render())
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, TakeOver)
        await pilot.press("n")
        await pilot.pause()
        assert not p.typing and session.holder == "bob"
        await pilot.press("t")
        await pilot.pause()
        await pilot.press("y")
        await wait_until(lambda: p.typing, what="the takeover")
        assert session.holder == app.operator


async def test_an_outside_client_holding_sol_is_shown_and_taken_only_when_asked(ctx):
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(120, 30)) as pilot:
        app.push_screen(ConsoleScreen(["con-held"]))
        await pilot.pause()
        p = pane(app, "con-held")
        await wait_until(lambda: p.session is not None and p.session.state == "busy", what="the busy state")
        assert "busy" in str(p.query_one("#title").render())
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, TakeOver)
        assert "held" in str(app.screen.why) or "active" in str(app.screen.why)
        await pilot.press("escape")
        await pilot.pause()
        assert p.session.state == "busy" and not p.typing  # nothing taken without a yes
        await pilot.press("t")
        await pilot.pause()
        await pilot.press("y")
        await wait_until(lambda: p.typing and p.session.state == "open", what="the forced takeover")
        await pilot.press("enter")
        await wait_until(lambda: "con-held login:" in p.view.text(), what="the prompt")


async def test_console_output_is_shown_as_text(ctx):
    """What a node prints cannot act on the operator's terminal: sequences are consumed by the
    emulator, and a control or format character left in a cell is drawn as ``?``."""
    import unicodedata

    app = make_app(ctx, poll=False)
    async with app.run_test(size=(100, 30)) as pilot:
        app.push_screen(ConsoleScreen(["con-n04"]))
        await pilot.pause()
        view = app.screen.query_one(ConsoleView)
        p = pane(app, "con-n04")
        await wait_until(lambda: p.session is not None and p.session.state == "open", what="the SOL session")
        await wait_until(lambda: "login:" in view.text(), what="the replayed history")
        view.feed(b"\x1b[2J\x1b[H\x1b]0;pwned\x07ok \x1b[31mred\x1b[0m a\xcc\x81 \xe2\x80\xae\r\n")
        view.vt.buffer[1][0] = view.vt.buffer[1][0]._replace(data="\u202e")  # as if the emulator kept one
        view.vt.buffer[1][1] = view.vt.buffer[1][1]._replace(data="\x1b")
        await pilot.pause()
        lines = ["".join(seg.text for seg in view.render_line(y)) for y in range(3)]
        assert lines[0].startswith("ok red \u00e1")  # combined by the emulator
        assert lines[1].startswith("??")
        assert not [ch for line in lines for ch in line if unicodedata.category(ch) in ("Cc", "Cf")]
        assert view.vt.title == "pwned"  # consumed by the emulator, never sent on
        view.feed("\x1b[3;1H日本 ok".encode())  # wide characters take two columns, not three
        await pilot.pause()
        from rich.cells import cell_len

        line = "".join(seg.text for seg in view.render_line(2))
        assert line.startswith("日本 ok") and cell_len(line) == view.size.width


def test_keys_become_terminal_bytes():
    from textual import events

    assert key_bytes(events.Key("enter", "\r")) == b"\r"
    assert key_bytes(events.Key("up", None)) == b"\x1b[A"
    assert key_bytes(events.Key("ctrl+c", "\x03")) == b"\x03"
    assert key_bytes(events.Key("a", "a")) == b"a"
    assert key_bytes(events.Key("f5", None)) == b"\x1b[15~"


async def test_the_console_screen_names_the_lab_login_file(site_lab, ctx):
    """The demo operator logs in at a simulated prompt with a password the screen never shows:
    it names the 0600 file that holds it."""
    import stat

    from console.lab.state import write_login_file

    lab_ctx = SiteContext(ctx.site, ctx.secrets, lab=site_lab)
    assert lab_ctx.lab_login_file is None
    path = write_login_file(site_lab)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == ctx.secrets.resolve("lab:ssh").get()
    assert lab_ctx.lab_login_file == path
    app = make_app(lab_ctx, poll=False)
    async with app.run_test(size=(120, 30)) as pilot:
        app.push_screen(ConsoleScreen(["con-n01"]))
        await pilot.pause()
        help_line = str(app.screen.query_one("#console-help").render())
        assert f"lab login core, password in {path}" in help_line
        assert ctx.secrets.resolve("lab:ssh").get() not in app.screen.query_one("#console-help").render().plain
    path.unlink()
