"""Editing a trainer's persona file in place, keeping its comments and layout."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

from voice_sim.errors import PersonaError
from voice_sim.yamlfile import load_yaml


def set_line_audio(path: str | os.PathLike[str], line_id: str, audio: str) -> None:
    """Set ``audio:`` of one line in a persona file, keeping its comments and layout.

    A round trip through ruamel.yaml with the file's own indentation; the key goes
    right after ``text:`` when it is new.
    """
    import io

    from ruamel.yaml import YAML

    p = Path(path)
    load_yaml(p, what="persona file")  # the safety checks (size, tags, alias bombs) first
    original = p.read_text(encoding="utf-8")
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a trainer's long lines
    mapping, sequence, offset = _indentation(original)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    data = yaml.load(original)
    lines = data.get("lines") if isinstance(data, dict) else None
    item: Any = next((x for x in lines or () if isinstance(x, dict) and x.get("id") == line_id),
                     None)
    if item is None:
        raise PersonaError(f"{p}: no line '{line_id}'", hint="check the line id")
    if "audio" in item:
        item["audio"] = audio
    else:
        keys = list(item)
        at = keys.index("text") + 1 if "text" in keys else len(keys)
        item.insert(at, "audio", audio)
    out = io.StringIO()
    yaml.dump(data, out)
    from voice_sim.paths import write_atomic

    write_atomic(p, out.getvalue())


def _indentation(text: str) -> tuple[int, int, int]:
    """(mapping indent, sequence indent, dash offset) as used in ``text``."""
    mapping, sequence, offset = 2, 4, 2
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    for a, b in itertools.pairwise(lines):
        if not a.rstrip().endswith(":") or a.lstrip().startswith("- "):
            continue
        ia = len(a) - len(a.lstrip())
        ib = len(b) - len(b.lstrip())
        if b.lstrip().startswith("- "):
            offset = ib - ia
            rest = b.lstrip()[1:]
            sequence = offset + 1 + (len(rest) - len(rest.lstrip()))
            break
    for a, b in itertools.pairwise(lines):
        if a.rstrip().endswith(":") and not a.lstrip().startswith("- ") \
                and not b.lstrip().startswith("- "):
            ia, ib = len(a) - len(a.lstrip()), len(b) - len(b.lstrip())
            if ib > ia:
                mapping = ib - ia
                break
    return mapping, max(sequence, offset + 2), offset
