"""The distribution as a user gets it: the sdist and the wheel really built (`python -m build`, the wheel from the
sdist), checked by `twine check`, and the wheel installed into a fresh virtualenv where `kmem-exporter scrape`
serves a fixture tree. The sdist carries no tests: they need the fixture trees, promtool and the rest of the
repository, which a source package has no business shipping."""

from __future__ import annotations

import email.parser
import json
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import NamedTuple

import pytest

from conftest import PROJECT, fixture_flags, promtool_check_metrics
from markdown_links import link_targets
from metrics_text import collector_success

from kmem_exporter import __version__
from kmem_exporter.collectors import COLLECTORS

SDIST_TOP_FILES = {"PKG-INFO", "setup.cfg", "pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "MANIFEST.in",
                   "exporter/README.md"}


class Dists(NamedTuple):
    sdist: Path
    wheel: Path


def run(*command: str | Path, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert result.returncode == 0, (f"{command} exited {result.returncode}:\n{result.stdout[-3000:]}\n"
                                    f"{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, PROJECT)
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return Dists(sdist, wheel)


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(archive.read(name).decode())


def test_sdist_holds_the_package_and_no_tests(dists: Dists) -> None:
    with tarfile.open(dists.sdist) as archive:
        names = [m.name.split("/", 1)[1] for m in archive.getmembers() if m.isfile()]
    package = sorted(str(p.relative_to(PROJECT)) for p in (PROJECT / "exporter" / "kmem_exporter").rglob("*.py"))
    assert sorted(n for n in names if n.startswith("exporter/kmem_exporter/") and n.endswith(".py")) == package
    others = {n for n in names if not n.startswith(("exporter/kmem_exporter/", "exporter/kmem_exporter.egg-info/"))}
    assert others == SDIST_TOP_FILES
    assert dists.sdist.name == f"kmem_exporter-{__version__}.tar.gz"


def test_wheel_metadata_and_license(dists: Dists) -> None:
    metadata = wheel_metadata(dists.wheel)
    assert metadata["Name"] == "kmem-exporter" and metadata["Version"] == __version__
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert "Operating System :: POSIX :: Linux" in (metadata.get_all("Classifier") or [])
    assert "prometheus" in metadata["Keywords"].split(",")
    assert metadata.get_all("Project-URL") is None  # the project has no public address: no dead links
    description = metadata.get_payload()
    assert description == (PROJECT / "exporter" / "README.md").read_text()
    assert "kmem-exporter" in description and "pip install kmem-exporter" in description
    assert link_targets(description) == [] and "http" not in description.replace("http://0.0.0.0:9792", "")
    with zipfile.ZipFile(dists.wheel) as archive:
        license_text = archive.read(f"kmem_exporter-{__version__}.dist-info/licenses/LICENSE").decode()
    assert license_text == (PROJECT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text


def test_the_wheel_says_the_package_is_typed(dists: Dists) -> None:
    """PEP 561: py.typed in the installed package lets type checkers use its hints."""
    with zipfile.ZipFile(dists.wheel) as archive:
        assert "kmem_exporter/py.typed" in archive.namelist()


def test_twine_check_passes(dists: Dists) -> None:
    result = run(sys.executable, "-m", "twine", "check", "--strict", dists.sdist, dists.wheel)
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_twine_check_catches_a_broken_readme(tmp_path: Path) -> None:
    """twine really checks: a wheel whose description does not render is refused."""
    project = tmp_path / "broken"
    (project / "broken").mkdir(parents=True)
    (project / "broken" / "__init__.py").write_text("")
    (project / "README.rst").write_text("Title\n=====\n\n.. unknown-directive::\n\n`unclosed\n")
    (project / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools>=77"]\n'
                                            'build-backend = "setuptools.build_meta"\n[project]\nname = "broken"\n'
                                            'version = "1"\nreadme = "README.rst"\n')
    run(sys.executable, "-m", "build", "--wheel", "--outdir", tmp_path / "dist", project)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    result = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(wheel)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0 and "FAILED" in result.stdout


def test_the_wheel_in_a_fresh_virtualenv_scrapes_a_fixture_tree(dists: Dists, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "pip", "install", "--quiet", dists.wheel)
    where = run(venv / "bin" / "python", "-c", "import kmem_exporter; print(kmem_exporter.__file__)", cwd=tmp_path)
    assert where.stdout.startswith(str(venv)), where.stdout
    result = subprocess.run([str(venv / "bin" / "kmem-exporter"), "scrape", *fixture_flags("rhel7-fragmented")],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert promtool_check_metrics(result.stdout) == ""
    enabled = {name for name, cls in COLLECTORS.items() if cls.default_enabled}
    assert collector_success(result.stdout) == {name: 1 for name in enabled}
    # Installed from a wheel, outside any checkout: nothing recorded the revision.
    assert f'kmem_exporter_build_info{{revision="unknown",version="{__version__}"}} 1.0' in result.stdout
    version = run(venv / "bin" / "kmem-exporter", "--version").stdout
    assert version == f"kmem-exporter {__version__}\n"
    # The verdict's thresholds ship in the wheel (thresholds.yaml, package data): `report` judges with them.
    with zipfile.ZipFile(dists.wheel) as archive:
        shipped = archive.read("kmem_exporter/thresholds.yaml").decode()
    assert shipped == (PROJECT / "exporter" / "kmem_exporter" / "thresholds.yaml").read_text()
    report = subprocess.run([str(venv / "bin" / "kmem-exporter"), "report", "--format", "json",
                             *fixture_flags("rhel7-fragmented")], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert report.returncode == 1, report.stderr  # warnings
    assert json.loads(report.stdout)["thresholds"]["fragmentation_order"] == 6


def test_the_package_index_page_has_no_links() -> None:
    """A package index shows its page without the repository, where relative links are dead, and the project has
    no public address: the page pyproject names has no link at all, and it is the page the wheel carries."""
    metadata = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    page = (PROJECT / metadata["readme"]).read_text()
    assert "kmem-exporter" in page
    assert link_targets(page) == [] and not re.search(r"https?://(?!0\.0\.0\.0:)", page)
