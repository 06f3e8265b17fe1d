"""`opsbot shell` driven through a pipe, as a newcomer without a Slack workspace would use it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def shell(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSBOT_"))}
    env.update(
        OPSBOT_CONFIG=str(ROOT / "tests" / "data" / "opsbot.yml"),
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'console.db'}",
        LOG_LEVEL="WARNING",
    )
    return subprocess.run(
        [sys.executable, "-m", "bot", "shell"],
        input=script,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


def test_console_runs_commands_and_presses_buttons(tmp_path: Path) -> None:
    result = shell(
        "/deploy help\n"
        "# a comment, then a typo\n"
        "/incident delcare P2 checkout is slow\n"
        "click 1\n"
        "as U0BOB /oncall help\n"
        "click 9\n"
        "whatever\n"
        "quit\n",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "• `/deploy status [<service>]`" in out
    assert "Did you mean declare?" in out
    assert "[1] Run /incident declare P2 checkout is slow" in out
    # the button ran the corrected command through the same handlers
    assert "INC-1 declared (P2): checkout is slow" in out
    # the console's workspace has the people the catalog names: the owners were invited
    assert "could not invite" not in out
    assert "• `/oncall [<service>]`" in out
    assert "console: there is no button [9] (buttons: 1–3)" in out
    assert "console: cannot read 'whatever'; type help" in out
    assert "Traceback" not in result.stderr


def test_console_acts_as_another_user_and_audits_it(tmp_path: Path) -> None:
    result = shell("as U0BOB /incident help\n", tmp_path)
    assert result.returncode == 0, result.stderr
    import sqlite3

    rows = sqlite3.connect(tmp_path / "console.db").execute(
        "select actor, action, outcome, channel from audit_log"
    )
    assert list(rows) == [("U0BOB", "/incident help", "usage", "C0CONSOLE")]
