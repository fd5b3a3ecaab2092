"""What lets an interrupted lab run go on (`python -m lab --out DIR --resume`): the run's settings and sessions in
DIR/run.json, and a guest.json beside each guest's result.json once that guest has ended. A run goes on only with
the same lab, exporter, mixin and rules (their git trees), whatever else changed."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

WATCHED = ("lab", "exporter", "mixin", "alerts")  # what a guest runs or judges with


def git(project: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(project), *args], capture_output=True, text=True).stdout.strip()


def revision(project: Path) -> str:
    """What a guest runs and judges with: the git trees of WATCHED at HEAD, with `-dirty` when the work tree differs
    from them. Commits that change nothing there (docs, tests) leave it as it is, so a run goes on across them."""
    trees = git(project, "rev-parse", *(f"HEAD:{part}" for part in WATCHED)).split()
    if len(trees) != len(WATCHED):
        return "unknown"
    return "-".join(tree[:12] for tree in trees) + ("-dirty" if git(project, "status", "--porcelain", "--", *WATCHED)
                                                  else "")


def commit(project: Path) -> str:
    """The commit checked out, for the record."""
    return git(project, "rev-parse", "HEAD") or "unknown"


def resume_refusal(run_file: Path, settings: dict[str, Any]) -> str | None:
    """Why the run recorded in run_file cannot be gone on with under these settings (None: it can)."""
    if not run_file.exists():
        return f"{run_file.parent} holds no lab run ({run_file.name} is missing)"
    if settings["revision"] == "unknown":
        return "the project is not a git checkout with the lab, exporter, mixin and rules: the run's could not be told"
    if settings["revision"].endswith("-dirty"):
        return (f"the lab, exporter, mixin or rules have uncommitted changes ({settings['revision']}): the results "
                "could not be told apart")
    recorded = json.loads(run_file.read_text())
    for name, value in settings.items():
        if recorded.get(name) != value:
            return f"the run was made with {name} {recorded.get(name)!r}, this one has {value!r}"
    return None


def record_session(run_file: Path, settings: dict[str, Any], resumed: bool, ended: bool = False,
                   commit: str = "") -> None:
    """Write the run's settings and when each of its sessions started and ended (UTC, and on which commit) to
    run_file."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sessions = json.loads(run_file.read_text())["sessions"] if resumed or ended else []
    if ended:
        sessions[-1]["ended"] = now
    else:
        sessions.append({"started": now, "commit": commit})
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
