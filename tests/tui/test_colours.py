"""Colours and symbols that read: WCAG contrast of every status colour as the app
draws it on the fleet table (default theme), and one meaning per symbol."""

from __future__ import annotations

import pytest
from rich.color import Color as RichColor
from rich.segment import Segment
from rich.style import Style
from textual.color import Color
from textual.filter import ANSIToTruecolor

from console.cli.main import SiteContext
from console.live import words
from console.secrets import Secrets
from screens.app import make_app
from screens.common import INSECURE, STYLES, SYMBOLS
from screens.table import FleetTable


@pytest.fixture
def ctx(demo_lab):
    return SiteContext(demo_lab.effective_site(), Secrets(lab=demo_lab.secrets))


def contrast(a: Color, b: Color) -> float:
    """The WCAG 2 contrast ratio of two colours."""
    def luminance(c: Color) -> float:
        def channel(v: int) -> float:
            x = v / 255
            return x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4
        return 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b)
    low, high = sorted((luminance(a), luminance(b)))
    return (high + 0.05) / (low + 0.05)


async def test_every_status_colour_reads_on_the_table(ctx):
    """What the compositor does to a status cell (ANSI colour through the app's ANSI
    theme, dim blended toward the background), on the table's own background."""
    app = make_app(ctx, poll=False)
    async with app.run_test(size=(80, 24)):
        table = app.screen.query_one(FleetTable)
        _, background = table.background_colors
        foreground = table.styles.color
        base = Style(color=foreground.rich_color, bgcolor=background.rich_color)
        to_truecolor = ANSIToTruecolor(app.ansi_theme)
        seen = {}
        for word, style in [*STYLES.items(), ("insecure", INSECURE[1])]:
            [segment] = to_truecolor.apply([Segment("x", base + Style.parse(style))], background)
            drawn = segment.style.color
            assert drawn is not None and drawn.triplet is not None, word
            colour = Color(*drawn.triplet)
            seen[word] = colour
            assert contrast(colour, background) >= 4.5, (word, colour.hex, round(contrast(colour, background), 2))
        assert seen["unknown"] != seen["warning"]  # ? and ! read apart
        assert seen["drift"] != seen["critical"]


def test_a_symbol_means_one_thing():
    """A symbol shared by two words only where they mean the same (``✓``: as it should be)."""
    by_symbol: dict[str, set[str]] = {}
    for word, symbol in words.SYMBOLS.items():
        by_symbol.setdefault(symbol, set()).add(word)
    shared = {symbol: names for symbol, names in by_symbol.items() if len(names) > 1}
    assert shared == {"✓": {"ok", "match"}}
    assert len({SYMBOLS[w][0] for w in ("critical", "error", "mismatch")}) == 3
    assert RichColor.parse(STYLES["critical"].split()[-1]) == RichColor.parse("red")


async def test_rack_cells_and_frames_read(ctx):
    """A critical rack cell's text at 4.5:1, a rack's frame at 3:1 (a non-text edge)."""
    from screens.rack import RackScreen

    app = make_app(ctx, poll=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.fleet.node_ok("dal1-r01-n07", "health", health="critical")
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, RackScreen)
        block = screen.blocks["dal1-r01-n07"]
        await pilot.pause()
        assert block.has_class("state-error")
        _, background = block.background_colors
        text = background + block.styles.color
        assert contrast(text, background) >= 4.5, (text.hex, background.hex)
        rack = screen.query(".rack").first()
        _, behind = rack.background_colors
        edge = behind + rack.styles.border.top[1]
        assert contrast(edge, behind) >= 3.0, (edge.hex, behind.hex)
