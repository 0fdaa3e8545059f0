"""The runnable command blocks of the README and of docs/*.md run, in order, as a user would copy-paste them.

Every ```bash block of README.md and of the docs (DOCS order, then any other docs/*.md by name),
and every ```python block without a `...` line (those are
synopses with placeholders), is run from a scratch folder laid out like the checkout root
(`tables/` and `tests/` linked, `../shared` linked to the national tables), with the `grouper` of
this environment, except: the install/test blocks (`pip`, `pytest`, benchmarks), and synopses
(a `[--option]` or a placeholder in capitals such as PACK, HISTORY, CASES outside comments).
Blocks run in that order in one folder, because the later quick starts use the files of the
earlier ones (settlement settles the payment quick start's `grouped.parquet`). Every relative link
of those files must name an existing file (and, with `#anchor`, one of its headings), and every
docs page must be linked from the README.

Two substitutions keep the test fast: the quick starts' 300,000-case histories are generated with
20,000 cases and the settlement quick start's 100,000-case year with 10,000 (every command and
option stays as written; `cases=300_000` in Python likewise). The figures the README quotes are
not checked here; the test fails when a command exits non-zero, prints a traceback or names a
file that does not exist.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SHARED_ROOT

README = ROOT / "README.md"
# The reference pages in reading order (the order their quick starts build on each other).
DOCS = ["commands", "scheme-language", "validation", "chs-drg", "payment", "dip", "settlement",
        "python-api", "design", "performance", "reliability"]


def documents() -> list[Path]:
    """README.md, then docs/ in DOCS order, then any other page of docs/ by name."""
    named = [ROOT / "docs" / f"{name}.md" for name in DOCS]
    others = sorted(set((ROOT / "docs").glob("*.md")) - set(named))
    return [README, *named, *others]
PLACEHOLDER = re.compile(r"\[--|\b[A-Z]{4,}\b")
SMALLER = {"--cases 300000": "--cases 20000", "--cases 100000": "--cases 10000",
           "cases=300_000": "cases=20_000"}


def runnable_blocks(text: str, language: str = "bash") -> list[tuple[int, str]]:
    """(line number, text) of every ```bash (or ```python) block a user can run as written."""
    blocks, lines, start = [], text.splitlines(), None
    for number, line in enumerate(lines, 1):
        if start is None and line.strip() == "```" + language:
            start, body = number, []
        elif start is not None and line.strip() == "```":
            blocks.append((start, "\n".join(body)))
            start = None
        elif start is not None:
            body.append(line)
    if language == "python":
        return [(n, body) for n, body in blocks if not re.search(r"^\s*\.\.\.", body, re.M) and _importable(body)]
    return [(n, body) for n, body in blocks if _runnable(body)]


def _importable(body: str) -> bool:
    """False for a block that needs an optional extra not installed here (PySpark: the `spark` extra,
    which CI installs)."""
    import importlib.util

    needed = re.findall(r"^\s*(?:from|import)\s+(pyspark)\b", body, re.M)
    return all(importlib.util.find_spec(name) is not None for name in needed)


def _runnable(body: str) -> bool:
    commands = [re.sub(r"(^|\s)#.*$", "", line).strip() for line in body.splitlines()]
    commands = [c for c in commands if c]
    if not commands or any(c.startswith(("pip ", "pytest", "GROUPER_")) for c in commands):
        return False
    return not any(PLACEHOLDER.search(c) for c in commands)


def _text(language: str = "bash") -> str:
    return "\n".join(body for page in documents()
                     for _, body in runnable_blocks(page.read_text(encoding="utf-8"), language))


def test_the_block_finder_sees_the_quick_starts():
    blocks = [body for page in documents() for _, body in runnable_blocks(page.read_text(encoding="utf-8"))]
    joined = "\n".join(blocks)
    for command in ("grouper synth history", "grouper calibrate weights", "grouper metrics",
                    "grouper calibrate dip", "grouper settle", "grouper explain", "import chs-drg"):
        assert command in joined, command
    assert not any("PACK" in b.replace("dip-pack", "") for b in blocks)
    python = _text("python")
    for call in ("pay.calibrate_weights", "settle_cases", "write_report"):
        assert call in python, call


def test_readme_blocks_run(tmp_path):
    grouper = shutil.which("grouper", path=str(Path(sys.executable).parent)) or shutil.which("grouper")
    if grouper is None:
        pytest.skip("the grouper command is not installed in this environment")
    root = tmp_path / "checkout"
    root.mkdir()
    for name in ("tables", "tests"):
        (root / name).symlink_to(ROOT / name)
    has_shared = (SHARED_ROOT / "chs-drg-2.0").is_dir() and (SHARED_ROOT / "chs-drg-1.1").is_dir()
    if has_shared:
        (tmp_path / "shared").symlink_to(SHARED_ROOT)
    env = dict(os.environ, PATH=f"{Path(grouper).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               COLUMNS="120", GROUPER_CACHE_DIR=str(tmp_path / "cache"))
    blocks = []
    for page in documents():
        text = page.read_text(encoding="utf-8")
        where = page.relative_to(ROOT)
        blocks += sorted([(where, line, "bash", body) for line, body in runnable_blocks(text)]
                         + [(where, line, "python", body) for line, body in runnable_blocks(text, "python")])
    ran = 0
    for where, line, language, body in blocks:
        if "../shared" in body and not has_shared:
            continue
        for long, short in SMALLER.items():
            body = body.replace(long, short)
        command = ["bash", "-e", "-c", body] if language == "bash" else [sys.executable, "-c", body]
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
        output = done.stdout + done.stderr
        assert done.returncode == 0 and "Traceback" not in output, \
            f"{where}:{line}: block failed (exit {done.returncode}):\n{body}\n--- output ---\n{output[-3000:]}"
        ran += 1
    assert ran >= 12
    # Run in the checkout itself, the examples must leave nothing git would pick up (issue 17).
    written = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir() if p.name not in ("tables", "tests"))
    if shutil.which("git") and (ROOT / ".git").exists():
        check = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--no-index", "--verbose", "--non-matching",
                                "--stdin"], input="\n".join(written) + "\n", capture_output=True, text=True)
        unignored = [line.split("\t")[-1] for line in check.stdout.splitlines() if line.startswith("::")]
        assert not unignored, f"the examples write files .gitignore does not cover: {unignored}"


LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found, fence = set(), False
    for line in text.splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            heading = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", heading).replace(" ", "-"))
    return found


@pytest.mark.parametrize("page", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in LINK.findall(text):
        if "://" in target or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text(encoding="utf-8")):
            broken.append(target)
    assert not broken, f"{page.name}: links to nothing: {broken}"


def test_every_docs_page_is_linked_from_the_readme():
    readme = README.read_text(encoding="utf-8")
    unlinked = [p.name for p in documents()[1:] if f"docs/{p.name}" not in readme]
    assert not unlinked
