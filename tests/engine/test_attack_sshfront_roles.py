"""Attack: an operator demoted in the operators file keeps no session of the old role.

A reload that keeps an operator's key but lowers their role (admin to viewer) must not
leave their open connection (or a new channel multiplexed on it) with the role it
logged in with: the connection is told and closed, and the next login gets the new role.
"""

from __future__ import annotations

import asyncio
import json

from tests.engine.test_sshfront import front, keys, read_until, write_operators  # noqa: F401  (fixtures)


async def test_demoted_operator_is_closed_and_logs_in_with_the_new_role(front):  # noqa: F811
    alice = await front.connect("alice")
    proc = await alice.create_process(term_type="xterm", term_size=(80, 24))
    await read_until(proc.stdout, "FAKE-CONSOLE")
    write_operators(front.ops, front.keys, who=(("alice", "viewer"), ("bob", "viewer")))
    front.front.reload()
    out = await read_until(proc.stdout, "role changed")
    assert "operator -> viewer" in out
    await asyncio.wait_for(proc.wait_closed(), 30)
    again = await front.connect("alice")
    env = json.loads((await again.run("status env", check=True)).stdout)
    assert env["FLEET_OPERATOR"] == "alice"
    assert env["FLEET_CONSOLE_READ_ONLY"] == "1"  # a viewer now


async def test_same_role_after_reload_keeps_the_connection(front):  # noqa: F811
    alice = await front.connect("alice")
    write_operators(front.ops, front.keys, who=(("alice", "operator"), ("carol", "admin")))
    front.front.reload()
    assert "carol" in front.front.operators.operators
    result = await alice.run("status exit 0", check=False)  # the connection is still open
    assert result.exit_status == 0
