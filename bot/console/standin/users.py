"""auth.test, users.* and usergroups.users.list: who the bot is and who is in the workspace."""

from __future__ import annotations

from bot.console.standin.wire import ApiCall, JsonDict, MethodHandler, SlackApiFailure
from bot.console.standin.workspace import Workspace


class UserMethods:
    """The people families (auth, users, usergroups), over the workspace's members."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    def methods(self) -> dict[str, MethodHandler]:
        return {
            "auth.test": self.auth_test,
            "users.info": self.users_info,
            "users.list": self.users_list,
            "users.lookupByEmail": self.users_lookup_by_email,
            "usergroups.users.list": self.usergroups_users_list,
        }

    def auth_test(self, call: ApiCall) -> JsonDict:
        ws = self.workspace
        result: JsonDict = {
            "url": f"https://{ws.team_domain}.slack.com/",
            "team": ws.team_domain,
            "user": ws.users[ws.bot_user_id]["name"],
            "team_id": ws.team_id,
            "user_id": ws.bot_user_id,
            "is_enterprise_install": False,
        }
        if call.token and call.token.startswith("xoxb-"):
            result["bot_id"] = ws.bot_id
        return result

    def users_info(self, call: ApiCall) -> JsonDict:
        user = self.workspace.users.get(call.args.get("user", ""))
        if user is None:
            raise SlackApiFailure("user_not_found")
        return {"user": user}

    def users_list(self, call: ApiCall) -> JsonDict:
        members = list(self.workspace.users.values())
        return {"members": members, "response_metadata": {"next_cursor": ""}}

    def users_lookup_by_email(self, call: ApiCall) -> JsonDict:
        email = str(call.args.get("email") or "").lower()
        for user in self.workspace.users.values():
            if email and user["profile"].get("email", "").lower() == email:
                return {"user": user}
        raise SlackApiFailure("users_not_found")

    def usergroups_users_list(self, call: ApiCall) -> JsonDict:
        group = self.workspace.usergroups.get(call.args.get("usergroup", ""))
        if group is None:
            raise SlackApiFailure("no_such_subteam")
        return {"users": list(group)}
