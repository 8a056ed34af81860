"""The benchmarks folder: one entry point, one BENCHMARKS.md writer, and a package that
never imports it."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import ENTRIES, main
from benchmarks.report import command_line, write_section

ROOT = Path(__file__).resolve().parents[1]
#: sections of BENCHMARKS.md that no benchmark writes (timings of `make demo` in fresh clones)
NOT_WRITTEN_BY_A_BENCHMARK = {"demo"}


def test_help_lists_every_benchmark_and_study():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0] for line in done.stdout.splitlines() if line.startswith("  ")}
    expected = {"functional", "data", "batch", "downscale", "uk_inflation", "fno_chunking"}
    assert expected <= set(ENTRIES) <= listed
    assert "python -m benchmarks NAME" in done.stdout


def test_unknown_names_are_refused_with_a_suggestion(capsys):
    assert main(["downscal"]) == 2
    assert "did you mean 'downscale'" in capsys.readouterr().err
    assert main([]) == 2


def test_every_name_has_a_module_with_a_main():
    import importlib

    for name, entry in ENTRIES.items():
        module = importlib.import_module(entry.module)
        assert callable(getattr(module, "main", None)), name


def _imports(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_the_package_never_imports_the_benchmarks():
    offenders = []
    for path in sorted((ROOT / "hdm").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for name in _imports(tree):
            if name == "benchmarks" or name.startswith("benchmarks."):
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert not offenders, offenders
    assert not list((ROOT / "hdm").rglob("benchmark*.py"))


def test_write_section_replaces_a_section_in_place_with_its_provenance(tmp_path):
    md = tmp_path / "BENCHMARKS.md"
    md.write_text(
        "# Benchmarks\n\n<!-- a:start -->\n## A\nold\n<!-- a:end -->\n\n"
        "<!-- b:start -->\n## B\nkept\n<!-- b:end -->\n"
    )
    write_section(md, "a", "## A\n\n| x |\n|---|\n| 1 |\n", command="cmd a", machine="m")
    write_section(md, "c", "## C\nnew\n", command="cmd c", machine="m")
    text = md.read_text()
    assert text.count("<!-- a:start -->") == 1 and "old" not in text
    assert text.index("<!-- a:start -->") < text.index("<!-- b:start -->") < text.index("## C")
    assert "## B\nkept" in text
    section = text.split("<!-- a:start -->\n")[1].split("<!-- a:end -->")[0]
    lines = section.splitlines()
    assert lines[0] == "## A" and lines[2] == "Command: `cmd a`  "
    assert lines[3] == "Machine: m  " and re.fullmatch(
        r"Date: \d{4}-\d\d-\d\d \d\d:\d\d UTC", lines[4]
    )
    assert "| 1 |" in section
    with pytest.raises(ValueError, match="section id"):
        write_section(md, "a b", "x")


def test_commands_are_entry_point_commands():
    assert command_line("downscale", ["--parts", "grf", "--speed-options", '{"sizes": [64]}']) == (
        "python -m benchmarks downscale --parts grf --speed-options '{\"sizes\": [64]}'"
    )


def test_every_section_of_benchmarks_md_names_the_command_that_writes_it():
    text = (ROOT / "BENCHMARKS.md").read_text()
    sections = re.findall(r"<!-- ([\w-]+):start -->\n(.*?)<!-- \1:end -->", text, re.S)
    assert len(sections) > 10
    for name, body in sections:
        if name in NOT_WRITTEN_BY_A_BENCHMARK:
            continue
        commands = re.findall(r"Command: `python -m benchmarks (\w+)", body)
        assert commands, f"section {name} has no 'Command: `python -m benchmarks ...`' line"
        assert set(commands) <= set(ENTRIES), (name, commands)
