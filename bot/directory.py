"""Who belongs to which Slack user group: how deployers/approvers given as groups are checked."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol


class Directory(Protocol):
    async def groups_of(self, user_id: str, among: Collection[str]) -> set[str]: ...
