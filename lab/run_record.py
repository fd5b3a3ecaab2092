"""What lets an interrupted lab run go on (`python -m lab --out DIR --resume`): the run's settings and sessions in
DIR/run.json, and a guest.json beside each guest's result.json once that guest has ended."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

WATCHED = ("lab", "exporter", "mixin", "alerts")  # what a guest runs or judges with


def revision(project: Path) -> str:
    """The commit the lab runs, with `-dirty` when what a guest runs or judges with differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(project), *args], capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "HEAD") or "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--", *WATCHED) else "")


def resume_refusal(run_file: Path, settings: dict[str, Any]) -> str | None:
    """Why the run recorded in run_file cannot be gone on with under these settings (None: it can)."""
    if not run_file.exists():
        return f"{run_file.parent} holds no lab run ({run_file.name} is missing)"
    if settings["revision"] == "unknown" or settings["revision"].endswith("-dirty"):
        return f"the code is not a clean commit ({settings['revision']}): the results could not be told apart"
    recorded = json.loads(run_file.read_text())
    for name, value in settings.items():
        if recorded.get(name) != value:
            return f"the run was made with {name} {recorded.get(name)!r}, this one has {value!r}"
    return None


def record_session(run_file: Path, settings: dict[str, Any], resumed: bool, ended: bool = False) -> None:
    """Write the run's settings and when each of its sessions started and ended (UTC) to run_file."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sessions = json.loads(run_file.read_text())["sessions"] if resumed or ended else []
    if ended:
        sessions[-1]["ended"] = now
    else:
        sessions.append({"started": now})
    run_file.write_text(json.dumps({**settings, "sessions": sessions}, indent=1) + "\n")


def record_guest(directory: Path, status: int, seconds: float) -> None:
    """Mark the guest of directory as ended with its result written."""
    (directory / "guest.json").write_text(json.dumps({"status": status, "seconds": seconds}) + "\n")


def finished_seconds(directory: Path) -> float | None:
    """The seconds the guest of directory took, when it ended with its result; None when it must run again."""
    guest, result = directory / "guest.json", directory / "result.json"
    if not guest.exists() or not result.exists():
        return None
    return float(json.loads(guest.read_text())["seconds"])
