# The contract lives in docs/ (docs/README.md): comments, docstrings and the README cite
# docs/<file>.md, never a file a person holding only this repository cannot open (the product
# SPEC, style notes or research notes kept outside it). These tests fail when a citation points
# outside the repository, when a cited docs/ file does not exist, when a quoted section heading
# is not in the file it names, and when a link between the docs is broken.
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SCANNED_DIRS = ("resolver", "watchers", "tests", "bench", "testkit", "examples", "image", "docs")
SCANNED_FILES = ("Makefile", "pyproject.toml", "README.md", "Dockerfile")
TEXT_SUFFIXES = {".py", ".md", ".sh", ".toml", ".cfg", ".ini", ".txt", ".yml", ".yaml"}
SKIPPED_DIRS = {"__pycache__", "data", "corpus", "results"}
THIS_FILE = Path(__file__).resolve()

# Files that exist only outside the repository, and the ways they were cited.
OUTSIDE = re.compile(
    r"\bSPEC\b"  # "SPEC §4", "the SPEC says" (not INSPECT_CONCURRENCY)
    r"|\bstyle\.md\b"
    r"|\breference/"  # reference/docker-dns.md
    r"|\breference §"
    r"|\.\./shared|/work/shared"
    r"|\b(?:docker-dns|multihost|peers)\.md\b"
)
DOCS_CITATION = re.compile(r"\bdocs/([A-Za-z0-9_\-/]+\.md)\b")
# `docs/order.md, "After scopedns restarts"`: a quoted heading after the file names a section.
SECTION_CITATION = re.compile(r'\bdocs/([A-Za-z0-9_\-/]+\.md),? "([^"]+)"')
COMMENT_BREAK = re.compile(r"\s*\n\s*#?")  # a quoted heading wrapped onto the next comment line
MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")


def scanned_files() -> Iterator[Path]:
    for name in SCANNED_FILES:
        if (ROOT / name).is_file():
            yield ROOT / name
    for directory in SCANNED_DIRS:
        for path in sorted((ROOT / directory).rglob("*")):
            relative = path.relative_to(ROOT).parts
            if any(part in SKIPPED_DIRS or part.startswith(".") for part in relative):
                continue
            if path.is_file() and path.suffix in TEXT_SUFFIXES and path.resolve() != THIS_FILE:
                yield path


def outside_citations(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line citing a file outside the repository."""
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)
            if OUTSIDE.search(line)]


def missing_docs(text: str) -> list[str]:
    """docs/ paths cited in `text` that do not exist."""
    return [name for name in DOCS_CITATION.findall(text) if not (DOCS / name).is_file()]


def headings(path: Path) -> set[str]:
    return {line.lstrip("#").strip().lower()
            for line in path.read_text().splitlines() if line.startswith("#")}


def missing_sections(text: str) -> list[str]:
    """`docs/x.md, "Heading"` citations whose file exists but has no heading starting with
    that text (a comment may cite a long heading by its first words, across a line break)."""
    missing = []
    for name, cited in SECTION_CITATION.findall(text):
        heading = " ".join(COMMENT_BREAK.sub(" ", cited).split()).lower()
        path = DOCS / name
        if path.is_file() and not any(h.startswith(heading) for h in headings(path)):
            missing.append(f'docs/{name}, "{heading}"')
    return missing


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def test_the_scanner_sees_what_it_must() -> None:
    """The checks below would pass vacuously if the patterns or the file walk were wrong."""
    files = {p.relative_to(ROOT).as_posix() for p in scanned_files()}
    assert {"resolver/table.py", "watchers/docker.py", "Makefile", "docs/views.md"} <= files
    assert not any(part.startswith("tests/data/") for part in files)
    bad = ("# Views (SPEC §2) are ...\n"
           "# the error ladder (style.md rule 7)\n"
           "# Docker's ndots rule (reference/docker-dns.md §3 step 4)\n"
           "# see ../shared/notes\n"
           '"""The reference (`docker-dns.md`) describes it."""\n'
           "    (reference §3 step 4)\n")
    assert [n for n, _ in outside_citations(bad)] == [1, 2, 3, 4, 5, 6]
    assert outside_citations("INSPECT_CONCURRENCY = 16  # docs/failures.md\n") == []
    assert missing_docs("# see docs/views.md and docs/no-such-file.md") == ["no-such-file.md"]
    assert missing_sections('# docs/order.md, "No such heading"') == [
        'docs/order.md, "no such heading"']
    assert missing_sections('# docs/order.md, "After scopedns restarts"') == []
    assert missing_sections('# docs/order.md, "After scopedns\n# restarts"') == []
    assert missing_sections('# docs/order.md, "After"') == []  # the first words suffice


def test_no_citation_of_files_outside_the_repository() -> None:
    found = [f"{path.relative_to(ROOT)}:{number}: {line}"
             for path in scanned_files() for number, line in outside_citations(read(path))]
    assert not found, "cite docs/<file>.md instead:\n" + "\n".join(found)


def test_cited_docs_exist() -> None:
    found = [f"{path.relative_to(ROOT)}: docs/{name}"
             for path in scanned_files() for name in missing_docs(read(path))]
    assert not found, "cited but missing (write it, or cite an existing file):\n" + "\n".join(
        found)


def test_cited_sections_exist() -> None:
    found = [f"{path.relative_to(ROOT)}: {citation}"
             for path in scanned_files() for citation in missing_sections(read(path))]
    assert not found, "no such heading in the cited file:\n" + "\n".join(found)


@pytest.mark.parametrize("page", [*sorted(p.name for p in DOCS.glob("*.md")), "../README.md"])
def test_links_between_docs_resolve(page: str) -> None:
    path = (DOCS / page).resolve()
    broken = [target for target in MARKDOWN_LINK.findall(read(path))
              if not (path.parent / target).is_file()]
    assert not broken, f"{page}: broken links {broken}"


def test_the_index_lists_every_page() -> None:
    index = read(DOCS / "README.md")
    unlisted = [p.name for p in DOCS.glob("*.md")
                if p.name != "README.md" and f"]({p.name})" not in index]
    assert not unlisted, f"docs/README.md does not link {unlisted}"
