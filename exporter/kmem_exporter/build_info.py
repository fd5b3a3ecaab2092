"""What the exporter reports about its own build: the version and the source revision it was built from.

The revision is, in this order: the first line of `REVISION` beside this module (written by a build that knows it;
the container image's build writes its REVISION build argument there); the commit of the git checkout the package
runs from (an editable install or `python -m kmem_exporter` in a clone), when git is installed; else "unknown".
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path

from kmem_exporter import __version__

UNKNOWN = "unknown"
_PACKAGE = Path(__file__).resolve().parent
_REVISION = re.compile(r"[0-9A-Za-z._+-]{1,64}")


@functools.lru_cache(maxsize=None)
def revision() -> str:
    """The source revision, or "unknown" when neither the build nor a git checkout tells it."""
    return _from_file(_PACKAGE / "REVISION") or _from_git(_PACKAGE.parent.parent) or UNKNOWN  # exporter/kmem_exporter


def build_labels() -> dict[str, str]:
    """The labels of kmem_exporter_build_info."""
    return {"version": __version__, "revision": revision()}


def _checked(text: str) -> str | None:
    value = text.strip()
    return value if _REVISION.fullmatch(value) and value != UNKNOWN else None


def _from_file(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8") as file:
            return _checked(file.readline(128))
    except (OSError, UnicodeDecodeError):
        return None


def _from_git(checkout: Path) -> str | None:
    """The abbreviated commit of `checkout` when it is the root of a git work tree of this project (never of an
    unrelated repository that merely contains the installed package)."""
    git = shutil.which("git")
    if git is None or not (checkout / ".git").exists() or not (checkout / "pyproject.toml").is_file():
        return None
    try:
        result = subprocess.run([git, "-C", str(checkout), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return _checked(result.stdout) if result.returncode == 0 else None
