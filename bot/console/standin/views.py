"""views.*: modals opened with a trigger_id (which expires, and works once) and App Home tabs."""

from __future__ import annotations

import secrets
import time

from bot.console.standin.blocks import MAX_BLOCKS_PER_VIEW, block_errors
from bot.console.standin.wire import ApiCall, JsonDict, MethodHandler, SlackApiFailure
from bot.console.standin.workspace import Workspace

_TRIGGER_ID_LIFETIME_SECONDS = 3.0


class ViewMethods:
    """The views.* family: the views opened so far and each user's Home tab."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.views: dict[str, JsonDict] = {}
        self.home_views: dict[str, JsonDict] = {}
        self._trigger_ids: dict[str, float] = {}
        self._used_trigger_ids: set[str] = set()

    def methods(self) -> dict[str, MethodHandler]:
        return {
            "views.open": self.open,
            "views.push": self.push,
            "views.update": self.update,
            "views.publish": self.publish,
        }

    def issue_trigger_id(self) -> str:
        """A trigger_id like Slack puts in interactive payloads; it expires after 3 seconds."""
        n = self.workspace.next_id()
        trigger_id = f"{1000000000 + n}.{4000000000 + n}.{secrets.token_hex(16)}"
        self._trigger_ids[trigger_id] = time.monotonic()
        return trigger_id

    def _take_trigger_id(self, call: ApiCall) -> None:
        trigger_id = call.args.get("trigger_id") or call.args.get("interactivity_pointer")
        if not isinstance(trigger_id, str) or not trigger_id:
            raise SlackApiFailure("invalid_arguments")
        if trigger_id in self._used_trigger_ids:
            raise SlackApiFailure("exchanged_trigger_id")
        issued_at = self._trigger_ids.get(trigger_id)
        if issued_at is not None and time.monotonic() - issued_at > _TRIGGER_ID_LIFETIME_SECONDS:
            raise SlackApiFailure("expired_trigger_id")
        self._used_trigger_ids.add(trigger_id)

    @staticmethod
    def _view_arg(call: ApiCall) -> JsonDict:
        view = call.args.get("view")
        if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
            raise SlackApiFailure("invalid_arguments")
        errors = block_errors(view.get("blocks") or [], MAX_BLOCKS_PER_VIEW)
        title = (view.get("title") or {}).get("text", "")
        if view["type"] == "modal" and not title:
            errors.append("missing required field: title [json-pointer:/view/title]")
        if len(title) > 24:
            errors.append("must be less than 25 characters [json-pointer:/view/title/text]")
        if errors:
            raise SlackApiFailure("invalid_arguments", response_metadata={"messages": errors})
        return view

    def _store_view(self, view: JsonDict, *, view_id: str | None = None) -> JsonDict:
        ws = self.workspace
        view_id = view_id or f"V{ws.next_id():08d}"
        stored: JsonDict = {
            "id": view_id,
            "team_id": ws.team_id,
            "type": view["type"],
            "title": view.get("title"),
            "submit": view.get("submit"),
            "close": view.get("close"),
            "blocks": view.get("blocks") or [],
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "external_id": view.get("external_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": ws.app_id,
            "app_installed_team_id": ws.team_id,
            "bot_id": ws.bot_id,
        }
        self.views[view_id] = stored
        return stored

    def open(self, call: ApiCall) -> JsonDict:
        view = self._view_arg(call)
        self._take_trigger_id(call)
        return {"view": self._store_view(view)}

    def push(self, call: ApiCall) -> JsonDict:
        view = self._view_arg(call)
        self._take_trigger_id(call)
        return {"view": self._store_view(view)}

    def update(self, call: ApiCall) -> JsonDict:
        view = self._view_arg(call)
        view_id = call.args.get("view_id")
        external_id = call.args.get("external_id")
        current = None
        if view_id:
            current = self.views.get(view_id)
        elif external_id:
            current = next(
                (v for v in self.views.values() if v["external_id"] == external_id), None
            )
        if current is None:
            raise SlackApiFailure("not_found")
        expected_hash = call.args.get("hash")
        if expected_hash and expected_hash != current["hash"]:
            raise SlackApiFailure("hash_conflict")
        return {"view": self._store_view(view, view_id=current["id"])}

    def publish(self, call: ApiCall) -> JsonDict:
        view = self._view_arg(call)
        user_id = call.args.get("user_id")
        if user_id not in self.workspace.users:
            raise SlackApiFailure("user_not_found")
        stored = self._store_view(view)
        self.home_views[user_id] = stored
        return {"view": stored}
