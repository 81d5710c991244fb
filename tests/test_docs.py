"""The project documents itself: the architecture map names every module, and nothing in
the repository cites a document outside it (or a section of ours that does not exist)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
PARTS = ("lang", "runtime", "kernels")
# Citations of the design notes and reference studies this project started from, which are
# not in the repository (what still holds of them is in docs/). Spelled in pieces so that this
# pattern is not itself such a citation.
_SHARED = "sha" + "red"
OUTSIDE = re.compile("DESIGN" + r" §|\.\./" + _SHARED + "/|" + _SHARED + r"/(DESIGN|STYLE|reference)"
                     r"|(?<!docs/)reference/(wire-protocol|constrained-decoding)\.md")
CITED_DOC = re.compile(r"docs/([\w-]+\.md)")
CITED_SECTION = re.compile(r"docs/architecture\.md §(\d+)")


def tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "*.py", "*.md", "*.toml", "*.sh", "*.txt", ".ci/*"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / f for f in out.split() if (ROOT / f).is_file()]


def file_map() -> set[str]:
    text = ARCHITECTURE.read_text()
    section = text[text.index("## 11. File map"):]
    return set(re.findall(r"`((?:lang|runtime|kernels)/[\w/]+\.py)`", section))


def test_the_file_map_names_every_module():
    modules = {str(p.relative_to(ROOT)) for part in PARTS for p in (ROOT / part).rglob("*.py")
               if p.name != "__init__.py" or part == "kernels" and p.parent == ROOT / "kernels"}
    missing = sorted(modules - file_map())
    assert not missing, f"docs/architecture.md §11 does not name: {missing}"


def test_the_file_map_names_only_files_that_exist():
    stale = sorted(p for p in file_map() if not (ROOT / p).is_file())
    assert not stale, f"docs/architecture.md §11 names files that do not exist: {stale}"


def test_nothing_cites_documents_outside_the_repository():
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
            for p in tracked_text_files() if p != Path(__file__)
            for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if OUTSIDE.search(line)]
    assert not hits, "\n".join(hits)


def test_cited_docs_and_sections_exist():
    sections = set(re.findall(r"^## (\d+)\.", ARCHITECTURE.read_text(), re.MULTILINE))
    problems = []
    for p in tracked_text_files():
        text = p.read_text(errors="replace")
        problems += [f"{p.relative_to(ROOT)} cites docs/{d}" for d in CITED_DOC.findall(text)
                     if not (ROOT / "docs" / d).is_file()]
        problems += [f"{p.relative_to(ROOT)} cites §{s}" for s in CITED_SECTION.findall(text)
                     if s not in sections]
    assert not problems, problems
