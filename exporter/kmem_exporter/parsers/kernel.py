"""Facts about the running kernel: its release (/proc/sys/kernel/osrelease) and its boot command line
(/proc/cmdline).

    3.10.0-514.el7.x86_64
    BOOT_IMAGE=/vmlinuz-3.10.0-514.el7.x86_64 root=/dev/mapper/rhel-root ro cgroup.memory=nosocket,nokmem quiet

Used by the kernel collector and by any collector whose reading depends on the kernel version or boot options.
"""

from __future__ import annotations

import re

from kmem_exporter.parsers import ParseError

_RELEASE = re.compile(r"(\d{1,9})\.(\d{1,9})(?:\.(\d+))?\S*", re.ASCII)


def parse_release_string(text: str) -> str:
    """The release as the kernel prints it (`uname -r`), e.g. `3.10.0-514.el7.x86_64`."""
    release = text.strip()
    if not _RELEASE.fullmatch(release):
        raise ParseError(f"expected a kernel release such as 3.10.0-514.el7.x86_64, got {text[:80]!r}")
    return release


def parse_release(text: str) -> tuple[int, int]:
    """(major, minor) of a kernel release: `3.10.0-514.el7.x86_64` -> (3, 10)."""
    match = _RELEASE.fullmatch(parse_release_string(text))
    assert match is not None
    return int(match.group(1)), int(match.group(2))


def parse_cmdline(text: str) -> list[str]:
    """The kernel's own parameters on a boot command line, in order.

    Words after a lone `--` are handed to init, not the kernel, and are left out. Double quotes group text that
    contains spaces (`param="a b"`) and are removed, as the kernel's parser does; an unclosed quote runs to the end.
    """
    words: list[str] = []
    word: list[str] = []
    quoted = started = False
    for char in text:
        if char == '"':
            quoted, started = not quoted, True
        elif char.isspace() and not quoted:
            if started:
                words.append("".join(word))
            word, started = [], False
        else:
            word.append(char)
            started = True
    if started:
        words.append("".join(word))
    if "--" in words:
        words = words[: words.index("--")]
    return words


def cmdline_values(text: str, name: str) -> list[str]:
    """Every value given to parameter `name` on the command line (`name=value`), in order."""
    prefix = name + "="
    return [word[len(prefix):] for word in parse_cmdline(text) if word.startswith(prefix)]


def cgroup_memory_options(text: str) -> frozenset[str]:
    """The options of `cgroup.memory=` (`nosocket`, `nokmem`); the kernel takes a comma list and every occurrence."""
    return frozenset(option for value in cmdline_values(text, "cgroup.memory") for option in value.split(",") if option)


def kmem_disabled_at_boot(text: str) -> bool:
    """Whether the command line turns off kernel-memory accounting for memory cgroups (`cgroup.memory=nokmem`)."""
    return "nokmem" in cgroup_memory_options(text)
