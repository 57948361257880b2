"""Boot overrides that a BMC echoes imperfectly, and clearing them once the node has booted.

A one-time boot override is read back after it is set (vendors silently ignore or
revert it).  Two imperfect read-backs still boot the device asked for:

* **continuous**: the device is right, but the override reads back persistent.
  OpenStack's sushy-tools ignores ``BootSourceOverrideEnabled`` and always reports
  ``Continuous``; several vendors keep overrides continuous.  The node would boot that
  device at every boot.
* **not flagged valid**: IPMI boot flags whose device selector is right but whose valid
  bit is clear (OpenIPMI's ``ipmi_sim`` stores them so; the IPMI spec lets a BMC clear
  the bit on its own timer).  ipmitool reads "Boot Flag Invalid", yet the host boots the
  selected device.

Both are accepted with a note (:func:`readback_quirk`), and the override is cleared
(set to none) once the node has booted: when the provisioner saw its boot fetch
(:class:`AfterBoot`), so that it does not boot that device for ever.  A device that
reads back wrong (another device, or none with no selector) is still refused.
"""

from __future__ import annotations

import asyncio

from console.drivers.bmc import BmcDriver, BootOverride, BootTarget
from console.errors import DriverError, FleetError
from console.provision import ProvisionerBackend, open_provisioner

__all__ = ["AfterBoot", "CLEARED", "clear_override", "readback_quirk", "readback_words"]

#: what the journal says once a quirky override was cleared
CLEARED = "boot override cleared after boot"


def readback_words(got: BootOverride) -> str:
    """A read-back override in a few words: ``pxe once``, ``disk continuous``, ``none once (selector pxe, ...)``."""
    if got.target is BootTarget.NONE and got.unflagged is not None:
        return f"none once (selector {got.unflagged.value}, not flagged valid)"
    return f"{got.target.value} {'continuous' if got.persistent else 'once'}"


def readback_quirk(want: BootTarget, got: BootOverride) -> str | None:
    """Judge a one-time override of ``want`` as read back.

    None: it reads back ``want`` once, as asked.  A note (``pxe, but continuous (BMC
    ignores once)``): the device is right and only the once/valid part differs, so the
    node will boot it but the override must be cleared after the boot.  ValueError
    (its text is :func:`readback_words`) when the device is wrong.
    """
    if got.target == want:
        return f"{want.value}, but continuous (BMC ignores once)" if got.persistent else None
    if got.target is BootTarget.NONE and got.unflagged == want:
        return f"{want.value}, but not flagged valid (BMC keeps boot flags without their valid bit)"
    raise ValueError(readback_words(got))


async def clear_override(driver: BmcDriver) -> str:
    """Set the override to none and read it back; what was seen (DriverError when not cleared)."""
    await driver.set_boot_override(BootTarget.NONE)
    got = await driver.boot_override()
    if got.target is not BootTarget.NONE or got.unflagged is not None:
        raise DriverError(f"boot override still reads {readback_words(got)} after clearing it")
    return CLEARED


class AfterBoot:
    """Wait until the site's provisioner sees a node's next boot, then clear its override.

    :meth:`mark` (before the reboot) notes the newest boot the provisioner has seen;
    :meth:`clear_when_booted` (after it) waits for a newer one, then clears.  A
    provisioner that cannot see boots (virtual media) leaves nothing to wait for: the
    override is not cleared, and the words say so (clearing it before the firmware has
    read it would cancel the boot).
    """

    def __init__(self, site, secrets, node) -> None:
        self.site, self.secrets, self.node = site, secrets, node
        self.prov: ProvisionerBackend | None = None
        self.since: float | None = None

    async def mark(self) -> None:
        """Note the newest boot seen so far (call before rebooting)."""
        try:
            self.prov = open_provisioner(self.site, self.secrets)
            seen = await self.prov.fetches(self.node, 0.0)
        except FleetError:
            seen = None  # the wait below says the boot could not be seen
        self.since = None if seen is None else max((f.time for f in seen), default=0.0)

    async def clear_when_booted(self, driver: BmcDriver, timeout: float, poll: float) -> tuple[bool, str]:
        """(cleared, words): wait up to ``timeout`` s for the boot, then clear the override.

        Not seen in time: the override is cleared anyway (the node did not boot it; left
        in place it would at some later boot) and the words say so.
        """
        try:
            if self.prov is None or self.since is None:
                return False, ("boot override left as it is: the provisioner cannot see the boot, clear it "
                               "(set none) once the node has booted")
            seen = await self._wait(timeout, poll)
            words = await clear_override(driver)
            return True, f"{words} ({seen})" if seen else f"{words}, though no boot was seen in {timeout:g} s"
        finally:
            await self.close()

    async def _wait(self, timeout: float, poll: float) -> str | None:
        assert self.prov is not None and self.since is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                fetches = await self.prov.fetches(self.node, self.since) or []
            except DriverError:
                fetches = []
            if fetches:
                f = fetches[0]
                return f"boot seen by the provisioner: {f.what or 'fetch'}, HTTP {f.status}"
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(min(poll, max(0.0, deadline - loop.time())))

    async def close(self) -> None:
        if self.prov is not None:
            prov, self.prov = self.prov, None
            await prov.close()
