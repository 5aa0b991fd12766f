"""The documentation's links and the README's shape: pure Python, no bpy.

Every relative Markdown link in README.md, docs/*.md and bench/README.md must name a file that exists
(relative to the linking file; a #fragment is ignored). README.md stays short and starts with its title
and the two commands that CI and the project's rules depend on.
"""
from __future__ import annotations

import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(ROOT, "README.md")
MAX_README_LINES = 160
README_HEAD = (
    "# TRELLIS.2 for Blender\n"
    "\n"
    "```bash\n"
    "bash scripts/setup_and_run.sh\n"
    "bash scripts/test.sh\n"
    "```\n"
)

# [text](target) and ![alt](target), an optional "title" after the target; not inside inline code.
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"`[^`]*`")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)  # http:, https:, mailto:, ...


def doc_files() -> list[str]:
    files = [README, os.path.join(ROOT, "bench", "README.md")]
    files += sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    return [f for f in files if os.path.isfile(f)]


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every Markdown link outside code blocks and code spans."""
    found, in_fence = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        found += [(number, m.group(1)) for m in LINK.finditer(CODE_SPAN.sub("", line))]
    return found


def broken_links(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    broken = []
    for number, target in links(text):
        if EXTERNAL.match(target):
            continue
        file_part = target.split("#", 1)[0].split("?", 1)[0]
        if not file_part:  # a link to an anchor in the same file
            continue
        if not os.path.exists(os.path.normpath(os.path.join(os.path.dirname(path), file_part))):
            broken.append(f"{os.path.relpath(path, ROOT)}:{number}: {target}")
    return broken


def test_docs_exist():
    names = {os.path.relpath(f, ROOT) for f in doc_files()}
    assert "README.md" in names and any(n.startswith("docs" + os.sep) for n in names), names


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: os.path.relpath(p, ROOT))
def test_relative_links_resolve(path):
    assert broken_links(path) == []


def test_link_finder_sees_broken_links(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("# There\n", encoding="utf-8")
    page.write_text(
        "[ok](there.md) [ok too](there.md#a) [self](#top) [web](https://example.com/x.md)\n"
        "[gone](missing.md) ![picture](img/none.png \"title\") `[code](not-a-link.md)`\n"
        "```\n[fenced](also-not-a-link.md)\n```\n",
        encoding="utf-8")
    assert [b.rsplit(": ", 1)[1] for b in broken_links(str(page))] == ["missing.md", "img/none.png"]


def test_readme_is_short():
    with open(README, encoding="utf-8") as f:
        count = len(f.read().splitlines())
    assert count <= MAX_README_LINES, f"README.md has {count} lines; move details into docs/"


def test_readme_starts_with_the_two_commands():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    assert text.startswith(README_HEAD), "README.md must start with its title and the two commands block"
