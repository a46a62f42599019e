"""Every relative link in the README and docs/ resolves (the file exists and, for `#anchor`, so does the heading),
and the README reads in a terminal: no line over 118 characters, at most ~250 lines."""

from __future__ import annotations

import re
from pathlib import Path

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)


def documents(repo_root: Path) -> list[Path]:
    return [repo_root / "README.md", *sorted((repo_root / "docs").rglob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.*)$", text, re.MULTILINE)}


def links(path: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", path.read_text(encoding="utf-8")))


def broken_links(repo_root: Path) -> list[str]:
    broken = []
    for doc in documents(repo_root):
        for target in links(doc):
            if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked offline
                continue
            file, _, anchor = target.partition("#")
            path = (doc.parent / file).resolve() if file else doc
            where = f"{doc.relative_to(repo_root)}: {target}"
            if not path.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{where} (no such heading)")
    return broken


def test_slug_follows_github() -> None:
    assert slug("Session store") == "session-store"
    assert slug("`make run`, then: the *first* step") == "make-run-then-the-first-step"


def test_every_relative_link_resolves(repo_root: Path) -> None:
    assert broken_links(repo_root) == []


def test_the_link_checker_sees_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n## Real heading\n", encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "[ok](docs/a.md#real-heading) [gone](docs/b.md) [anchor](docs/a.md#nope) [web](https://x.org)\n"
        "```\n[in code](nowhere.md)\n```\n", encoding="utf-8")
    assert broken_links(tmp_path) == [
        "README.md: docs/b.md (no such file)", "README.md: docs/a.md#nope (no such heading)"]


def test_the_readme_is_short_and_narrow(repo_root: Path) -> None:
    lines = (repo_root / "README.md").read_text(encoding="utf-8").splitlines()
    assert [n for n, line in enumerate(lines, 1) if len(line) > 118] == []
    assert len(lines) <= 260


def test_every_make_target_the_readme_names_exists(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`make ([a-z][a-z-]*)", readme)) | set(re.findall(r"^make ([a-z][a-z-]*)", readme, re.M))
    makefile = (repo_root / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.MULTILINE))
    assert named and named <= targets, named - targets
