"""A persona's branching as a Mermaid flowchart (``voice-sim persona graph``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from voice_sim.steps import END_STATES

if TYPE_CHECKING:
    from voice_sim.persona import Persona, Rule


def mermaid(persona: Persona) -> str:
    """The call's branching as a Mermaid flowchart."""
    def node(lid: str) -> str:
        return f"L_{lid}"

    def label(text: str, limit: int = 60) -> str:
        short = text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
        return short.replace('"', "#quot;")

    def edge_label(rule: Rule) -> str:
        return f'|"{label(rule.describe(), 80)}"|'

    out = ["flowchart TD",
           f'  START(["{label(persona.customer)} calls"]) --> {node(persona.start)}']
    used_ends: set[str] = set()
    for line in persona.lines.values():
        shape = ('(["', '"])') if line.end else ('["', '"]')
        out.append(f"  {node(line.id)}{shape[0]}{line.id}: {label(line.text)}{shape[1]}")
    for line in persona.lines.values():
        if line.end:
            used_ends.add(line.end)
            out.append(f"  {node(line.id)} -.-> E_{line.end}")
            continue
        for rule in line.next:
            target = f"E_{rule.goto}" if rule.goto in END_STATES else node(rule.goto)
            if rule.goto in END_STATES:
                used_ends.add(rule.goto)
            out.append(f"  {node(line.id)} -->{edge_label(rule)} {target}")
    for i, rule in enumerate(persona.always):
        target = f"E_{rule.goto}" if rule.goto in END_STATES else node(rule.goto)
        if rule.goto in END_STATES:
            used_ends.add(rule.goto)
        out.append(f'  ALWAYS{i}{{{{"after any line"}}}} -->{edge_label(rule)} {target}')
    limit = persona.on_max_turns
    if limit in END_STATES:
        used_ends.add(limit)
    limit_node = f"E_{limit}" if limit in END_STATES else node(limit)
    out.append(f'  MAXTURNS{{{{"after {persona.max_turns} turns"}}}} -.-> {limit_node}')
    for end in END_STATES:
        if end in used_ends:
            out.append(f"  E_{end}((({end})))")
    out.append("  classDef resolved fill:#d4f7d4,stroke:#2b8a3e")
    out.append("  classDef escalated fill:#fff3bf,stroke:#e67700")
    out.append("  classDef hung_up fill:#ffd8d8,stroke:#c92a2a")
    for end in END_STATES:
        members = [node(x.id) for x in persona.lines.values() if x.end == end]
        if end in used_ends:
            members.append(f"E_{end}")
        if members:
            out.append(f"  class {','.join(members)} {end}")
    return "\n".join(out) + "\n"
