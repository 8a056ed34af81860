"""What every benchmark shares: where the repository is, which machine ran it, and the one
writer of BENCHMARKS.md.

A section of BENCHMARKS.md is the text between ``<!-- ID:start -->`` and
``<!-- ID:end -->``. :func:`write_section` replaces a section in place (or appends it when
the file has none of that ID) and puts the command that produced it, the machine and the
date under its heading, so every table says how to reproduce it.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

__all__ = [
    "BENCHMARKS_FILE",
    "ENTRY_POINT",
    "PROJECT_ROOT",
    "command_line",
    "current_command",
    "machine_description",
    "markdown_table",
    "parser",
    "provenance",
    "write_section",
]

#: the repository root (``benchmarks/`` is a top-level folder, never installed)
PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: the file the tables go to unless ``--benchmarks-file`` says otherwise
BENCHMARKS_FILE = PROJECT_ROOT / "BENCHMARKS.md"
#: how every benchmark is started (see ``benchmarks/__main__.py``)
ENTRY_POINT = "python -m benchmarks"

_SECTION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def command_line(name: str, argv: Sequence[str] = ()) -> str:
    """The command that runs benchmark ``name`` with arguments ``argv``, shell-quoted."""
    return shlex.join([*ENTRY_POINT.split(), name, *argv])


def current_command() -> str:
    """This process's command line: ``python -m benchmarks ...`` under the entry point,
    else ``python`` and ``sys.argv`` as given."""
    argv = [a for a in sys.argv if a] or ["(interactive)"]
    first = Path(argv[0])
    if first.name == "__main__.py" and first.parent.name == "benchmarks":
        return shlex.join([*ENTRY_POINT.split(), *argv[1:]])
    return shlex.join(["python", *argv])


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_description(*packages: str) -> str:
    """Architecture, cores, RAM, OS and the 1-minute load average, then Python, torch with
    its thread count and the versions of ``packages`` (e.g. ``"dask", "xarray"``).

    Call it when the measurement starts: the load average is reported as "at start"."""
    import torch

    hardware = [platform.machine() or "unknown architecture", f"{os.cpu_count()} cores"]
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        hardware.append(f"{ram / 2**30:.0f} GiB RAM")
    except (ValueError, OSError, AttributeError):
        pass
    hardware.append(platform.system())
    threads = torch.get_num_threads()
    if hasattr(os, "getloadavg"):
        hardware.append(f"load average {os.getloadavg()[0]:.1f} at start")
    software = [
        f"Python {platform.python_version()}",
        f"torch {torch.__version__} ({threads} thread{'s' if threads != 1 else ''})",
        *(f"{name} {_version(name)}" for name in packages),
    ]
    return ", ".join(hardware) + "; " + ", ".join(software)


def provenance(command: str, machine: str, date: datetime | None = None) -> str:
    """The three lines under a section's heading: command, machine and date (UTC)."""
    stamp = (date or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"Command: `{command}`  \nMachine: {machine}  \nDate: {stamp}"


def _with_provenance(markdown: str, lines: str) -> str:
    """``markdown`` with ``lines`` after its first line when that is a heading (else
    before it), separated by blank lines."""
    text = markdown.strip("\n")
    heading, _, rest = text.partition("\n")
    if heading.startswith("#"):
        rest = rest.lstrip("\n")
        return f"{heading}\n\n{lines}\n\n{rest}" if rest else f"{heading}\n\n{lines}"
    return f"{lines}\n\n{text}"


def write_section(
    path: str | Path,
    section_id: str,
    markdown: str,
    *,
    command: str | None = None,
    machine: str | None = None,
    date: datetime | None = None,
) -> Path:
    """Write ``markdown`` as section ``section_id`` of the BENCHMARKS.md at ``path``.

    The text between ``<!-- ID:start -->`` and ``<!-- ID:end -->`` is replaced, in place,
    where the file has those markers; otherwise the section is appended (a missing file is
    created with a ``# Benchmarks`` title). Under the section's heading (its first line,
    when it starts with ``#``) go the command (default: :func:`current_command`), the
    machine (default: :func:`machine_description` now; pass the one taken when the
    measurement started) and the date (default: now). The file is replaced atomically.
    Returns ``path``.
    """
    if not _SECTION_ID.fullmatch(section_id):
        raise ValueError(f"a section id is letters, digits, '-' and '_', got {section_id!r}")
    path = Path(path)
    lines = provenance(
        command if command is not None else current_command(),
        machine if machine is not None else machine_description(),
        date,
    )
    start, end = f"<!-- {section_id}:start -->", f"<!-- {section_id}:end -->"
    block = f"{start}\n{_with_provenance(markdown, lines)}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text.split(start, 1)[1]:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def name_and_path(spec: str) -> tuple[str, Path]:
    """The argparse type of ``NAME=PATH`` (a prior's name in a table, and its folder)."""
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {spec!r}")
    return name, Path(path)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table: the header, one rule cell per column, the rows."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def parser(
    name: str, doc: str | None, *, quick: str | None = None, writes: bool = True
) -> argparse.ArgumentParser:
    """The argument parser of benchmark ``name`` (``python -m benchmarks NAME``): its
    description is the first paragraph of ``doc``; a benchmark that ``writes`` sections
    takes ``--benchmarks-file``, and ``--quick`` (with ``quick`` as its help) when given."""
    description = (doc or "").strip().split("\n\n", 1)[0]
    p = argparse.ArgumentParser(
        prog=f"{ENTRY_POINT} {name}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if writes:
        p.add_argument(
            "--benchmarks-file",
            type=Path,
            default=BENCHMARKS_FILE,
            metavar="FILE",
            help="the BENCHMARKS.md whose sections are written (default: the repository's)",
        )
    if quick is not None:
        p.add_argument("--quick", action="store_true", help=quick)
    return p
