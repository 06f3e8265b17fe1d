"""A deploy's one message, posted once and updated in place (coalesced), and its thread."""

from __future__ import annotations

import asyncio
import logging

from bot.db.models import Deploy
from bot.deploys.deps import DeployDeps
from bot.deploys.messaging import deploy_message
from bot.deploys.store import DeployStore
from bot.messages import Message, MessageRef, RichText

log = logging.getLogger(__name__)


class DeployPublisher:
    """Says what deploys do; Slack trouble never stops a deploy."""

    update_interval = 1.0  # seconds between two updates of one deploy's message

    def __init__(self, deps: DeployDeps, store: DeployStore) -> None:
        self.deps = deps
        self.store = store
        self._pending: dict[int, tuple[MessageRef, Message]] = {}
        self._publishers: dict[int, asyncio.Task[None]] = {}
        self._posting: dict[int, asyncio.Future[None]] = {}  # a first post on its way

    def message(self, deploy: Deploy) -> Message:
        env = self.deps.catalog.environment(deploy.environment)
        return deploy_message(deploy, approvals_required=env.approvals if env else 0)

    async def publish(self, deploy: Deploy) -> None:
        """Post the deploy's message, or update it in place.

        Updates are coalesced: at most one chat.update per deploy every `update_interval`
        seconds, always with the newest state (Slack rate-limits chat.update; fifty deploys
        stepping at once must not flood it). `flush` sends what is pending.
        """
        await self.posted(deploy)
        if deploy.message_ts and deploy.channel:
            self._pending[deploy.id] = (
                MessageRef(deploy.channel, deploy.message_ts),
                self.message(deploy),
            )
            if deploy.id not in self._publishers:
                self._publishers[deploy.id] = asyncio.ensure_future(self._publisher(deploy.id))
            return
        message = self.message(deploy)
        posting = self._posting[deploy.id] = asyncio.get_running_loop().create_future()
        try:
            ref = await self.deps.notifier.post(self._channel_for(deploy.service), message)
        except Exception:
            log.exception("could not publish the message of deploy #%s", deploy.id)
            return
        else:
            await self.store.save(deploy, channel=ref.channel, message_ts=ref.ts, thread_ts=ref.ts)
        finally:
            del self._posting[deploy.id]
            posting.set_result(None)

    async def posted(self, deploy: Deploy) -> None:
        """Until the deploy's first message, if it is being posted, is out (or has failed): an
        update or a thread line must not race it and post a second message, or none."""
        posting = self._posting.get(deploy.id)
        if posting is not None:
            await asyncio.shield(posting)

    async def _publisher(self, deploy_id: int) -> None:
        try:
            while deploy_id in self._pending:
                ref, message = self._pending.pop(deploy_id)
                try:
                    await self.deps.notifier.update(ref, message)
                except Exception:
                    log.exception("could not update the message of deploy #%s", deploy_id)
                if deploy_id in self._pending:
                    await asyncio.sleep(self.update_interval)  # deliberate: Slack's rate limit
        finally:
            self._publishers.pop(deploy_id, None)

    async def flush(self, deploy_id: int | None = None) -> None:
        """Wait until pending message updates (of one deploy, or all) have been sent."""
        while True:
            tasks = [
                task
                for key, task in self._publishers.items()
                if deploy_id is None or key == deploy_id
            ]
            if not tasks:
                return
            await asyncio.gather(*tasks, return_exceptions=True)

    async def say(self, deploy: Deploy, text: RichText, preformatted: str | None = None) -> None:
        """A line in the deploy's thread (details, command output)."""
        await self.posted(deploy)
        if not (deploy.channel and deploy.thread_ts):
            return
        thread = MessageRef(deploy.channel, deploy.thread_ts, deploy.thread_ts)
        try:
            await self.deps.notifier.post(
                deploy.channel, Message(text, preformatted=preformatted), thread=thread
            )
        except Exception:
            log.exception("could not post to the thread of deploy #%s", deploy.id)

    def _channel_for(self, service: str) -> str:
        svc = self.deps.catalog.service(service)
        channel = getattr(svc, "channel", None) if svc else None
        return channel or self.deps.catalog.slack.channels.deploys
