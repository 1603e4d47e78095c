"""Writing a benchmark's figures into ``docs/benchmarks.md``, one ``## `` section each."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def replace_section(heading: str, generated: str, path: Path = DOC) -> None:
    """Replaces the section ``## heading`` with ``generated`` (appends it if absent).

    A ``### Findings`` subsection of the old section (analysis written by hand) is kept after
    the new figures.
    """
    doc = path.read_text(encoding="utf-8")
    start = doc.find(f"## {heading}\n")
    if start < 0:
        doc = doc.rstrip("\n") + "\n\n" + generated
    else:
        nxt = doc.find("\n## ", start + 1)
        end = len(doc) if nxt < 0 else nxt + 1
        findings = doc.find("### Findings", start, end)
        tail = doc[findings:end] if findings >= 0 else ""
        doc = doc[:start] + generated + ("\n" + tail if tail else "") + doc[end:]
    path.write_text(doc.rstrip("\n") + "\n", encoding="utf-8")
