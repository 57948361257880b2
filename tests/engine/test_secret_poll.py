"""A slow ``cmd:`` secret against the poller and a real lab: resolved once, off the event loop,
bounded, its failure cached; the other nodes poll as if it were not there."""

from __future__ import annotations

from console.live.fleet import Fleet
from console.live.poller import PollConfig, Poller
from console.secrets import Secrets

SLOW = "cmd:sh -c 'echo run >> \"$FLEET_TEST_SECRET_RUNS\"; sleep 5; echo late'"
_SLOW_YAML = SLOW.replace('"', '\\"')

SITE = f"""
site: t-slowsecret
defaults:
  bmc: {{protocol: ipmi, username: admin, password: "lab:bmc"}}
racks:
  - name: r1
    nodes:
      - {{name: "ss-n[1-5]", bmc: {{address: "127.1.212.[1-5]", password: "{_SLOW_YAML}"}}}}
      - {{name: "ss-n[6-7]", bmc: {{address: "127.1.212.[6-7]"}}}}
      - {{name: ss-wrong, bmc: {{protocol: redfish, scheme: http, address: 127.1.212.8, password: "env:WRONG_PW"}}}}
"""


async def test_slow_cmd_secret_runs_once_and_holds_up_no_one(site_lab, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setenv("FLEET_TEST_SECRET_RUNS", str(runs))
    site = site_lab.effective_site()
    assert site.node("ss-n1").bmc.password == SLOW
    fleet = Fleet(site)
    secrets = Secrets(environ={"WRONG_PW": "not-the-password"}, lab=site_lab.secrets, cmd_timeout=0.5)
    poller = Poller(site, fleet, secrets, PollConfig(timeout=5, min_interval=0, backoff_base=0, backoff_max=0))
    try:
        await poller.sweep(["power"], switches=False)
        slow = [fleet.nodes[f"ss-n{i}"] for i in range(1, 6)]
        for st in slow:
            assert st.error == "credential problem: secret cmd:sh ... timed out after 0.5s", st.error
            assert "late" not in st.error
        assert len(runs.read_text().splitlines()) == 1  # one run for the five nodes sharing it
        for name in ("ss-n6", "ss-n7"):
            assert fleet.nodes[name].power == "on" and fleet.nodes[name].error is None, fleet.nodes[name].error
        wrong = fleet.nodes["ss-wrong"].error
        assert wrong is not None and wrong.startswith("auth failed"), wrong  # not a timeout
        # the next poll finds the failure cached: the command is not run again
        await poller.sweep(["power"], nodes=["ss-n1", "ss-n2"], switches=False)
        assert fleet.nodes["ss-n1"].error.endswith("timed out after 0.5s")
        assert len(runs.read_text().splitlines()) == 1
    finally:
        await poller.aclose()
