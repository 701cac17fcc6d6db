"""How many threads a model's calls use when another process competes for the cores.

Numba's OpenMP layer splits each parallel kernel statically, one equal share per thread, and
waits for every share at the kernel's end.  When another process keeps one of the cores busy
the share on that core finishes late in every kernel: ResNet-18 at batch 1 on 2 cores took
39 ms per call on two threads against 18 ms on one (10 ms on two when quiet; ONNX Runtime's
dynamically scheduled pool took 21 ms beside the same neighbour; benchmarks/RESULTS.md).

So each model keeps, per thread and batch size, a :class:`TeamChooser`: it times every call,
and now and then (:data:`FIRST_PROBE_S` after the start or a switch, then at doubling
intervals up to :data:`MAX_INTERVAL_S`, or :data:`MAX_SINGLE_INTERVAL_S` below the caller's
count) runs calls with one thread fewer (below the caller's count, the caller's count in
turn), at least :data:`PROBE_CALLS` of them and :data:`PROBE_SECONDS` in all; when they take
on average at most :data:`SWITCH` times the recent calls' average, the model keeps that team
size.  On a quiet machine that costs ~20 ms of calls on one thread fewer every 8 s.  A probe
that loses costs the time its calls took beyond the recent average; the next one waits until
that is at most :data:`PROBE_SHARE` of the time since (VGG-11's calls of ~55 ms took ~100 on
one thread: at the doubling intervals alone its probes cost ~9 % of its first seconds).
``CNNC_ADAPTIVE_THREADS=0`` in the environment (read at import) or :data:`ENABLED` = False
keeps the caller's thread count always.
"""

from __future__ import annotations

import os
import statistics
from collections import deque

ENABLED = os.environ.get("CNNC_ADAPTIVE_THREADS", "1").strip() != "0"
#: seconds of calls before the first probe, and after each switch
FIRST_PROBE_S = 0.25
#: the longest interval between two probes that confirm the whole team (on a quiet machine a
#: probe of one thread fewer costs ~20 ms of calls every 8 s) or a smaller one (back to the whole
#: team within ~4 s of the neighbour leaving)
MAX_INTERVAL_S = 8.0
MAX_SINGLE_INTERVAL_S = 4.0
#: a probe runs at least this many calls, and calls for at least :data:`PROBE_SECONDS`
PROBE_CALLS = 2
PROBE_SECONDS = 0.02
#: the probed team size is taken when its calls take on average at most this fraction of the
#: recent calls' average (averages, not medians: beside a neighbour ResNet-20's calls on two
#: threads took 0.28-0.36 ms at the median but stalled for ~4.5 ms in one call of ten, while
#: on one thread they took 0.44 ms with a 90th percentile of 0.51)
SWITCH = 0.8
#: recent calls of the current team size that a probe is compared with
RECENT = 32
#: a losing probe's extra time is at most this share of the time until the next probe, which
#: comes at the latest this many seconds later (a probe that stalled must not stop them)
PROBE_SHARE = 0.02
MAX_PROBE_WAIT_S = 30.0


class TeamChooser:
    """The team size of each call of one model (one caller thread, one batch size): the
    caller's thread count until a probe of one thread fewer wins; below it, probes of one
    fewer again and of the caller's count take turns (on 2 cores: two threads or one)."""

    def __init__(self):
        self.size: int | None = None     # the current team size; None: the caller's count
        self.recent: deque = deque(maxlen=RECENT)   # seconds of recent calls at that size
        self.probe: list[float] = []     # seconds of the probe's calls so far
        self.probing = False             # the calls run the probe's team size
        self.trial = 0                   # the team size the probe runs
        self.turns = 0                   # probes so far (below the caller's count they
        #                                  alternate one fewer and the caller's count)
        self.interval = FIRST_PROBE_S
        self.next_probe: float | None = None
        self.switches = 0
        self.full = 1

    @property
    def single(self) -> bool:
        """Whether the calls run on one thread while the caller allows more."""
        return self.full > 1 and self.current() == 1

    def current(self) -> int:
        """The team size of the calls that are not probes."""
        return self.full if self.size is None else min(self.size, self.full)

    def threads(self, full: int, now: float) -> int:
        """The threads of the next call at time ``now``, ``full`` being the caller's count."""
        self.full = full
        if full <= 1 or not ENABLED:
            return full
        size = self.current()
        if self.next_probe is None:
            self.next_probe = now + self.interval
        if not self.probing and now >= self.next_probe and len(self.recent) >= 3:
            trials = [t for t in (size - 1, full) if 1 <= t != size]
            self.trial = trials[self.turns % len(trials)]
            self.turns += 1
            self.probing, self.probe = True, []
        return self.trial if self.probing else size

    def record(self, seconds: float, now: float) -> None:
        """The call that :meth:`threads` sized took ``seconds`` and ended at ``now``."""
        if not self.probing:
            self.recent.append(seconds)
            return
        self.probe.append(seconds)
        if len(self.probe) < PROBE_CALLS or sum(self.probe) < PROBE_SECONDS:
            return
        self.probing = False
        usual = statistics.fmean(self.recent)
        if statistics.fmean(self.probe) <= SWITCH * usual:
            self.size = None if self.trial >= self.full else self.trial
            self.switches += 1
            self.recent.clear()
            self.recent.extend(self.probe)
            self.interval = FIRST_PROBE_S
        else:
            longest = MAX_INTERVAL_S if self.size is None else MAX_SINGLE_INTERVAL_S
            self.interval = min(2 * self.interval, longest)
            extra = sum(self.probe) - len(self.probe) * usual
            self.next_probe = now + min(max(self.interval, extra / PROBE_SHARE),
                                        MAX_PROBE_WAIT_S)
            return
        self.next_probe = now + self.interval
