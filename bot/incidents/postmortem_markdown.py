"""The postmortem as Markdown that user text cannot break.

Everything printed by the template goes through `markdown_inline` unless it is `Markdown`
already, so text people typed (titles, updates, reasons) cannot add headings, tables, links or
Slack mentions to the document, and user mentions become the role the person held.

The timeline keeps text in Slack's message form (pinned messages arrive so, and the bot's own
entries are stored alike), so reading that form back (`_without_slack_markup`) is done here,
where the document is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2

from bot.catalog import format_duration

TEMPLATE_NAME = "postmortem.md.j2"


class Markdown(str):
    """Text that is Markdown already: the template prints it as it is."""

    __slots__ = ()


RESPONDER = "a responder"
_SLACK_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))
_SLACK_MARKUP = re.compile(r"<([@#!])([^<>|\s]*)(?:\|([^<>]*))?>")
_BROADCAST = re.compile(r"(?<![\w`])@(here|channel|everyone)\b", re.IGNORECASE)
_PUNCTUATION = re.compile(r"([\\`*\[\]<>|~{}])")
_LONE_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_ENTITY = re.compile(r"&(?=#?[0-9A-Za-z]+;)")
_BLOCK_MARK = re.compile(r"^([#>+=-])")
_LIST_NUMBER = re.compile(r"^(\d+)([.)])")


def _without_slack_markup(text: str, people: Mapping[str, str]) -> str:
    """Slack's `<@U…>`, `<!here>`, `<#C…|name>`: roles and plain words instead of mentions."""
    for entity, char in _SLACK_ENTITIES:
        text = text.replace(entity, char)

    def plain(match: re.Match[str]) -> str:
        sigil, target, label = match.group(1), match.group(2), match.group(3)
        if sigil == "@":
            return people.get(target, RESPONDER)
        if sigil == "#":
            return f"#{label or target}"
        if target in ("here", "channel", "everyone"):
            return f"@{target}"
        if target.startswith("subteam^"):
            return f"{(label or 'a user group').lstrip('@')} (user group)"
        return label or target

    return _SLACK_MARKUP.sub(plain, text)


def markdown_inline(value: object, people: Mapping[str, str] | None = None) -> Markdown:
    """One line of literal text: no Markdown syntax, no mentions, no line breaks survive."""
    text = _without_slack_markup(str(value), people or {})
    text = " ".join(text.split())
    text = _PUNCTUATION.sub(r"\\\1", text)
    text = _LONE_UNDERSCORE.sub(r"\\_", text)
    text = _ENTITY.sub(r"\\&", text)
    text = _BLOCK_MARK.sub(r"\\\1", text)
    text = _LIST_NUMBER.sub(r"\1\\\2", text)
    # A broadcast word stays readable but inert (code is never a mention).
    return Markdown(_BROADCAST.sub(lambda m: f"`@{m.group(1)}`", text))


def markdown_paragraphs(value: object, people: Mapping[str, str] | None = None) -> Markdown:
    """Several lines of literal text: each line escaped on its own, blank lines kept."""
    lines = [markdown_inline(line, people) for line in str(value).splitlines()]
    return Markdown("\n".join(lines).strip("\n"))


def format_time(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def format_span(value: timedelta | None) -> str:
    if value is None:
        return "—"
    return format_duration(timedelta(seconds=max(0, round(value.total_seconds()))))


def slug(title: str) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return words[:48].rstrip("-") or "incident"


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def render(
    template_dirs: Sequence[Path], context: Mapping[str, Any], people: Mapping[str, str]
) -> str:
    """The Markdown document from `postmortem.md.j2` (the first of `template_dirs` that has it);
    every printed value is escaped unless it is `Markdown`; `people` maps user ids to roles."""
    in_text = {user: f"the {label}" for user, label in people.items()}

    def finalize(value: object) -> object:
        if value is None:
            return "—"
        if isinstance(value, Markdown):
            return value
        if isinstance(value, datetime):
            return format_time(value)
        if isinstance(value, timedelta):
            return format_span(value)
        if isinstance(value, bool | int | float):
            return value
        return markdown_inline(value, in_text)

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in template_dirs]),
        autoescape=False,  # Markdown, not HTML: `finalize` escapes instead
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=finalize,
    )
    environment.filters["md"] = lambda value: markdown_inline(value, in_text)
    environment.filters["paragraphs"] = lambda value: markdown_paragraphs(value, in_text)
    environment.filters["when"] = lambda value: Markdown(format_time(value))
    environment.filters["span"] = lambda value: Markdown(format_span(value))
    environment.filters["who"] = lambda user: markdown_inline(
        _capitalised(people.get(user, "responder")) if user else "opsbot"
    )
    return environment.get_template(TEMPLATE_NAME).render(**context)
