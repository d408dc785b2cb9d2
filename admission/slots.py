"""Verification slots per registry host: one bad registry cannot take every verification thread.

A worker verifies images on a thread pool shared by all its requests.  A registry
that stalls holds each thread that talks to it until the request's deadline cuts
the exchange off; without a bound, enough images on it (one pod with sixteen
containers is enough) take every thread, and requests for healthy registries
queue behind them until they time out too.  So each host gets at most ``limit``
verifications at once (``maxConcurrentPerRegistry``), whatever the requests.

A request takes up to as many slots of a host as it has images there, and runs
its images of that host through them.  When the host has no free slot, the
request waits for one — in its own request thread, never a pool thread — until
its deadline; but when the host's last verification timed out (it is stalling,
not just busy) it does not wait: the image is denied at once, so a registry that
stalls holds at most ``limit`` request threads too, not every one that names it.
"""

from __future__ import annotations

import threading

from attest.deadline import Deadline

MAX_STALLED_HOSTS = 4096  # remembered stalling hosts (oldest forgotten first)


class RegistrySlots:
    """Counts of verifications running per registry host, bounded by ``limit``; thread-safe."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._busy: dict[str, int] = {}
        self._stalled: dict[str, None] = {}  # an ordered set
        self._condition = threading.Condition()

    def take(self, host: str, wanted: int, deadline: Deadline, *, wait: bool) -> int:
        """Take up to ``wanted`` free slots of ``host``; how many were taken.

        With none free: ``0`` at once unless ``wait``; with ``wait``, the first slot
        that frees up before ``deadline``, or ``0`` at once if the host is stalling.
        """
        with self._condition:
            while True:
                free = self.limit - self._busy.get(host, 0)
                if free > 0:
                    taken = min(wanted, free)
                    self._busy[host] = self._busy.get(host, 0) + taken
                    return taken
                if not wait or host in self._stalled or deadline.expired:
                    return 0
                self._condition.wait(deadline.remaining())

    def give_back(self, host: str, *, timed_out: bool | None) -> None:
        """Free one slot; ``timed_out`` says whether its last verification ran out of time
        (the host is then stalling, until a verification against it ends in time), ``None``
        that it verified nothing."""
        with self._condition:
            left = self._busy.get(host, 0) - 1
            if left > 0:
                self._busy[host] = left
            else:
                self._busy.pop(host, None)
            if timed_out is not None:
                self._stalled.pop(host, None)
            if timed_out:
                self._stalled[host] = None
                if len(self._stalled) > MAX_STALLED_HOSTS:
                    del self._stalled[next(iter(self._stalled))]
            self._condition.notify_all()

    def busy(self, host: str) -> int:
        with self._condition:
            return self._busy.get(host, 0)
