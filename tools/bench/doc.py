"""The sectioned ``docs/benchmarks.md``: each benchmark replaces only its own section.

Place in ``tools/bench``: the last step of every benchmark script. A section
lies between ``<!-- NAME-begin -->`` and ``<!-- NAME-end -->`` markers, so
each benchmark can be rerun on its own without losing the others' figures.
"""
from __future__ import annotations

import os
from pathlib import Path


def section_markers(name: str) -> tuple[str, str]:
    """The begin/end comment markers of one section of the benchmarks doc."""
    return f"<!-- {name}-begin -->", f"<!-- {name}-end -->"


def update_section(doc: Path, name: str, body: str) -> None:
    """Replace section ``name`` of ``doc`` with ``body`` (markers added), keeping all other sections.

    A missing doc is created with a title; a missing section is appended.
    The file is replaced atomically.
    """
    doc = Path(doc)
    begin_marker, end_marker = section_markers(name)
    section = f"{begin_marker}\n{body.strip()}\n{end_marker}\n"
    text = doc.read_text(encoding="utf-8") if doc.is_file() else "# Benchmarks\n\n"
    begin, end = text.find(begin_marker), text.find(end_marker)
    if begin >= 0 and end > begin:
        text = text[:begin] + section.rstrip("\n") + text[end + len(end_marker):]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.parent.mkdir(parents=True, exist_ok=True)
    tmp = doc.with_name(doc.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, doc)
