"""KeyFooter: the screen's keys on one line, drawn as Textual's Footer draws them."""

from __future__ import annotations

import pytest
from rich.style import Style
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Footer

from screens.footer import KeyFooter


class Focusable(Widget, can_focus=True):
    BINDINGS = [Binding("x", "xray", "X-ray")]
    DEFAULT_CSS = "Focusable { height: 3; }"


class KeysApp(App):
    BINDINGS = [Binding("a", "alpha", "Alpha"), Binding("b", "beta", "Beta", tooltip="not now"),
                Binding("c", "gamma", "Gamma", show=False), Binding("d", "delta", "Delta")]

    def __init__(self, footer: type[Widget]) -> None:
        super().__init__()
        self.footer = footer
        self.done: list[str] = []
        self.bells = 0

    def compose(self) -> ComposeResult:
        yield Focusable()
        yield self.footer()

    def check_action(self, action: str, parameters) -> bool | None:
        return None if action == "beta" else True  # None: shown, disabled

    def action_alpha(self) -> None:
        self.done.append("alpha")

    def action_beta(self) -> None:
        self.done.append("beta")

    def action_delta(self) -> None:
        self.done.append("delta")

    def bell(self) -> None:
        self.bells += 1


def footer_line(app: App) -> list[tuple[str, object]]:
    """The bottom screen line as (text, style) segments, runs of one style joined."""
    out: list[tuple[str, object]] = []
    for segment in app.screen._compositor.render_strips()[-1]:
        style = segment.style
        if style is not None:  # what it looks like (not the metas each widget puts in)
            style = Style(color=style.color, bgcolor=style.bgcolor, bold=style.bold, dim=style.dim)
        if out and out[-1][1] == style:
            out[-1] = (out[-1][0] + segment.text, style)
        else:
            out.append((segment.text, style))
    return out


async def test_the_line_is_textuals_footer_line():
    """Same characters and styles as Textual's Footer, with the focused widget's keys and
    without; a disabled key dimmed."""
    lines = {}
    for footer in (Footer, KeyFooter):
        app = KeysApp(footer)
        async with app.run_test(size=(80, 10)) as pilot:
            app.set_focus(None)
            await pilot.pause()
            await pilot.pause()
            blurred = footer_line(app)
            app.query_one(Focusable).focus()
            await pilot.pause()
            await pilot.pause()
            lines[footer] = (blurred, footer_line(app))
    assert lines[KeyFooter] == lines[Footer]
    blurred, focused = lines[KeyFooter]
    text = "".join(t for t, _ in focused)
    assert text.startswith(" x X-ray  a Alpha  b Beta  d Delta ") and text.endswith("▏^p palette ")
    assert "Gamma" not in text
    assert "X-ray" not in "".join(t for t, _ in blurred)
    color = {t: style.color for t, style in focused}
    assert color[" b "] != color[" a "] == color[" d "]  # disabled: dimmed (to a blended colour)
    assert color["Beta "] != color["Alpha "] == color["Delta "]


@pytest.mark.parametrize("width, shown", [(46, " x X-ray  a Alpha  b Beta "), (29, " x X-ray "), (14, "")])
async def test_keys_that_do_not_fit_whole_are_left_out(width, shown):
    app = KeysApp(KeyFooter)
    async with app.run_test(size=(width, 10)) as pilot:
        await pilot.pause()
        text = "".join(t for t, _ in footer_line(app))
        assert len(text) == width and text.endswith("▏^p palette ")
        assert text[:-len("▏^p palette ")].rstrip() == shown.rstrip()


async def test_clicks_press_keys_and_hover_shows_the_tooltip():
    app = KeysApp(KeyFooter)
    async with app.run_test(size=(80, 10)) as pilot:
        await pilot.pause()
        footer = app.query_one(KeyFooter)
        text = "".join(t for t, _ in footer_line(app))
        at = {word: text.index(word) for word in ("Alpha", "Beta", "Delta", "palette")}
        await pilot.click(KeyFooter, offset=(at["Delta"], 0))
        await pilot.click(KeyFooter, offset=(at["Alpha"], 0))
        assert app.done == ["delta", "alpha"]
        await pilot.click(KeyFooter, offset=(at["Beta"], 0))  # disabled: a bell, nothing done
        assert app.done == ["delta", "alpha"] and app.bells == 1

        plain = footer_line(app)
        await pilot.hover(KeyFooter, offset=(at["Beta"], 0))
        assert footer.tooltip == "not now"
        assert footer_line(app) != plain  # highlighted
        await pilot.hover(KeyFooter, offset=(at["Alpha"] + 1, 0))
        assert footer.tooltip == "Alpha"
        await pilot.hover(KeyFooter, offset=(at["palette"], 0))
        assert footer.tooltip and "palette" in footer.tooltip.lower()
        await pilot.click(KeyFooter, offset=(at["palette"], 0))
        await pilot.pause()
        assert app.screen.__class__.__name__ == "CommandPalette"


class HelpQuitApp(KeysApp):
    BINDINGS = [*KeysApp.BINDINGS, Binding("question_mark", "help", "Help"), Binding("q", "quit", "Quit")]


@pytest.mark.parametrize("width", [60, 40, 34])
async def test_help_and_quit_stay_where_others_do_not_fit(width):
    """At 60x20 the footer lost ``?`` and ``q``: they go last in order but are kept
    first, the other keys left out whole."""
    app = HelpQuitApp(KeyFooter)
    async with app.run_test(size=(width, 20)) as pilot:
        await pilot.pause()
        text = "".join(t for t, _ in footer_line(app))
        assert len(text) == width and " ? Help " in text and " q Quit " in text, text
        assert text.index("Help") < text.index("Quit")  # still in their order


async def test_a_disabled_key_is_struck_through():
    """A disabled key (read-only) reads apart from a live one without colour: struck through."""
    app = KeysApp(KeyFooter)
    async with app.run_test(size=(80, 10)) as pilot:
        await pilot.pause()
        styles = {segment.text: segment.style for segment in app.screen._compositor.render_strips()[-1]}
        assert styles["Beta "].strike and not styles["Alpha "].strike


# --------------------------------------------------------------------------- the console's screens
@pytest.fixture
def ctx(demo_lab):
    from console.cli.main import SiteContext
    from console.secrets import Secrets

    return SiteContext(demo_lab.effective_site(), Secrets(lab=demo_lab.secrets))


def shown_keys(app: App) -> list[str]:
    """The keys the footer of the screen on top shows."""
    return [key.key for key in app.screen.query_one(KeyFooter)._keys]


async def test_each_screen_shows_only_the_keys_that_act_there(ctx):
    """``p`` showed on the switches screen, where there is no node to power: the app's node
    keys show only where there are nodes to act on, an app key that opens the screen it is
    on (``l`` on Activity) not at all; the screen's own keys and help stay."""
    from screens.app import make_app

    app = make_app(ctx, poll=False)
    async with app.run_test(size=(200, 30)) as pilot:
        await pilot.pause()
        fleet = shown_keys(app)
        assert {"p", "x", "i", "l", "question_mark"} <= set(fleet)
        for key, screen, gone, kept in (("w", "SwitchesScreen", {"p", "x", "i"}, {"f", "question_mark", "l"}),
                                        ("l", "ActivityScreen", {"p", "x", "i", "l"}, {"slash", "question_mark"}),
                                        ("J", "JobsScreen", {"p", "x", "i", "J"}, {"c", "question_mark", "l"})):
            await pilot.press(key)
            await pilot.pause()
            assert type(app.screen).__name__ == screen
            keys = set(shown_keys(app))
            assert not keys & gone, (screen, keys)
            assert kept <= keys, (screen, keys)
            await pilot.press("p")  # still says why when pressed (no node here), never a traceback
            await pilot.press("escape")
            await pilot.pause()
        # racks act on the node under their cursor: the keys are there
        await pilot.press("r")
        await pilot.pause()
        assert {"p", "x", "i"} <= set(shown_keys(app))


async def test_the_fleet_footer_keeps_help_and_quit_at_60x20(ctx):
    from screens.app import make_app

    app = make_app(ctx, poll=False)
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        await pilot.pause()
        text = "".join(t for t, _ in footer_line(app))
        assert " ? Help " in text and " q Quit " in text, text


async def test_toasts_show_at_the_top_not_over_the_rows(ctx):
    """A toast covered six table rows above the footer: now one line each at the top right,
    over the header and the summary line; the rows and the footer stay in sight."""
    from textual.widgets._toast import Toast

    from screens.app import make_app

    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await pilot.pause()
        app.notify("power cycle finished: 3 done, 1 skipped", severity="warning")
        app.notify("reimage finished: 2 done", timeout=30)
        await wait_for_toasts(pilot, 2)
        regions = [toast.region for toast in app.screen.query(Toast)]
        assert [(r.y, r.height) for r in regions] == [(0, 1), (1, 1)]  # over the header and the summary
        assert all(r.right == 80 for r in regions), regions  # at the right edge
        text = app.screen._compositor.render_strips()
        assert "power cycle finished: 3 done, 1 skipped" in "".join(s.text for s in text[0])
        assert " ? Help " in "".join(s.text for s in text[-1])  # the footer is not covered


async def wait_for_toasts(pilot, count: int) -> None:
    from textual.widgets._toast import Toast

    for _ in range(100):
        await pilot.pause()
        if len(pilot.app.screen.query(Toast)) >= count:
            return
    raise AssertionError("no toasts")
