"""The smallest valid persona with a branch, shared by the hardening tests."""

from __future__ import annotations

TEMPLATE = """\
id: {id}
title: Mini
difficulty: easy
briefing:
  situation: A short test call.
customer:
  name: Pat
  voice:
    id: en-us
mood:
  start: 5
max_turns: 4
lines:
  - id: opening
    text: "Hello."{audio}
    expects: [empathize]
    next:
      - heard: [empathize]
        goto: thanks
      - goto: bye
  - id: thanks
    text: "Thanks."
    end: resolved
  - id: bye
    text: "Bye."
    end: hung_up
"""


def mini_persona(id: str = "mini", audio: str = "") -> str:
    """The persona's YAML text; ``audio`` is inserted after the opening line's text
    (e.g. ``"\\n    audio: mini/opening.wav"``)."""
    return TEMPLATE.format(id=id, audio=audio)
