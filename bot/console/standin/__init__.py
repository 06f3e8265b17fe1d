"""A small, stateful local Slack Web API (and response_url endpoint) served by aiohttp on loopback.

`opsbot shell` runs the bot against it, and the test fake (`tests/fakes/slack.py`) extends it.
It speaks the wire protocol slack_sdk speaks to slack.com: POST or GET `/api/<method>`, arguments
in the query string, a form body or a JSON body, a Bearer token; answers are `{"ok": true, ...}`
or `{"ok": false, "error": "..."}` with HTTP 200.

server.py serves it (routing, arguments, tokens); workspace.py holds its state (people, channels,
messages); one module per Slack API family answers that family's methods.
"""

from bot.console.standin.server import SlackStandIn
from bot.console.standin.wire import (
    Answer,
    ApiCall,
    JsonDict,
    Message,
    MethodHandler,
    SharedFile,
    SlackApiFailure,
)

__all__ = [
    "Answer",
    "ApiCall",
    "JsonDict",
    "Message",
    "MethodHandler",
    "SharedFile",
    "SlackApiFailure",
    "SlackStandIn",
]
