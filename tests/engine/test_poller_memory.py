"""What keeps the poller's process small at 10,000 BMCs changes nothing it says:
the site it is sent, a Fleet without history, logouts a bounded number at a time."""

from __future__ import annotations

import asyncio
import pickle

from console.live import poller as poller_mod
from console.live.fleet import Fleet, NodeState
from console.live.poller import PollConfig, Poller, compact_site
from inventory.loader import load_site_text


def site_of(n: int):
    return load_site_text(
        "site: t\ndefaults:\n  bmc: {protocol: ipmi, username: admin, password: env:PW}\n"
        f"racks:\n  - name: r1\n    nodes:\n      - {{name: 'n[1-{n}]', bmc: {{address: '127.0.0.[1-{n}]'}}}}\n"
    )


def test_compact_site_sends_each_node_once_and_says_the_same() -> None:
    site = site_of(20)
    site.node("n1")  # the index of these nodes ...
    moved = site.model_copy(update={"nodes": tuple(n.model_copy(update={"ssh_port": 2222}) for n in site.nodes)})
    before = pickle.dumps(moved)  # ... travels with the copy: every node twice
    compact_site(moved)
    after = pickle.dumps(moved)
    assert len(after) < len(before) * 0.7
    back = pickle.loads(after)
    assert back.model_dump() == moved.model_dump()
    assert back.node("n7") is back.nodes[6] and back.node("n7").ssh_port == 2222
    assert back.nodes[0].bmc.username is back.nodes[1].bmc.username  # one string for all


def test_a_fleet_without_history_keeps_states_but_no_transitions() -> None:
    site = site_of(3)
    quiet = Fleet(site, history=False)
    quiet.node_ok("n1", "power", power="on", health="ok")
    quiet.node_failed("n2", "power", "timeout: no answer in time")
    st = quiet.nodes["n1"]
    assert (st.power, st.health) == ("on", "ok") and quiet.nodes["n2"].error
    assert not st.transitions and not st.since and not quiet.transitions("n1")
    # what the poller's process sends: the console's Fleet makes the history of it
    console = Fleet(site)
    console.absorb({n: pickle.loads(pickle.dumps(quiet.nodes[n])) for n in ("n1", "n2")}, {})
    assert [t.words() for t in console.transitions("n1") if t.fact == "power"] == ["power on (first seen)"]
    assert any(t.fact == "reachability" for t in console.transitions("n2"))
    assert isinstance(console.nodes["n1"], NodeState) and console.nodes["n1"].transitions.maxlen


class ClosingDriver:
    open_now = 0
    most_open = 0
    closed: list[str] = []

    def __init__(self, name: str) -> None:
        self.name = name

    async def power_state(self):
        from console.drivers.bmc import PowerState

        return PowerState.ON

    async def health(self) -> str:
        return "ok"

    async def close(self) -> None:
        cls = ClosingDriver
        cls.open_now += 1
        cls.most_open = max(cls.most_open, cls.open_now)
        await asyncio.sleep(0.01)
        cls.open_now -= 1
        cls.closed.append(self.name)


async def test_aclose_logs_out_of_every_bmc_a_bounded_number_at_a_time(monkeypatch) -> None:
    monkeypatch.setattr(poller_mod, "LOGOUTS_AT_ONCE", 4)
    site = site_of(30)
    poller = Poller(site, Fleet(site), secrets=None,  # type: ignore[arg-type]
                    config=PollConfig(min_interval=0.0, timeout=2.0),
                    bmc_factory=lambda node, secrets, timeout: ClosingDriver(node.name))
    await poller.sweep(("power",), switches=False)
    assert all(st.power == "on" for st in poller.fleet.nodes.values())
    await poller.aclose()
    assert sorted(ClosingDriver.closed) == sorted(n.name for n in site.nodes)
    assert ClosingDriver.most_open == 4
    assert not any(ep.drivers for ep in poller._bmcs.values())
