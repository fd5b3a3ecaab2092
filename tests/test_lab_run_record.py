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

REVISION = "-".join(["0" * 12] * 4)
SETTINGS = {"profile": "full", "memcg_dying": None, "memcg_rate": None, "revision": REVISION}


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
    for name, other in (("profile", "ci"), ("memcg_rate", 50.0), ("memcg_dying", 300), ("revision", "1" * 51)):
        refusal = run_record.resume_refusal(run, {**SETTINGS, name: other})
        assert refusal is not None and name in refusal, (name, refusal)
    dirty = run_record.resume_refusal(run, {**SETTINGS, "revision": REVISION + "-dirty"})
    assert dirty is not None and "uncommitted changes" in dirty
    unknown = run_record.resume_refusal(run, {**SETTINGS, "revision": "unknown"})
    assert unknown is not None and "not a git checkout" in unknown


def commit_all(repo: Path) -> None:
    git(repo, "add", ".")
    git(repo, "-c", "user.name=lab", "-c", "user.email=lab@localhost", "commit", "-qm", "lab")


def test_the_revision_is_what_a_guest_runs_and_judges_with(tmp_path: Path) -> None:
    repo = tmp_path / "project"
    for part in run_record.WATCHED:
        (repo / part).mkdir(parents=True)
        (repo / part / "file").write_text("1\n")
    (repo / "docs").mkdir()
    (repo / "docs" / "lab.md").write_text("1\n")
    git(repo, "init", "-q")
    commit_all(repo)
    first = run_record.revision(repo)
    assert len(first.split("-")) == len(run_record.WATCHED)
    assert run_record.commit(repo) == git(repo, "rev-parse", "HEAD")
    (repo / "docs" / "lab.md").write_text("2\n")  # the docs a run's table goes into: neither dirty nor another run
    assert run_record.revision(repo) == first
    commit_all(repo)
    assert run_record.revision(repo) == first
    for part in run_record.WATCHED:
        (repo / part / "file").write_text("2\n")
        assert run_record.revision(repo) == first + "-dirty", part
        git(repo, "checkout", "-q", "--", part)
    (repo / "lab" / "file").write_text("2\n")
    commit_all(repo)
    assert run_record.revision(repo) not in (first, first + "-dirty")
    assert run_record.revision(tmp_path) == "unknown"  # not a git work tree


def test_only_guests_that_ended_with_a_result_are_kept(tmp_path: Path) -> None:
    assert run_record.finished_seconds(tmp_path) is None
    (tmp_path / "result.json").write_text("{}")  # written by the guest, which was then stopped
    assert run_record.finished_seconds(tmp_path) is None
    run_record.record_guest(tmp_path, 0, 321.5)
    assert run_record.finished_seconds(tmp_path) == 321.5
    (tmp_path / "result.json").unlink()
    assert run_record.finished_seconds(tmp_path) is None
