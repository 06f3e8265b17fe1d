"""Recent samples of every (metric, service) kept between polls, so a poll fetches only what is new.

A rule needs its `for` duration of history (plus a poll or two) to say "held for 15m", but
fetching 15 minutes of every service at every poll costs the metrics source and the bot far more
than the one new sample per service a poll adds. So the first poll after a start fetches the
whole window, and every later poll only the points since the last one it has (and that last one
again, in case a late scrape changed it).

Points lie on a grid of `step` anchored at the first poll: the scheduler fires at that phase, so
the newest point is the poll's own time, and points of successive fetches coincide exactly (a
re-fetched point replaces the cached one). Samples are stored in two `array('d')`s per series:
16 bytes a sample instead of two Python objects, which matters with 10,000 services.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.metrics.base import Sample

__all__ = ["SampleWindow", "Window"]


@dataclass
class Window:
    """One series' recent samples, oldest first (UNIX seconds and values)."""

    times: array[float] = field(default_factory=lambda: array("d"))
    values: array[float] = field(default_factory=lambda: array("d"))

    def merge(
        self,
        samples: Iterable[Sample],
        *,
        keep_after: float,
        stamps: dict[datetime, float] | None = None,
    ) -> None:
        """Add `samples` (oldest first), replacing cached ones from the first new time on.

        `stamps` caches `datetime.timestamp()` across the series of one answer (they share their
        few timestamps).
        """
        times, values = self.times, self.values
        stamps = {} if stamps is None else stamps
        first = True
        for sample in samples:
            stamp = stamps.get(sample.at)
            if stamp is None:
                stamp = stamps[sample.at] = sample.at.timestamp()
            if first:
                first = False
                # Usually the re-fetched newest point: drop it (and anything after) for the new.
                if times and stamp <= times[-1] + 1e-6:
                    cut = bisect_left(times, stamp - 1e-6)
                    del times[cut:]
                    del values[cut:]
            times.append(stamp)
            values.append(sample.value)
        if times and times[0] < keep_after:
            drop = bisect_left(times, keep_after)
            del times[:drop]
            del values[:drop]

    @property
    def newest(self) -> tuple[float, float] | None:
        return (self.times[-1], self.values[-1]) if self.times else None

    def samples(self) -> list[Sample]:
        """The samples as objects, for `bot.metrics.rules.evaluate`."""
        return [
            Sample(at=datetime.fromtimestamp(t, UTC), value=v)
            for t, v in zip(self.times, self.values, strict=True)
        ]


class SampleWindow:
    """The windows of every series of the alert loop, and which range the next poll must fetch."""

    def __init__(self, *, step: timedelta, keep: timedelta) -> None:
        self.step = step
        self.keep = keep
        self.anchor: float | None = None
        self.windows: dict[tuple[str, str], Window] = {}
        # Per query key: the newest grid point fetched successfully.
        self.fetched_until: dict[str, float] = {}

    def grid_end(self, now: datetime) -> datetime:
        """The newest grid point at or before `now` (the grid is anchored at the first poll)."""
        stamp = now.timestamp()
        step = self.step.total_seconds()
        if self.anchor is None:
            self.anchor = stamp
        periods = (stamp - self.anchor) // step
        return datetime.fromtimestamp(self.anchor + periods * step, UTC)

    def start_for(self, keys: Iterable[str], end: datetime) -> datetime:
        """Where the next fetch of `keys` must start: the oldest point one of them lacks."""
        step = self.step.total_seconds()
        full = end.timestamp() - self.keep.total_seconds()
        starts = [max(self.fetched_until.get(key, full), full) for key in keys]
        start = min(starts, default=full)
        # The newest known point is asked again (a late scrape may have changed it), and a
        # range has at least two points: a range query needs end > start.
        start = min(start, end.timestamp() - step)
        return datetime.fromtimestamp(start, UTC)

    def merge(
        self, key: str, metric: str, by_service: Mapping[str, Iterable[Sample]], end: datetime
    ) -> None:
        """Store the answer of query `key` (samples by service) fetched up to `end`."""
        keep_after = end.timestamp() - self.keep.total_seconds() - self.step.total_seconds()
        stamps: dict[datetime, float] = {}
        for service, samples in by_service.items():
            window = self.windows.get((metric, service))
            if window is None:  # not setdefault: building a Window per call costs 0.1 s a poll
                window = self.windows[(metric, service)] = Window()
            window.merge(samples, keep_after=keep_after, stamps=stamps)
        self.fetched_until[key] = end.timestamp()

    def window(self, metric: str, service: str) -> Window | None:
        return self.windows.get((metric, service))
