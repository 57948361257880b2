"""Acting on the fleet, first half: plans.  Nothing is touched before the operator
has seen a :class:`Plan`::

    plan = await plan_power(ctx, names, "cycle", ticket="INC-123")
    print(plan.text())                 # what the operator confirms
    result = await Runner(ctx, plan, RunOptions(fanout=10, canary=1)).run()   # console.ops.runner

Planning reads each BMC's power state fresh and decides, per node, the steps
(:mod:`console.ops.steps`) or why the node is skipped (a :class:`~console.ops.steps.Skip`):
unreachable, already in the wanted state, locked by
another operator (:mod:`console.ops.locks`), ``protected`` in the inventory (unless
``force_protected``; powering on is never refused for protection).  The plan also
states the blast radius: nodes, racks, switches.  :mod:`console.ops.runner` executes it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets as pysecrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from console import site as sites
from console.drivers import open_bmc
from console.drivers.bmc import PowerState
from console.errors import ActionError, DriverError, Timeout, Unreachable
from console.ops import steps as st
from console.ops.locks import LockInfo, Locks
from console.ops.steps import FINAL, Skip, SkipKind, Step, StepName
from inventory.errors import SecretError, SelectionError
from inventory.model import Image, Node, Site
from inventory.ranges import compress, natural_key

__all__ = [
    "FINAL",
    "POWER_ACTIONS",
    "NodePlan",
    "Plan",
    "PlanError",
    "Skip",
    "SkipKind",
    "Step",
    "StepName",
    "plan_power",
    "plan_pxe",
    "plan_reimage",
    "drift_warning",
    "plural",
    "reimage_module",
    "failure_reason",
    "resolve_image",
]

#: the power actions, in the operator's words
POWER_ACTIONS = ("on", "off", "soft", "cycle", "reset")


class PlanError(ActionError):
    """The request cannot be planned (unknown image, bad option): bad input, exit status 2."""

    title = "cannot plan"


# --------------------------------------------------------------------------- plan
@dataclass
class NodePlan:
    """What will happen to one node: its steps, or why it is skipped."""

    node: str
    steps: list[Step]
    skip: Skip | None = None
    rack: str = ""
    switch: str | None = None
    protocol: str = ""
    power: str | None = None  # the power state read while planning (None: not read)
    protected: bool = False  # marked protected in the inventory

    @property
    def skip_reason(self) -> str | None:
        """Why the node is skipped, in words (None: it is a target)."""
        return self.skip.reason if self.skip is not None else None

    def to_json(self) -> dict[str, Any]:
        """Stable JSON record."""
        return {"node": self.node, "rack": self.rack, "switch": self.switch, "protocol": self.protocol,
                "power": self.power, "protected": self.protected, "skip": self.skip_reason,
                "steps": [{"name": s.name, "description": s.description} for s in self.steps]}


def _new_id() -> str:
    return pysecrets.token_hex(4)


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Plan:
    """An action on a set of nodes, ready for the operator to confirm.

    ``action`` is the journal's action text (``power cycle``, ``pxe``,
    ``reimage flatcar@4081.2.1``); ``kind`` is ``power``, ``pxe`` or ``reimage``;
    ``power_action`` the power verb for ``power``; ``image`` the image ref for reimage.
    """

    action: str
    nodes: list[NodePlan]
    ticket: str | None = None
    kind: str = "power"
    power_action: str | None = None
    image: str | None = None
    force_protected: bool = False
    #: what the operator must read before confirming (e.g. the target differs from the desired image)
    warnings: list[str] = field(default_factory=list)
    id: str = field(default_factory=_new_id)
    created: str = field(default_factory=_now_iso)

    @property
    def targets(self) -> list[NodePlan]:
        """Nodes the action will run on."""
        return [n for n in self.nodes if n.skip is None]

    @property
    def skipped(self) -> list[NodePlan]:
        """Nodes left alone, each with its reason."""
        return [n for n in self.nodes if n.skip is not None]

    def blast_radius(self) -> dict[str, Any]:
        """How much the action touches: node count, racks and switches of the targets."""
        t = self.targets
        racks = sorted({n.rack for n in t if n.rack}, key=natural_key)
        switches = sorted({n.switch for n in t if n.switch}, key=natural_key)
        return {"nodes": len(t), "racks": racks, "switches": switches}

    def text(self) -> str:
        """The plan in words: what the operator reads before confirming."""
        br = self.blast_radius()
        head = f"plan {self.id}: {self.action}"
        if self.ticket:
            head += f"  (ticket {self.ticket})"
        lines = [head]
        lines += [f"WARNING: {w}" for w in self.warnings]
        racks = ", ".join(br["racks"]) or "none"
        switches = ", ".join(br["switches"]) or "none"
        lines.append(f"blast radius: {br['nodes']} node{plural(br['nodes'])}; "
                     f"{len(br['racks'])} rack{plural(len(br['racks']))} ({racks}); "
                     f"{len(br['switches'])} switch{'es' if len(br['switches']) != 1 else ''} ({switches})")
        forced = [n.node for n in self.targets if n.protected]
        if forced:
            lines.append(f"PROTECTED nodes included (--force-protected): {compress(forced)}")
        # nodes with the same step names form one group; where descriptions differ per node
        # (a MAC, an address) the first node's stand for all, said so
        groups: dict[tuple[str, ...], list[NodePlan]] = {}
        for n in self.targets:
            groups.setdefault(tuple(s.name for s in n.steps), []).append(n)
        if groups:
            lines.append(f"will act on {br['nodes']} node{plural(br['nodes'])}:")
            for members in groups.values():
                first = members[0]
                lines.append(f"  {compress(m.node for m in members)} ({len(members)}):")
                for i, s in enumerate(first.steps, 1):
                    varies = any(m.steps[i - 1].description != s.description for m in members[1:])
                    lines.append(f"    {i}. {s.name}: {s.description}"
                                 + (f"  (for {first.node}; per node)" if varies else ""))
        else:
            lines.append("nothing to do")
        skipped: dict[str, list[str]] = {}
        for n in self.skipped:
            skipped.setdefault(n.skip_reason or "", []).append(n.node)
        if skipped:
            total = len(self.skipped)
            lines.append(f"skipped {total} node{plural(total)}:")
            for reason, names in skipped.items():
                lines.append(f"  {compress(names)}: {reason}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """Stable JSON: the plan as scripts and the TUI read it (no secrets in it)."""
        return {
            "id": self.id, "action": self.action, "kind": self.kind, "power_action": self.power_action,
            "image": self.image, "ticket": self.ticket, "created": self.created,
            "force_protected": self.force_protected, "warnings": list(self.warnings),
            "blast_radius": self.blast_radius(),
            "nodes": [n.to_json() for n in self.nodes],
        }


def plural(n: int) -> str:
    return "" if n == 1 else "s"


def _destructive(kind: str, power_action: str | None) -> bool:
    """Powering on is not destructive; everything else interrupts what the node runs."""
    return not (kind == "power" and power_action == "on")


def failure_reason(exc: BaseException) -> str:
    """What went wrong, for a journal line or a node's error: the message, with the error's title."""
    text = str(exc) or type(exc).__name__
    title = getattr(exc, "title", None)
    if isinstance(exc, DriverError) and title and not text.lower().startswith(title):
        return f"{title}: {text}"
    return text


async def _read_power(ctx: sites.SiteContext, nodes: list[Node], *, timeout: float,
                      concurrency: int) -> dict[str, tuple[PowerState | None, str | None]]:
    """Fresh power state of each node: ``{name: (state, error)}``; every driver closed after."""
    sem = asyncio.Semaphore(max(1, concurrency))
    out: dict[str, tuple[PowerState | None, str | None]] = {}

    async def one(node: Node) -> None:
        async with sem:
            try:
                driver = open_bmc(node, ctx.secrets, timeout=timeout)
            except SecretError as exc:
                out[node.name] = (None, f"no credentials ({exc})")
                return
            try:
                state = await driver.power_state()
                out[node.name] = (state, None) if state != PowerState.UNKNOWN else (None, "power state unknown")
            except (Unreachable, Timeout) as exc:
                out[node.name] = (None, f"unreachable ({failure_reason(exc)})")
            except DriverError as exc:
                out[node.name] = (None, f"BMC error ({failure_reason(exc)})")
            finally:
                await driver.close()

    await asyncio.gather(*(one(n) for n in nodes))
    return out


async def _plan(ctx: sites.SiteContext, names: Iterable[str], *, kind: str, action: str,
                power_action: str | None = None, image: str | None = None, ticket: str | None = None,
                force_protected: bool = False, locks: Locks | None = None, timeout: float = 5.0,
                concurrency: int = 32, steps_for: Callable[[Node, PowerState], list[Step] | Skip],
                also_read: Callable[[list[Node]], Awaitable[None]] | None = None) -> Plan:
    site = ctx.site
    ordered = sorted(dict.fromkeys(names), key=natural_key)
    unknown = [n for n in ordered if n not in {x.name for x in site.nodes}]
    if unknown:
        raise SelectionError(f"unknown node(s): {compress(unknown)}")
    if not ordered:
        raise SelectionError("no nodes selected")
    locks = locks if locks is not None else Locks(site.name)
    plans: dict[str, NodePlan] = {}
    to_read: list[Node] = []
    destructive = _destructive(kind, power_action)
    locked = await asyncio.to_thread(locks.held, ordered)  # file reads: off the loop (the TUI plans on it)
    for name in ordered:
        node = site.node(name)
        np = NodePlan(name, [], rack=node.rack, switch=node.switch_port.switch if node.switch_port else None,
                      protocol=node.bmc.protocol, protected=node.protected)
        plans[name] = np
        held: LockInfo | None = locked.get(name)
        if node.protected and destructive and not force_protected:
            np.skip = Skip("protected (override with --force-protected)", SkipKind.PROTECTED)
        elif held is not None:
            np.skip = Skip(held.describe(), SkipKind.LOCKED)
        else:
            to_read.append(node)
    if also_read is not None:  # other facts the steps depend on (the running image), read alongside
        states, _ = await asyncio.gather(_read_power(ctx, to_read, timeout=timeout, concurrency=concurrency),
                                         also_read(to_read))
    else:
        states = await _read_power(ctx, to_read, timeout=timeout, concurrency=concurrency)
    for node in to_read:
        np = plans[node.name]
        state, error = states[node.name]
        if state is None:
            np.skip = Skip(error or "power state unknown", SkipKind.UNREACHABLE)
            continue
        np.power = state.value
        steps = steps_for(node, state)
        if isinstance(steps, Skip):
            np.skip = steps
        else:
            np.steps = steps
    return Plan(action=action, nodes=[plans[n] for n in ordered], ticket=ticket, kind=kind,
                power_action=power_action, image=image, force_protected=force_protected)


async def plan_power(ctx: sites.SiteContext, names: Iterable[str], action: str, *, ticket: str | None = None,
                     force_protected: bool = False, locks: Locks | None = None, timeout: float = 5.0,
                     power_timeout: float = 120.0, soft_timeout: float = 300.0,
                     hard_after: float | None = None) -> Plan:
    """Plan a power action (``on``, ``off``, ``soft``, ``cycle``, ``reset``) on ``names``.

    ``timeout`` bounds each BMC request while planning; the other times only shape
    the step descriptions (the :class:`Runner` gets the same values).
    """
    if action not in POWER_ACTIONS:
        raise PlanError(f"unknown power action {action!r} (one of {', '.join(POWER_ACTIONS)})")
    already_on, already_off = Skip("already on", SkipKind.ALREADY), Skip("already off", SkipKind.ALREADY)

    def steps_for(node: Node, state: PowerState) -> list[Step] | Skip:
        on = state == PowerState.ON
        if action == "on":
            return already_on if on else [st.power_on(power_timeout)]
        if action == "off":
            return already_off if not on else [st.power_off(power_timeout)]
        if action == "soft":
            if not on:
                return already_off
            steps = [st.soft_off(hard_after if hard_after is not None else soft_timeout)]
            if hard_after is not None:
                steps.append(st.hard_off(hard_after, power_timeout))
            return steps
        if action == "cycle":
            return [st.power_cycle(power_timeout) if on else st.power_on(power_timeout, instead_of_cycle=True)]
        # reset
        if not on:
            return Skip("already off (a warm reset needs power; use power on)", SkipKind.ALREADY)
        return [st.reset(power_timeout)]

    return await _plan(ctx, names, kind="power", action=f"power {action}", power_action=action, ticket=ticket,
                       force_protected=force_protected, locks=locks, timeout=timeout, steps_for=steps_for)


async def plan_pxe(ctx: sites.SiteContext, names: Iterable[str], *, ticket: str | None = None,
                   force_protected: bool = False, locks: Locks | None = None, timeout: float = 5.0,
                   power_timeout: float = 120.0) -> Plan:
    """Plan a PXE reboot: boot override PXE once, read it back, then reset (on) or power on (off)."""
    def steps_for(node: Node, state: PowerState) -> list[Step] | Skip:
        return st.pxe_steps(state == PowerState.ON, power_timeout)

    return await _plan(ctx, names, kind="pxe", action="pxe", ticket=ticket, force_protected=force_protected,
                       locks=locks, timeout=timeout, steps_for=steps_for)


def resolve_image(site: Site, ref: str) -> Image:
    """The catalog :class:`~inventory.model.Image` for ``NAME@VERSION``; PlanError lists the known ones."""
    known = ", ".join(img.ref for img in site.images) or "none"
    if not ref or ref.count("@") != 1 or not all(ref.split("@")):
        raise PlanError(f"--image must be NAME@VERSION, got {ref!r} (known images: {known})")
    image = site.image(ref)
    if image is None:
        raise PlanError(f"unknown image {ref!r} for site {site.name} (known images: {known})")
    return image


def reimage_module() -> ModuleType:
    """:mod:`console.ops.reimage`, imported when a reimage is planned (power actions never need it)."""
    from console.ops import reimage

    return reimage


async def _read_images(ctx: sites.SiteContext, nodes: list[Node], *, timeout: float,
                       concurrency: int) -> dict[str, str | None]:
    """The image each node reports it runs (``name@version``), None where it did not answer."""
    from console.drivers.ssh import read_image

    sem = asyncio.Semaphore(max(1, concurrency))
    out: dict[str, str | None] = {}

    async def one(node: Node) -> None:
        async with sem:
            try:
                got = await read_image(node, ctx.site.ssh, ctx.secrets, timeout=timeout)
            except Exception:  # noqa: BLE001 - an unread image only means "not known to be there"
                out[node.name] = None
                return
            out[node.name] = got.ref

    await asyncio.gather(*(one(n) for n in nodes))
    return out


def drift_warning(site: Site, names: Iterable[str], image_ref: str) -> str | None:
    """``this creates drift: ...`` when ``image_ref`` is not the inventory's desired image of some of ``names``."""
    by_desired: dict[str, list[str]] = {}
    for name in names:
        desired = site.node(name).image
        if desired != image_ref:
            by_desired.setdefault(desired or "(none)", []).append(name)
    if not by_desired:
        return None
    parts = [f"{compress(members)} desire {desired}" if len(by_desired) > 1 else f"desired is {desired}"
             for desired, members in by_desired.items()]
    return (f"this creates drift: {'; '.join(parts)}, not {image_ref} "
            f"(the inventory will report these nodes as drifted until it is changed)")


async def plan_reimage(ctx: sites.SiteContext, names: Iterable[str], image_ref: str, *, ticket: str | None = None,
                       force_protected: bool = False, force: bool = False, locks: Locks | None = None,
                       timeout: float = 5.0) -> Plan:
    """Plan a reimage to ``image_ref`` (``NAME@VERSION`` from the site's image catalog).

    The steps come from :func:`console.ops.reimage.reimage_steps`; a node it refuses
    (ActionError, e.g. no MAC) is skipped with its reason.  A node that reports (over
    SSH, read fresh while planning) it already runs ``image_ref`` is skipped as
    ``already running ...`` (nothing to do) unless ``force``: reinstalling it would power-cycle it for
    nothing.  (Nodes report name and version in ``/etc/os-release``, no digest: the
    version is what is compared.)  When ``image_ref`` is not the inventory's desired
    image, the plan warns that it creates drift.
    """
    image = resolve_image(ctx.site, image_ref)
    reimage = reimage_module()
    running: dict[str, str | None] = {}

    async def read_running(nodes: list[Node]) -> None:
        if not force:
            running.update(await _read_images(ctx, nodes, timeout=timeout, concurrency=32))

    def steps_for(node: Node, state: PowerState) -> list[Step] | Skip:
        if running.get(node.name) == image.ref:
            return Skip(f"already running {image.ref} (--force reinstalls it)", SkipKind.ALREADY)
        try:
            steps: list[Step] = reimage.reimage_steps(node, image, ctx.site)
        except ActionError as exc:
            return Skip(str(exc), SkipKind.REFUSED)
        return steps

    plan = await _plan(ctx, names, kind="reimage", action=f"reimage {image.ref}", image=image.ref,
                       ticket=ticket, force_protected=force_protected, locks=locks, timeout=timeout,
                       steps_for=steps_for, also_read=read_running)
    warning = drift_warning(ctx.site, [n.node for n in plan.targets], image.ref)
    if warning:
        plan.warnings.append(warning)
    return plan
