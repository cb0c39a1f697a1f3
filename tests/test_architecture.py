"""docs/architecture.md names every module of the package, and only modules that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "voice_sim"


def test_every_module_has_a_row_and_every_row_a_module() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = [line for line in doc.splitlines() if line.startswith("| `")]
    # A row's first cell names its modules: `a.py`, `b.py`, `engines/`, `web/`.
    named = {m for row in rows for m in re.findall(r"`([\w/]+(?:\.py)?/?)`", row.split(" | ")[0])}
    modules = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.glob("*.py")}
    packages = {f"{p.name}/" for p in PACKAGE.iterdir()
                if p.is_dir() and (p / "__init__.py").is_file()}
    missing = sorted((modules | packages) - named)
    assert not missing, f"docs/architecture.md has no row for {missing}"
    gone = sorted(m for m in named if m.endswith((".py", "/")) and not (PACKAGE / m).exists())
    assert not gone, f"docs/architecture.md names modules that do not exist: {gone}"
    # Every module named anywhere in the text exists too (a renamed module's old name).
    mentioned = set(re.findall(r"`(?:voice_sim/)?([a-z_]+\.py)`", doc))
    stale = sorted(m for m in mentioned if not (PACKAGE / m).exists()
                   and not (PACKAGE / "engines" / m).exists()
                   and not (ROOT / "tests" / m).exists() and not (ROOT / "scripts" / m).exists())
    assert not stale, f"docs/architecture.md mentions files that do not exist: {stale}"
