"""The documentation works as written: every Python snippet of the README runs, and every
relative link of the README and of docs/*.md points at a file that exists (and, with an
``#anchor``, at a heading of that file)."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```(\w*)\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"`[^`]*`")


def blocks(text: str) -> list[tuple[str, str, int]]:
    """``(language, code, first line)`` of each fenced block."""
    out, lang, lines, start = [], None, [], 0
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if lang is None and m:
            lang, lines, start = m.group(1), [], n + 1
        elif lang is not None and line.strip() == "```":
            out.append((lang, "\n".join(lines), start))
            lang = None
        elif lang is not None:
            lines.append(line)
    return out


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced blocks, inline code removed."""
    out, inside = [], False
    for line in text.splitlines():
        if FENCE.match(line) or (inside and line.strip() == "```"):
            inside = not inside
            continue
        if not inside:
            out.append(INLINE_CODE.sub("", line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = heading.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    inside = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line) or (inside and line.strip() == "```"):
            inside = not inside
            continue
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if inside or not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def imported_modules(code: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


SNIPPETS = [(code, line) for lang, code, line in blocks(README.read_text(encoding="utf-8")) if lang == "python"]

#: Snippets that import these take longer than a fast test should (JAX compiles each operation on
#: first use: about 8 s for the Flax snippet on 2 CPU cores); they run with the slow tests.
SLOW_IMPORTS = {"jax", "flax"}


def test_the_readme_has_python_snippets():
    assert len(SNIPPETS) >= 3


@pytest.mark.parametrize("code, line", [
    pytest.param(code, line, id=f"README.md:{line}",
                 marks=[pytest.mark.slow] if imported_modules(code) & SLOW_IMPORTS else [])
    for code, line in SNIPPETS
])
def test_readme_snippet_runs(code, line, tmp_path, monkeypatch):
    missing = sorted(m for m in imported_modules(code) if importlib.util.find_spec(m) is None)
    if missing:
        pytest.skip(f"the snippet at README.md:{line} needs {', '.join(missing)}, not installed")
    monkeypatch.chdir(tmp_path)                 # a snippet that writes files writes them here
    namespace = {"__name__": "__readme__"}
    exec(compile(code, f"README.md:{line}", "exec"), namespace)


def links(page: Path) -> list[str]:
    return [m.group(1) for line in prose_lines(page.read_text(encoding="utf-8")) for m in LINK.finditer(line)]


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_relative_links_resolve(page):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):          # http:, https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        dest = page if not path else (page.parent / path).resolve()
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(ROOT).as_posix()}")
    assert not broken, f"{page.relative_to(ROOT).as_posix()}: " + "; ".join(broken)


def test_the_link_checker_sees_links_anchors_and_skips_code():
    text = "A [page](docs/design.md#code-layout) and `[not](a-link.md)`.\n```python\nx = y[0](1)\n```\n"
    assert [m.group(1) for line in prose_lines(text) for m in LINK.finditer(line)] == ["docs/design.md#code-layout"]
    assert slug("Boundary accuracy: `diffconv accuracy`") == "boundary-accuracy-diffconv-accuracy"
    assert slug("When DiffConv helps, and when it may not") == "when-diffconv-helps-and-when-it-may-not"
    assert "code-layout" in anchors(ROOT / "docs" / "design.md")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
