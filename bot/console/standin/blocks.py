"""The Block Kit limits Slack enforces most often, answered in Slack's own error wording."""

from __future__ import annotations

from typing import Any

MAX_BLOCKS_PER_MESSAGE = 50
MAX_BLOCKS_PER_VIEW = 100
_MAX_SECTION_TEXT_CHARS = 3000


def _text_length(text_object: Any) -> int:
    if isinstance(text_object, dict):
        return len(str(text_object.get("text", "")))
    return 0


def block_errors(blocks: list[Any], max_blocks: int) -> list[str]:
    """Slack's complaints about these blocks (none when Slack would take them)."""
    errors: list[str] = []
    if len(blocks) > max_blocks:
        errors.append(f"no more than {max_blocks} items allowed [json-pointer:/blocks]")
    block_ids: set[str] = set()
    for index, block in enumerate(blocks):
        pointer = f"/blocks/{index}"
        if not isinstance(block, dict) or "type" not in block:
            errors.append(f"missing required field: type [json-pointer:{pointer}]")
            continue
        block_id = block.get("block_id")
        if isinstance(block_id, str):
            if len(block_id) > 255:
                errors.append(f"must be less than 256 characters [json-pointer:{pointer}/block_id]")
            if block_id in block_ids:
                errors.append(f"duplicate block_id [json-pointer:{pointer}/block_id]")
            block_ids.add(block_id)
        errors.extend(_kind_errors(block, pointer))
    return errors


def _kind_errors(block: dict[str, Any], pointer: str) -> list[str]:
    """The limits of one block's own type (section, header, context, actions)."""
    errors: list[str] = []
    kind = block["type"]
    if kind == "section":
        if "text" not in block and "fields" not in block:
            errors.append(f"must provide text or fields [json-pointer:{pointer}]")
        if _text_length(block.get("text")) > _MAX_SECTION_TEXT_CHARS:
            errors.append(f"must be less than 3001 characters [json-pointer:{pointer}/text/text]")
        fields = block.get("fields") or []
        if len(fields) > 10:
            errors.append(f"no more than 10 items allowed [json-pointer:{pointer}/fields]")
        for field_index, field_object in enumerate(fields):
            if _text_length(field_object) > 2000:
                errors.append(
                    "must be less than 2001 characters "
                    f"[json-pointer:{pointer}/fields/{field_index}/text]"
                )
    elif kind == "header":
        if _text_length(block.get("text")) > 150:
            errors.append(f"must be less than 151 characters [json-pointer:{pointer}/text/text]")
    elif kind == "context":
        if len(block.get("elements") or []) > 10:
            errors.append(f"no more than 10 items allowed [json-pointer:{pointer}/elements]")
    elif kind == "actions" and len(block.get("elements") or []) > 25:
        errors.append(f"no more than 25 items allowed [json-pointer:{pointer}/elements]")
    return errors
