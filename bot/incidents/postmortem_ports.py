"""What postmortems need from outside: the database, the catalog, a notifier, and the Slack seams
to share a file and list a channel's members (implemented in bot/slack/files.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from bot.catalog import Catalog
from bot.db.models import utc_now
from bot.db.session import Database
from bot.messages import Notifier, RichText

SHIPPED_TEMPLATES = Path(__file__).resolve().parents[2] / "playbooks"


class UploadFailed(Exception):
    """The document could not be shared in the channel; the message says why."""


class FileUploader(Protocol):
    async def upload(
        self, channel: str, *, filename: str, title: str, content: str, comment: RichText
    ) -> str:
        """Share a text file in `channel` with a comment; returns the file's id."""
        ...


class ChannelMembers(Protocol):
    async def members(self, channel: str) -> frozenset[str]:
        """The user ids in `channel` (empty when unknown)."""
        ...


@dataclass
class PostmortemDeps:
    db: Database
    catalog: Catalog
    notifier: Notifier
    uploader: FileUploader
    members: ChannelMembers | None = None
    # Looked in first to last: a team's playbooks folder, then the template shipped with opsbot.
    template_dirs: Sequence[Path] = (SHIPPED_TEMPLATES,)
    # A relative `incidents.postmortem_dir` is relative to this folder (the catalog's).
    base_dir: Path = field(default_factory=Path.cwd)
    clock: Callable[[], datetime] = utc_now
