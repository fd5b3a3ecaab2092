"""An interrupted lab run goes on only with the code and settings it was made with (lab/run_record.py), and keeps
exactly the guests that ended with a result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import PROJECT

sys.path.insert(0, str(PROJECT))
from lab import run_record  # noqa: E402

SETTINGS = {"profile": "full", "memcg_dying": None, "memcg_rate": None, "revision": "0" * 40}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def test_a_run_records_its_sessions(tmp_path: Path) -> None:
    run = tmp_path / "run.json"
    run_record.record_session(run, SETTINGS, resumed=False)
    run_record.record_session(run, SETTINGS, resumed=True)
    run_record.record_session(run, SETTINGS, resumed=True, ended=True)
    recorded = json.loads(run.read_text())
    assert {k: recorded[k] for k in SETTINGS} == SETTINGS
    first, second = recorded["sessions"]
    assert "ended" not in first and second["ended"] >= second["started"]
    run_record.record_session(run, SETTINGS, resumed=False)  # a new run in the same directory starts over
    assert len(json.loads(run.read_text())["sessions"]) == 1


def test_resuming_needs_the_same_code_and_settings(tmp_path: Path) -> None:
    run = tmp_path / "run.json"
    assert "holds no lab run" in str(run_record.resume_refusal(run, SETTINGS))
    run_record.record_session(run, SETTINGS, resumed=False)
    assert run_record.resume_refusal(run, SETTINGS) is None
    for name, other in (("profile", "ci"), ("memcg_rate", 50.0), ("memcg_dying", 300), ("revision", "1" * 40)):
        refusal = run_record.resume_refusal(run, {**SETTINGS, name: other})
        assert refusal is not None and name in refusal, (name, refusal)
    dirty = run_record.resume_refusal(run, {**SETTINGS, "revision": "0" * 40 + "-dirty"})
    assert dirty is not None and "not a clean commit" in dirty


def test_the_revision_is_dirty_only_for_what_a_guest_runs(tmp_path: Path) -> None:
    repo = tmp_path / "project"
    for part in run_record.WATCHED:
        (repo / part).mkdir(parents=True)
        (repo / part / "file").write_text("1\n")
    (repo / "docs").mkdir()
    (repo / "docs" / "lab.md").write_text("1\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=lab", "-c", "user.email=lab@localhost", "commit", "-qm", "lab")
    commit = git(repo, "rev-parse", "HEAD")
    assert run_record.revision(repo) == commit
    (repo / "docs" / "lab.md").write_text("2\n")  # the docs a run's table goes into
    assert run_record.revision(repo) == commit
    for part in run_record.WATCHED:
        (repo / part / "file").write_text("2\n")
        assert run_record.revision(repo) == commit + "-dirty", part
        git(repo, "checkout", "-q", "--", part)


def test_only_guests_that_ended_with_a_result_are_kept(tmp_path: Path) -> None:
    assert run_record.finished_seconds(tmp_path) is None
    (tmp_path / "result.json").write_text("{}")  # written by the guest, which was then stopped
    assert run_record.finished_seconds(tmp_path) is None
    run_record.record_guest(tmp_path, 0, 321.5)
    assert run_record.finished_seconds(tmp_path) == 321.5
    (tmp_path / "result.json").unlink()
    assert run_record.finished_seconds(tmp_path) is None
