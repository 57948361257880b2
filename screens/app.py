"""FleetConsoleApp: the Textual shell.

For now the home screen shows the site's inventory (name, rack/U, BMC, desired
image) from the loaded site; live state arrives with the poller (engine layer).
"""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

__all__ = ["FleetConsoleApp", "make_app", "run_app"]


class FleetConsoleApp(App):
    """The operator console."""

    TITLE = "fleet-console"
    BINDINGS = [Binding("q", "quit", "Quit")]
    CSS = """
    #status { height: 1; padding: 0 1; background: $boost; color: $text-muted; }
    #fleet { height: 1fr; }
    """

    def __init__(self, ctx, *, read_only: bool = False) -> None:
        super().__init__()
        self.ctx = ctx
        self.read_only = read_only
        self.sub_title = f"site {ctx.site.name}" + (" [read-only]" if read_only else "")

    def compose(self) -> ComposeResult:
        yield Header()
        site = self.ctx.site
        source = "lab" if (self.ctx.lab or self.ctx.lab_state) else "inventory"
        yield Static(f"{site.summary()}  ·  endpoints from {source}  ·  live polling: not yet available", id="status")
        yield DataTable(id="fleet", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, width in (("NODE", 20), ("RACK/U", 8), ("BMC", 30), ("IMAGE (desired)", 20)):
            table.add_column(label, width=width, key=label)
        for node in self.ctx.site.nodes:
            b = node.bmc
            table.add_row(
                node.name,
                f"{node.rack}/{node.u}" if node.u else node.rack,
                f"{b.protocol} {b.address}:{b.effective_port}",
                node.image or "-",
                key=node.name,
            )


def make_app(ctx, **kwargs) -> FleetConsoleApp:
    """Build the app (tests use this)."""
    return FleetConsoleApp(ctx, **kwargs)


def run_app(ctx, *, read_only: bool = False) -> int:
    """Run the TUI until the operator quits."""
    make_app(ctx, read_only=read_only).run()
    return 0
