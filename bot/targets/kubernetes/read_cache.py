"""The 2 s Kubernetes read cache: a performance measure, kept apart so the rest reads plainly.

Before a deploy touches its target, the gates read what runs (`current()`, one GET of the
Deployment); moments later the deploy's first step GETs the same Deployment again. Letting that one
read use the answer saves one Kubernetes API read per deploy, on the path every deploy waits on:
bench/README.md ("the gates' read of the Deployment serves the run's first step") measured it with
bench/deploy_overhead.py at 50 concurrent deploys (p99 to the first write 0.47–0.57 s, 22 ms CPU
per deploy, on a slower hour than the run before it).
"""

from __future__ import annotations

import asyncio
from typing import Any

# How long the Deployment `current()` read may stand in for the next read of it.
JUST_READ_SECONDS = 2.0


class JustRead:
    """One Deployment read kept for the next read of the same Deployment: used once, only within
    JUST_READ_SECONDS, and forgotten on any write (a change makes it stale)."""

    def __init__(self) -> None:
        self._kept: tuple[float, str, Any] | None = None

    def keep(self, name: str, deployment: Any) -> None:
        self._kept = (asyncio.get_running_loop().time(), name, deployment)

    def take(self, name: str) -> Any | None:
        """The kept read of `name` if it is fresh; either way nothing is kept afterwards."""
        kept, self._kept = self._kept, None
        if kept is None:
            return None
        at, kept_name, deployment = kept
        if kept_name == name and asyncio.get_running_loop().time() - at < JUST_READ_SECONDS:
            return deployment
        return None

    def forget(self) -> None:
        self._kept = None
