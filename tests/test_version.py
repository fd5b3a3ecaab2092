"""The version has one source, exporter/kmem_exporter/__init__.py's `__version__`: the package metadata reads it, `make
image` passes it to the image build (which refuses another), the Kubernetes base tags the image with it, and the
changelog's latest release is it. No other deployment file, nor a command in the README or docs/, writes a
version."""

from __future__ import annotations

import re
import subprocess
import tomllib

import yaml

from conftest import PROJECT

from kmem_exporter import __version__

IMAGE_TAG = re.compile(r"kmem-exporter:\d")


def test_the_package_metadata_reads_the_version_from_the_package() -> None:
    pyproject = tomllib.loads((PROJECT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "kmem_exporter.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_make_image_passes_the_version_revision_and_creation_time() -> None:
    result = subprocess.run(["make", "-s", "-n", "-C", str(PROJECT), "image"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    args = dict(re.findall(r"--build-arg ([A-Z]+)=(\S+)", result.stdout))
    assert args["VERSION"] == __version__
    assert re.fullmatch(r"[0-9a-f]{12}|unknown", args["REVISION"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", args["CREATED"])  # RFC 3339, UTC
    assert f"-t kmem-exporter:{__version__} ." in result.stdout


def test_the_kubernetes_base_tags_the_image_with_the_version() -> None:
    kubernetes = PROJECT / "deploy" / "kubernetes"
    (image,) = yaml.safe_load((kubernetes / "base" / "kustomization.yaml").read_text())["images"]
    assert image == {"name": "kmem-exporter", "newTag": __version__}
    for path in kubernetes.rglob("*.yaml"):
        assert not IMAGE_TAG.search(path.read_text()), f"{path} tags the image itself"


def test_the_latest_changelog_release_is_the_version() -> None:
    releases = re.findall(r"^## \[?(\d+\.\d+\.\d+)\]?", (PROJECT / "CHANGELOG.md").read_text(), re.M)
    assert releases and releases[0] == __version__


def test_no_command_in_the_docs_or_the_dockerfile_writes_a_version() -> None:
    docs = sorted(str(page.relative_to(PROJECT)) for page in (PROJECT / "docs").glob("*.md"))
    assert "docs/deployment.md" in docs
    for name in ("README.md", *docs, "Dockerfile", "deploy/compose/compose.yaml"):
        text = (PROJECT / name).read_text()
        assert not IMAGE_TAG.search(text), f"{name} writes an image tag; use <version> or `make image`"
