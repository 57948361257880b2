"""What each IPMI BMC's SDR says health needs, kept across console restarts (one file per site).

A first poll of a BMC walks its SDR repository, one Get SDR per record, to learn which
sensors to read; the answer only changes when the BMC's SDR or firmware does.  As
freeipmi's sdr-cache does, it is kept per BMC with what vouches for it (an
:class:`~console.drivers.ipmi_health.SdrStamp`: Get Device ID and Get SDR Repository
Info), and used again when a new session finds the same stamp; a different stamp walks
the repository again.

BMCs whose stamps are equal share one walk (:meth:`SdrCache.summary`), as pyghmi's
in-process ``shared_sdrs`` does for BMCs of one model (pyghmi keys it on less: firmware
revision, manufacturer, product, device ID and the two timestamps).  While one BMC with a
stamp is walked, the others with that stamp wait for its summary; later ones take it at
once.  A stamp is only evidence about the BMC that gave it, so a shared summary is
marked as such (in the file too) and stays on probation:

- a BMC on a shared summary that answers "not present" for one of its sensors (see
  :func:`~console.drivers.ipmi_health.threshold_health`) walks its own SDR, kept for it
  alone (:meth:`SdrCache.summary` with ``own``);
- two walks under one stamp that disagree make the stamp worthless (:meth:`SdrCache.vouches`):
  nobody takes a summary by it any more, and those that took one walk their own.

The file is ``$XDG_STATE_HOME/fleet-console/<site>/sdr-cache.json``
(:func:`sdr_cache_path`): compact JSON, 0600, in a 0700 directory of ours.  BMCs of one
model share one summary, so ten thousand of them take about a megabyte.  Nothing in it
is secret (sensor numbers, firmware revisions), but it steers what the poller asks, so:

- the directory and the file are opened without following links, and refused (logged,
  then ignored) when they are not ours or are open to group or others;
- a file larger than :data:`MAX_BYTES`, not JSON, or of another format is ignored (logged);
  an entry that does not check out is dropped alone;
- it is written to a temporary file and renamed over the old one (a planted link or a
  foreign file in its place is replaced, never written through).

A cache that cannot be read or written never stops polling: the BMCs are then walked as
if there were none.  Not thread-safe: use it from one event loop (:meth:`SdrCache.save_async`
writes off the loop).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from console.trust import open_private_dir, write_whole

from .ipmi_health import SdrStamp, SdrSummary, SensorRef

__all__ = ["MAX_BYTES", "MAX_BMCS", "SdrCache", "sdr_cache_path"]

log = logging.getLogger(__name__)

FORMAT = "fleet-console sdr-cache 1"
FILE = "sdr-cache.json"
#: a larger file is not read (20,000 BMCs of distinct models take about 4 MB)
MAX_BYTES = 32 * 1024 * 1024
#: BMCs kept at most; past it, the oldest entry makes room for a new one
MAX_BMCS = 100_000
#: distinct summaries kept at most
MAX_SUMMARIES = 20_000
#: stamps whose walked summary others may share, at most (past it, new stamps are not shared)
MAX_STAMPS = 100_000
_MAX_REFS = 1024  # as ipmi_health's _MAX_RECORDS: a longer list is not an SDR
_DEVICE_LEN = tuple(range(11, 16))  # Get Device ID reply: 11 bytes, up to 15 with the auxiliary revision
_REPO_LEN = 11  # SDR version, record count, addition and erase timestamps


def sdr_cache_path(site: str) -> Path:
    """``$XDG_STATE_HOME/fleet-console/<site>/sdr-cache.json``."""
    from console.ops.journal import state_dir

    if not site or "/" in site or site in (".", ".."):
        raise ValueError(f"not a site name: {site!r}")
    return state_dir() / site / FILE


class SdrCache:
    """BMC (``address:port``) -> (:class:`SdrStamp`, :class:`SdrSummary`, shared), loaded from
    and saved to ``path``; shared: the summary was walked on another BMC with that stamp.

    ``path`` None: in memory only.  :meth:`load` never raises; :meth:`save` never raises.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._bmcs: dict[str, tuple[SdrStamp, SdrSummary, bool]] = {}
        self._summaries: dict[SdrSummary, SdrSummary] = {}  # one object per distinct summary
        # stamp -> the summary walked under it (on any BMC); None: walks under it disagreed
        self._by_stamp: dict[SdrStamp, SdrSummary | None] = {}
        self._walks: dict[SdrStamp, asyncio.Future[None]] = {}  # walks under way, by stamp
        self.changed = False  # since the last load or save
        self._why_not_saved = ""  # logged once, not at every save

    def __len__(self) -> int:
        return len(self._bmcs)

    # ------------------------------------------------------------- use
    def get(self, key: str, stamp: SdrStamp) -> SdrSummary | None:
        """The summary kept for ``key`` if it was read under this very ``stamp``."""
        kept = self._bmcs.get(key)
        if kept is None or kept[0] != stamp:
            return None
        return kept[1]

    def put(self, key: str, stamp: SdrStamp, summary: SdrSummary, *, shared: bool = False) -> SdrSummary:
        """Keep ``summary`` for ``key`` (``shared``: walked on another BMC, not on this one);
        returns the one copy of it (equal summaries are one object)."""
        summary = self._intern(summary)
        if not shared and self._walked(stamp, summary):
            log.info("SDR stamp of %s also vouches for another SDR: BMCs with it each walk their own", key)
        entry = (stamp, summary, shared)
        if self._bmcs.get(key) != entry:
            if key not in self._bmcs and len(self._bmcs) >= MAX_BMCS:
                del self._bmcs[next(iter(self._bmcs))]  # full: the oldest entry goes
            self._bmcs[key] = entry
            self.changed = True
        return summary

    def vouches(self, stamp: SdrStamp, summary: SdrSummary) -> bool:
        """False once walks under ``stamp`` found another summary than ``summary``."""
        return self._by_stamp.get(stamp, summary) == summary

    async def summary(self, key: str, stamp: SdrStamp, walk: Callable[[], Awaitable[SdrSummary]], *,
                      own: bool = False, wait: float = 5.0) -> tuple[SdrSummary, bool]:
        """The summary for BMC ``key``, whose stamp is ``stamp`` now, and whether it is shared
        (walked on another BMC).  In order:

        - the one kept for ``key`` under this stamp (a shared one only while :meth:`vouches`);
        - one walked on another BMC under this stamp; if such a walk is under way, its
          summary, waited for up to ``wait`` seconds (BMCs of one model polled together
          walk once);
        - ``walk()``, this BMC's own walk, which others with this stamp then wait for.

        ``own``: only the last, kept for ``key`` alone (a sensor of its shared summary was
        not present).  ``walk()``'s errors are raised; those waiting then walk themselves.
        """
        if not own:
            kept = self._bmcs.get(key)
            if kept is not None and kept[0] == stamp and (not kept[2] or self.vouches(stamp, kept[1])):
                return kept[1], kept[2]
            deadline = asyncio.get_running_loop().time() + wait
            while (known := self._by_stamp.get(stamp)) is None and stamp not in self._by_stamp:
                walking = self._walks.get(stamp)
                if walking is None:
                    break
                try:
                    async with asyncio.timeout_at(deadline):
                        await asyncio.shield(walking)  # a waiter cancelled leaves the walk alone
                except TimeoutError:
                    break  # a slow BMC's walk: walk this one (without being waited for)
            if known is not None:
                return self.put(key, stamp, known, shared=True), True
        future: asyncio.Future[None] | None = None
        if not own and stamp not in self._walks and stamp not in self._by_stamp:
            future = asyncio.get_running_loop().create_future()
            self._walks[stamp] = future
        try:
            summary = self.put(key, stamp, await walk())
        finally:
            if future is not None:  # done or failed: wake those waiting (they look again)
                del self._walks[stamp]
                future.set_result(None)
        return summary, False

    def _walked(self, stamp: SdrStamp, summary: SdrSummary) -> bool:
        """Note a summary walked under ``stamp``; True when that makes the stamp worthless."""
        known = self._by_stamp.get(stamp, summary)
        if stamp not in self._by_stamp:
            if len(self._by_stamp) < MAX_STAMPS:
                self._by_stamp[stamp] = summary
        elif known is not None and known != summary:
            self._by_stamp[stamp] = None
            return True
        return False

    def _intern(self, summary: SdrSummary) -> SdrSummary:
        kept = self._summaries.get(summary)
        if kept is not None:
            return kept
        if len(self._summaries) < MAX_SUMMARIES:
            self._summaries[summary] = summary
        return summary

    # ------------------------------------------------------------- the file
    @classmethod
    def load(cls, path: Path | None) -> SdrCache:
        """The cache kept at ``path`` (empty when there is none, or it is refused: logged)."""
        cache = cls(path)
        if path is None:
            return cache
        try:
            data = cache._read()
            dropped = cache._absorb(data) if data is not None else 0
        except _Refused as exc:
            log.warning("SDR cache %s ignored (it will be rewritten): %s", path, exc)
            return cls(path)
        except OSError as exc:
            log.warning("SDR cache %s not read: %s", path, exc.strerror or exc)
            return cls(path)
        if dropped:
            log.warning("SDR cache %s: %d entries ignored (not valid)", path, dropped)
            cache.changed = True
        if data is not None:
            log.info("SDR cache %s: %d BMCs", path, len(cache))
        return cache

    def _read(self) -> bytes | None:
        assert self.path is not None
        dfd = _open_dir(self.path.parent, create=False)
        if dfd is None:
            return None
        try:
            try:
                fd = os.open(self.path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
            except FileNotFoundError:
                return None
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise _Refused("it is a symbolic link") from None
                raise
            try:
                st = os.fstat(fd)
                _check_file(st)
                if st.st_size > MAX_BYTES:
                    raise _Refused(f"larger than {MAX_BYTES} bytes")
                chunks, left = [], MAX_BYTES + 1
                while left > 0:
                    chunk = os.read(fd, min(left, 1 << 20))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    left -= len(chunk)
                data = b"".join(chunks)
                if len(data) > MAX_BYTES:
                    raise _Refused(f"larger than {MAX_BYTES} bytes")
                return data
            finally:
                os.close(fd)
        finally:
            os.close(dfd)

    def _absorb(self, data: bytes) -> int:
        """Take the entries of a file's ``data``; returns how many were dropped (not valid)."""
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise _Refused("not JSON") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise _Refused(f"not the format {FORMAT!r}")
        raw_summaries, raw_bmcs = doc.get("summaries"), doc.get("bmcs")
        if not isinstance(raw_summaries, list) or not isinstance(raw_bmcs, dict):
            raise _Refused("no summaries or no BMCs")
        summaries = [_summary_from(x) for x in raw_summaries[:MAX_SUMMARIES]]
        dropped = sum(1 for x in summaries if x is None) + max(0, len(raw_summaries) - MAX_SUMMARIES)
        for key, value in raw_bmcs.items():
            entry = _entry_from(key, value, summaries)
            if entry is None or len(self._bmcs) >= MAX_BMCS:
                dropped += 1
                continue
            stamp, summary, shared = entry[0], self._intern(entry[1]), entry[2]
            self._bmcs[key] = (stamp, summary, shared)
            if not shared:
                self._walked(stamp, summary)
        return dropped

    def dump(self) -> bytes:
        """The file's content for what is kept now."""
        index: dict[SdrSummary, int] = {}
        bmcs: dict[str, list[Any]] = {}
        for key, (stamp, summary, shared) in self._bmcs.items():
            i = index.setdefault(summary, len(index))
            bmcs[key] = [stamp.device.hex(), stamp.repository.hex(), i, True] if shared else \
                [stamp.device.hex(), stamp.repository.hex(), i]
        summaries = [[bytes(b for r in s.thresholds for b in (r.number, r.lun)).hex(), s.has_discrete]
                     for s in index]
        doc = {"format": FORMAT, "summaries": summaries, "bmcs": bmcs}
        return json.dumps(doc, ensure_ascii=True, separators=(",", ":")).encode()

    def save(self) -> bool:
        """Write the file now if anything changed since it was read or written; False (logged) on failure."""
        if self.path is None or not self.changed:
            return True
        ok = self._write(self.dump())
        if ok:
            self.changed = False
        return ok

    async def save_async(self) -> bool:
        """:meth:`save`, the content made here and written in a thread (an fsync can take a while)."""
        if self.path is None or not self.changed:
            return True
        data = self.dump()
        self.changed = False  # what changes while writing is saved next time
        ok = await asyncio.to_thread(self._write, data)
        if not ok:
            self.changed = True
        return ok

    def _write(self, data: bytes) -> bool:
        assert self.path is not None
        try:
            dfd = _open_dir(self.path.parent, create=True)
            assert dfd is not None
        except (_Refused, OSError) as exc:
            self._not_saved(str(exc))
            return False
        try:
            write_whole(dfd, self.path.name, data)
            self._why_not_saved = ""
            return True
        except OSError as exc:
            self._not_saved(exc.strerror or str(exc))
            return False
        finally:
            os.close(dfd)

    def _not_saved(self, why: str) -> None:
        if why != self._why_not_saved:
            log.warning("SDR cache %s not saved: %s", self.path, why)
        self._why_not_saved = why


class _Refused(Exception):
    """A cache file or directory that is not to be trusted; the text says why."""


def _open_dir(path: Path, *, create: bool) -> int | None:
    """The site's state directory as a descriptor (None if missing and not ``create``); a
    symbolic link, or one not ours or open to group or others, is refused."""
    return open_private_dir(path, create=create, refused=_Refused)


def _check_file(st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise _Refused("not a regular file")
    if st.st_uid != os.geteuid():
        raise _Refused(f"owned by uid {st.st_uid}, not by you")
    if st.st_mode & 0o077:
        raise _Refused(f"mode {stat.S_IMODE(st.st_mode):04o}, open to others")


def _hex(value: Any, lengths: tuple[int, ...]) -> bytes | None:
    if not isinstance(value, str) or len(value) > 2 * max(lengths):
        return None
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return None
    return raw if len(raw) in lengths else None


def _summary_from(value: Any) -> SdrSummary | None:
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], bool) and len(value[0]) <= 4 * _MAX_REFS):
        return None
    try:
        raw = bytes.fromhex(value[0])
    except ValueError:
        return None
    if len(raw) % 2 or any(lun > 3 for lun in raw[1::2]):
        return None
    return SdrSummary(tuple(SensorRef(raw[i], raw[i + 1]) for i in range(0, len(raw), 2)), value[1])


def _entry_from(key: Any, value: Any,
                summaries: list[SdrSummary | None]) -> tuple[SdrStamp, SdrSummary, bool] | None:
    """``[device, repository, summary index]``, then ``true`` if the summary is shared."""
    if not (isinstance(key, str) and 0 < len(key) <= 300 and key.isprintable()):
        return None
    if not (isinstance(value, list) and len(value) in (3, 4) and type(value[2]) is int
            and 0 <= value[2] < len(summaries) and (len(value) == 3 or value[3] is True)):
        return None
    device, repository, summary = _hex(value[0], _DEVICE_LEN), _hex(value[1], (_REPO_LEN,)), summaries[value[2]]
    if device is None or repository is None or summary is None:
        return None
    return SdrStamp(device, repository), summary, len(value) == 4
