"""`/postmortem` end to end: signed slash commands in; the document as the fake Slack received it,
as written to `incidents.postmortem_dir` and as kept in the database out."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

from bot import audit
from bot.catalog import Catalog
from bot.db.models import Alert, Deploy, Incident, Page, Postmortem, TimelineEvent, utc_now
from bot.db.session import Database
from tests.conftest import ROOT, RunningBot, start_bot
from tests.fakes.slack import FakeSlack
from tests.helpers.db import add
from tests.helpers.incidents import INCIDENT_CHANNEL, with_incidents

SECTIONS = (
    "## Summary",
    "## Impact",
    "## Severity",
    "## Duration and key times",
    "## Timeline",
    "## Deploys and rollbacks",
    "## Alerts",
    "## Pages",
    "## Contributing factors",
    "## What went well",
    "## Action items",
)
# Typed by people during the incident: none of it may become a mention, a heading or a link.
HOSTILE = (
    "<!channel> paged, <@U0ALICE> rolled back; @here see [docs](javascript:alert(1)) | x |\n"
    "# Root cause: <@U0BOB>"
)


@pytest.fixture
def postmortem_dir(tmp_path: Path) -> Path:
    return tmp_path / "postmortems"


@pytest.fixture
async def running(
    fake_slack: FakeSlack, database: Database, catalog: Catalog, postmortem_dir: Path
) -> AsyncIterator[RunningBot]:
    fake_slack.add_channel(
        INCIDENT_CHANNEL,
        "inc-1-checkout-down",
        members=["U0ALICE", "U0BOB", "U0CAROL", "U0DAVE", "U0ERIN"],
    )
    configured = with_incidents(
        catalog, postmortem_dir=postmortem_dir, postmortem_due=timedelta(minutes=10)
    )
    async with start_bot(fake_slack, database, configured) as bot:
        yield bot


async def incident_with_history(
    database: Database, *, detected: datetime | None = None, resolved: bool = True, **changes: Any
) -> Incident:
    """INC-1: checkout down for 45 minutes after a deploy, rolled back, with hostile user text."""
    t0 = detected or utc_now() - timedelta(hours=3)
    fields: dict[str, Any] = {
        "title": "Checkout returns 500s",
        "severity": "P1",
        "state": "resolved" if resolved else "active",
        "services": ["checkout"],
        "commander": "U0ALICE",
        "roles": {"comms": "U0CAROL"},
        "declared_by": "U0BOB",
        "channel_id": INCIDENT_CHANNEL,
        "channel_name": "inc-1-checkout-down",
        "detected_at": t0,
        "declared_at": t0 + timedelta(minutes=2),
        "acknowledged_at": t0 + timedelta(minutes=5),
        "mitigated_at": t0 + timedelta(minutes=20) if resolved else None,
        "resolved_at": t0 + timedelta(minutes=45) if resolved else None,
        "postmortem_due_at": t0 + timedelta(minutes=55) if resolved else None,
        "description": "Checkout fails for every card payment.",
        "summary": "Deploy v42 broke card payments; rolling back to v41 fixed it.\n" + HOSTILE,
    }
    fields.update(changes)
    incident = Incident(**fields)
    await add(database, incident)
    bad = Deploy(
        service="checkout",
        environment="prod",
        version="v42",
        previous_version="v41",
        strategy="blue-green",
        state="rolled_back",
        requested_by="U0DAVE",
        created_at=t0 - timedelta(minutes=30),
        finished_at=t0 - timedelta(minutes=25),
        reason="Rolled back by <@U0ALICE>: v41 is back (was v42).",
    )
    await add(
        database,
        Deploy(
            service="checkout",
            environment="prod",
            version="v40",
            strategy="blue-green",
            state="succeeded",
            requested_by="U0DAVE",
            created_at=t0 - timedelta(hours=5),
        ),
        bad,
        Deploy(
            service="payments",
            environment="prod",
            version="p7",
            strategy="canary",
            state="succeeded",
            requested_by="U0DAVE",
            created_at=t0 + timedelta(minutes=3),
        ),
    )
    rollback = Deploy(
        service="checkout",
        environment="prod",
        version="v41",
        previous_version="v42",
        strategy="rollback",
        state="succeeded",
        requested_by="U0ALICE",
        rollback_of_id=bad.id,
        created_at=t0 + timedelta(minutes=12),
        finished_at=t0 + timedelta(minutes=14),
    )
    alert = Alert(
        service="checkout",
        rule="error_rate",
        severity="critical",
        state="resolved",
        value=0.23,
        threshold=0.05,
        started_at=t0 - timedelta(minutes=1),
        fired_at=t0,
        acknowledged_at=t0 + timedelta(minutes=5),
        resolved_at=t0 + timedelta(minutes=16),
        dedup_key="checkout:error_rate:1",
        incident_id=incident.id,
    )
    await add(database, rollback, alert)
    page = Page(
        dedup_key="incident-1",
        service="checkout",
        subject_kind="incident",
        subject_id=incident.id,
        summary="INC-1 Checkout returns 500s",
        severity="P1",
        state="acknowledged",
        sent_at=t0 + timedelta(minutes=2),
        acknowledged_at=t0 + timedelta(minutes=5),
        created_at=t0 + timedelta(minutes=2),
    )
    # Inserted out of order on purpose: the document orders by time.
    events = [
        (45, "resolved", "U0ALICE", "Resolved: v41 is healthy"),
        (2, "declared", "U0BOB", "Declared P1 by <@U0BOB>"),
        (12, "rollback", None, "Rollback of checkout prod to v41 by <@U0ALICE>"),
        (30, "update", "U0CAROL", HOSTILE),
        (5, "page-acknowledged", "U0DAVE", "Page acknowledged"),
        (25, "severity", "U0ALICE", "Severity P2 → P1 by <@U0ALICE>: more cards failing"),
    ]
    await add(
        database,
        page,
        *(
            TimelineEvent(
                incident_id=incident.id,
                at=t0 + timedelta(minutes=minutes),
                kind=kind,
                actor=actor,
                text=text,
            )
            for minutes, kind, actor, text in events
        ),
    )
    return incident


def replies(bot: RunningBot) -> list[str]:
    return [m.text for m in bot.fake.messages if m.ephemeral_for or m.source == "response_url"]


async def postmortems(database: Database) -> list[Postmortem]:
    async with database.session() as session:
        return list(await session.scalars(select(Postmortem).order_by(Postmortem.id)))


async def draft(bot: RunningBot, text: str = "INC-1", **kwargs: Any) -> str:
    await bot.slack.command("/postmortem", text, **kwargs)
    await bot.settle()
    return replies(bot)[-1]


def section(document: str, heading: str) -> str:
    start = document.index(heading)
    end = document.find("\n## ", start + len(heading))
    return document[start : end if end > 0 else None]


# --- drafting ------------------------------------------------------------------------------------


async def test_draft_is_uploaded_to_the_incident_channel_written_and_kept(
    running: RunningBot, database: Database, postmortem_dir: Path
) -> None:
    await incident_with_history(database)
    reply = await draft(running, user_id="U0BOB", channel_id="C0DEPLOYS")

    assert "Postmortem draft 1 of *INC-1* (Checkout returns 500s)" in reply
    assert "is shared in <#C0INC1> as `INC-1-checkout-returns-500s.md`" in reply
    methods = [c.method for c in running.fake.calls if "file" in c.method]
    assert methods == ["files.getUploadURLExternal", "file_upload", "files.completeUploadExternal"]
    [shared] = running.fake.shared_files(INCIDENT_CHANNEL)
    assert shared.name == "INC-1-checkout-returns-500s.md"
    assert shared.title == "Postmortem INC-1: Checkout returns 500s"
    assert shared.length == len(shared.content or b"")
    assert "Postmortem draft of *INC-1*" in shared.initial_comment
    assert "`/postmortem done INC-1`" in shared.initial_comment
    share_message = running.fake.find_message(INCIDENT_CHANNEL, shared.message_ts or "")
    assert share_message is not None and share_message.text == shared.initial_comment

    on_disk = postmortem_dir / "INC-1-checkout-returns-500s.md"
    [kept] = await postmortems(database)
    assert shared.text == on_disk.read_text(encoding="utf-8") == kept.markdown
    assert (kept.created_by, kept.file_id, kept.path) == ("U0BOB", shared.id, str(on_disk))
    assert kept.markdown.startswith("# Postmortem INC-1: Checkout returns 500s\n")
    assert f"Written to `{on_disk}`." in repr(running.fake.messages[-1].blocks)


async def test_document_has_every_section_key_times_and_the_timeline_in_order(
    running: RunningBot, database: Database
) -> None:
    t0 = utc_now().replace(microsecond=0) - timedelta(hours=3)
    await incident_with_history(database, detected=t0)
    await draft(running)
    document = running.fake.shared_files(INCIDENT_CHANNEL)[0].text

    positions = [document.index(heading) for heading in SECTIONS]
    assert positions == sorted(positions)

    def at(minutes: float) -> str:
        return (t0 + timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S UTC")

    times = section(document, "## Duration and key times")
    assert f"| Detected | {at(0)} |" in times
    assert f"| Acknowledged | {at(5)} |" in times
    assert f"| Mitigated | {at(20)} |" in times
    assert f"| Resolved | {at(45)} |" in times
    assert "| Time to acknowledge (MTTA) | 5m |" in times
    assert "| Time to mitigate | 20m |" in times
    assert "| Time to resolve (MTTR) | 45m |" in times
    assert (
        "| Severity | P1 (High: major feature degradation, significant user impact) |" in document
    )
    assert f"| Review due | {at(55)} (10m after resolution) |" in document

    timeline = section(document, "## Timeline")
    rows = [line for line in timeline.splitlines() if line.startswith(f"| {t0:%Y-}")]
    assert [row.split(" | ")[1] for row in rows] == [
        "declared",
        "page-acknowledged",
        "rollback",
        "severity",
        "update",
        "resolved",
    ]
    assert rows[0].startswith(f"| {at(2)} | declared | Declarer | Declared P1 by the declarer |")
    assert "| Incident commander | Resolved: v41 is healthy |" in rows[5]
    severity = section(document, "## Severity")
    assert f"- {at(25)}: Severity P2 → P1 by the incident commander: more cards failing" in severity
    assert "| opsbot | Rollback of checkout prod to v41 by the incident commander |" in rows[2]


async def test_deploys_and_rollbacks_of_the_services_from_an_hour_before_detection(
    running: RunningBot, database: Database
) -> None:
    await incident_with_history(database)
    await draft(running)
    document = running.fake.shared_files(INCIDENT_CHANNEL)[0].text

    deploys = section(document, "## Deploys and rollbacks")
    assert "(1h before detection)" in deploys
    rows = [line for line in deploys.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) == 2, deploys  # v40 (5 h before) and payments (another service) are not
    assert rows[0].startswith("| 2 | deploy | checkout | prod | v42 | v41 | rolled back |")
    assert "| before detection | Rolled back by the incident commander: v41 is back" in rows[0]
    assert rows[1].startswith("| 4 | rollback | checkout | prod | v41 | v42 | succeeded |")
    assert "| during the incident |" in rows[1]
    alerts = section(document, "## Alerts")
    assert "| error_rate | checkout | critical | resolved | 0.23 | 0.05 |" in alerts
    pages = section(document, "## Pages")
    assert "| incident 1 | checkout | P1 | acknowledged |" in pages
    assert "| 3m | 1 |" in pages  # sent 2 min after detection, acknowledged at 5


async def test_document_is_blameless_and_user_text_cannot_mention_or_restructure(
    running: RunningBot, database: Database
) -> None:
    await incident_with_history(database)
    await draft(running)
    document = running.fake.shared_files(INCIDENT_CHANNEL)[0].text

    assert "**Blameless review.**" in document
    assert "names roles, not people" in document
    # Roles, not people: no user id and no mention of anyone appears anywhere.
    assert not re.search(r"U0[A-Z]+", document)
    assert "<@" not in document and "<!" not in document
    assert not re.search(r"(?<!`)@(here|channel)", document)
    assert "`@here`" in document
    # The hostile text stays text: no heading, link or extra table cell came from it.
    headings = [line for line in document.splitlines() if line.startswith("#")]
    assert all(h.startswith(("# Postmortem", "## ")) for h in headings), headings
    assert not re.search(r"(?<!\\)\]\(", document)  # no link: every "](" is escaped
    assert "\\[docs\\](javascript:alert(1))" in document
    update = next(line for line in document.splitlines() if "| update |" in line)
    assert len(re.findall(r"(?<!\\)\|", update)) == 5
    assert "# Root cause: the declarer |" in update  # mid-line: not a heading
    summary = section(document, "## Summary")
    assert "the incident commander rolled back" in summary
    assert "\n\\# Root cause: the declarer\n" in summary  # a line of its own: escaped


async def test_an_active_incident_gets_a_provisional_draft(
    running: RunningBot, database: Database
) -> None:
    await incident_with_history(database, resolved=False)
    reply = await draft(running)
    document = running.fake.shared_files(INCIDENT_CHANNEL)[0].text
    assert "INC-1 is still active: the document says so" in reply
    assert "> **INC-1 is still active.** This is a provisional draft" in document
    assert "| Resolved | — | active |" in document
    assert "detection to now (active)" in document


async def test_no_argument_in_the_incident_channel_means_its_incident(
    running: RunningBot, database: Database
) -> None:
    await incident_with_history(database)
    # Slack takes a command in a channel only from its members: typing it there is being in it.
    reply = await draft(running, "", user_id="U0FRANK", channel_id=INCIDENT_CHANNEL)
    assert "Postmortem draft 1 of *INC-1*" in reply
    [kept] = await postmortems(database)
    assert kept.created_by == "U0FRANK"


async def test_no_argument_outside_an_incident_channel_says_what_to_type(
    running: RunningBot, database: Database
) -> None:
    await incident_with_history(database)
    reply = await draft(running, "", channel_id="C0DEPLOYS")
    assert "this channel is not an incident channel" in reply
    assert "`/postmortem INC-<n>`" in reply
    assert await postmortems(database) == []
    assert running.fake.shared_files() == []


async def test_an_unknown_incident_is_named(running: RunningBot, database: Database) -> None:
    reply = await draft(running, "INC-99")
    assert "there is no incident INC-99" in reply
    entries = await audit.entries(database, action="/postmortem")
    assert [(e.actor, e.outcome) for e in entries] == [("U0ALICE", "refused")]


async def test_someone_outside_the_incident_cannot_draft_it(
    running: RunningBot, database: Database
) -> None:
    await incident_with_history(database)
    reply = await draft(running, user_id="U0MALLORY", channel_id="C0DEPLOYS")
    assert "only people in INC-1 can draft its postmortem" in reply
    assert running.fake.shared_files() == [] and await postmortems(database) == []
    # A member of the incident channel (asked of Slack) may, from anywhere.
    reply = await draft(running, user_id="U0ERIN", channel_id="C0DEPLOYS")
    assert "Postmortem draft 1 of *INC-1*" in reply
    asked = running.fake.calls_to("conversations.members")
    assert [c.args["channel"] for c in asked] == [INCIDENT_CHANNEL, INCIDENT_CHANNEL]


async def test_a_refused_upload_keeps_the_draft_and_says_so(
    running: RunningBot, database: Database, postmortem_dir: Path
) -> None:
    await incident_with_history(database)
    running.fake.fail_next("files.completeUploadExternal", error="not_in_channel")
    await draft(running)
    reply = running.fake.messages[-1]
    assert "is stored in opsbot, but not shared in Slack" in reply.text
    assert "Slack refused the upload: not_in_channel" in repr(reply.blocks)
    [kept] = await postmortems(database)
    assert kept.file_id is None and kept.markdown
    assert (postmortem_dir / "INC-1-checkout-returns-500s.md").read_text() == kept.markdown
    # Trying again shares it, as a second draft.
    await draft(running)
    assert len(running.fake.shared_files(INCIDENT_CHANNEL)) == 1
    assert "Draft 2 generated by opsbot" in running.fake.shared_files()[0].text


async def test_a_team_template_in_its_playbooks_folder_wins(
    fake_slack: FakeSlack, database: Database, catalog: Catalog, tmp_path: Path
) -> None:
    team = tmp_path / "team-playbooks"
    shutil.copytree(ROOT / "playbooks", team)
    (team / "postmortem.md.j2").write_text(
        "# {{ incident.key }} review ({{ incident.severity }})\n{{ incident.title }}\n"
    )
    await incident_with_history(database, title="Cart *empty* <!here>")
    environ = {"OPSBOT_PLAYBOOKS": str(team)}
    async with start_bot(fake_slack, database, catalog, environ=environ) as bot:
        await draft(bot)
        [shared] = bot.fake.shared_files(INCIDENT_CHANNEL)
    assert shared.text == "# INC-1 review (P1)\nCart \\*empty\\* `@here`\n"

    (team / "postmortem.md.j2").write_text("{{ incident.titel }}\n")  # a typo in the template
    async with start_bot(fake_slack, database, catalog, environ=environ) as bot:
        reply = await draft(bot)
    assert "the postmortem template could not be rendered (UndefinedError:" in reply
    assert "'titel'" in reply and "nothing was stored" in reply
    assert len(await postmortems(database)) == 1


# --- done ----------------------------------------------------------------------------------------


async def test_only_the_commander_marks_it_done_and_only_once(
    running: RunningBot, database: Database
) -> None:
    await incident_with_history(database)
    await draft(running, "done INC-1", user_id="U0BOB")
    assert (
        "only the incident commander of INC-1 (<@U0ALICE>) marks its postmortem done"
        in (replies(running)[-1])
    )

    await draft(running, "done inc-1", user_id="U0ALICE", channel_id="C0DEPLOYS")
    assert "The postmortem of *INC-1* (Checkout returns 500s) is done" in replies(running)[-1]
    announced = [m for m in running.fake.messages if m.channel == INCIDENT_CHANNEL]
    assert "is done, marked by <@U0ALICE>. No more reminders." in announced[-1].text
    async with database.session() as session:
        incident = await session.get(Incident, 1)
        assert incident is not None
        assert incident.postmortem_done_by == "U0ALICE" and incident.postmortem_done_at
        notes = await session.scalars(
            select(TimelineEvent.text).where(TimelineEvent.kind == "postmortem")
        )
        assert list(notes) == ["Postmortem marked done"]

    await draft(running, "done INC-1", user_id="U0ALICE")
    assert "was already marked done by <@U0ALICE>" in replies(running)[-1]


async def test_an_active_incident_cannot_have_its_postmortem_done(
    running: RunningBot, database: Database
) -> None:
    await incident_with_history(database, resolved=False)
    await draft(running, "done INC-1", user_id="U0ALICE")
    assert "INC-1 is still active: resolve it with `/incident resolve`" in replies(running)[-1]
    await draft(running, "done INC-7", user_id="U0ALICE")
    assert "there is no incident INC-7" in replies(running)[-1]


# --- the fake's upload endpoints, through slack_sdk ---------------------------------------------


async def test_the_fake_slack_takes_uploads_as_slack_does(fake_slack: FakeSlack) -> None:
    client = AsyncWebClient(token="xoxb-test", base_url=fake_slack.api_url)
    response = await client.files_upload_v2(
        channel="C0NOTES", filename="notes.md", title="Notes", content="# hi\n", initial_comment="x"
    )
    file_id = response["file"]["id"]
    assert response["file"]["title"] == "Notes" and response["file"]["channels"] == ["C0NOTES"]
    info = await client.files_info(file=file_id)
    assert info["content"] == "# hi\n"
    assert [f.text for f in fake_slack.shared_files("C0NOTES")] == ["# hi\n"]

    with pytest.raises(SlackApiError) as refused:
        await client.files_completeUploadExternal(files=[{"id": file_id}], channel_id="C0NOTES")
    assert refused.value.response["error"] == "file_not_found"  # completed once only
    with pytest.raises(SlackApiError) as refused:
        await client.api_call("files.getUploadURLExternal", params={"filename": "a.md"})
    assert refused.value.response["error"] == "invalid_arguments"  # no length
    fake_slack.channels["C0NOTES"]["is_archived"] = True
    with pytest.raises(SlackApiError) as refused:
        await client.files_upload_v2(channel="C0NOTES", filename="b.md", content="b")
    assert refused.value.response["error"] == "is_archived"
