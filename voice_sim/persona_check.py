"""Persona validation: the JSON Schema in a trainer's words, and the checks it cannot
express (line ids, targets, rule shapes, the branching graph, recordings, the voice).

Every problem is a :class:`~voice_sim.yamlfile.Problem` pointing at ``file:line:column``
with a fix. :func:`voice_sim.persona.check_persona` runs both passes; this module only
finds problems and builds nothing.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

from voice_sim.errors import TTSError
from voice_sim.steps import ALL_IDS, END_STATES, PITFALL_IDS, STEP_IDS
from voice_sim.yamlfile import (
    Checker,
    Problem,
    closest,
    field_name,
    kind_of,
    node_at,
    path_position,
    position,
)

SCHEMA_PATH = Path(__file__).resolve().parent / "persona.schema.json"
"""The JSON Schema of the persona format, shipped in the package."""

CONDITIONS = ("heard", "heard_any", "not_heard", "heard_ever", "mood_at_least", "mood_below",
              "turn_at_least")
"""The condition keys of a rule (a rule with none of them always matches)."""


# --- schema -------------------------------------------------------------------------

@cache
def schema() -> dict[str, Any]:
    """The persona JSON Schema (draft 2020-12)."""
    with SCHEMA_PATH.open(encoding="utf-8") as f:
        result: dict[str, Any] = json.load(f)
    return result


def suggest(word: str, choices: Iterable[str]) -> str:
    close = closest(word, choices)
    return f"did you mean '{close}'? " if close else ""


_TYPE_WORDS = {"string": "text", "integer": "a whole number", "number": "a number",
               "array": "a list", "object": "a mapping of fields", "boolean": "true or false"}

_TYPE_HINTS = {"string": "put it in quotes",
               "integer": "write a whole number such as 8",
               "number": "write a number such as 6.5",
               "array": "write a list: one `- item` per line, or [a, b]",
               "object": "indent the fields under it (`key: value`, one per line)"}


@cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema())


def schema_problems(data: Any, file: str) -> list[Problem]:
    """Structure, types, ranges and ids, as the JSON Schema says, in a trainer's words."""
    steps, pitfalls = set(STEP_IDS), set(PITFALL_IDS)
    found = Checker(file, data)
    seen: set[tuple[str, str]] = set()

    def add(path: Sequence[str | int], message: str, hint: str, key: str | None = None) -> None:
        full = [*path, key] if key is not None else list(path)
        fld = field_name(full)
        if (fld, message) in seen:
            return
        seen.add((fld, message))
        line, col = path_position(data, full) if key is None or key in node_at(data, path) \
            else path_position(data, path)
        found.note(line, col, fld, message, hint)

    for err in _validator().iter_errors(data):
        path = list(err.absolute_path)
        kind, inst, sch = err.validator, err.instance, err.schema
        last = path[-1] if path else ""
        if kind == "additionalProperties":
            known = list(sch.get("properties", {}))
            for key in inst:
                if key in known:
                    continue
                if last == "weights":
                    add(path, f"'{key}' is not a step or pitfall id",
                        f"{suggest(str(key), ALL_IDS)}steps: {', '.join(STEP_IDS)}; "
                        f"pitfalls: {', '.join(PITFALL_IDS)}", key=str(key))
                else:
                    add(path, f"unknown field '{key}'",
                        f"{suggest(str(key), known)}fields here: {', '.join(known)}",
                        key=str(key))
        elif kind == "required":
            for key in sch["required"]:
                if key not in inst:
                    where = field_name(path) or "the file"
                    about = sch["properties"].get(key, {}).get("description")
                    add(path, f"missing field '{key}'",
                        f"add `{key}:` to {where}" + (f" ({about})" if about else ""), key=key)
        elif kind == "type":
            want = err.validator_value
            wants = [want] if isinstance(want, str) else list(want)
            words = " or ".join(_TYPE_WORDS.get(w, w) for w in wants)
            if not path and inst is None:
                add(path, "the file is empty", "start from `voice-sim persona new ID`")
            else:
                add(path, f"must be {words}, not {kind_of(inst)}",
                    _TYPE_HINTS.get(wants[0], "fix the value"))
        elif kind == "enum":
            values = [str(v) for v in err.validator_value]
            # An id list holding a list or a mapping: only a string can be an id.
            is_text = isinstance(inst, str)
            # (kind, its ids, the other kind, its ids, the list the other kind belongs in)
            lists = (("step", STEP_IDS, "pitfall", pitfalls, "hurts"),
                     ("pitfall", PITFALL_IDS, "step", steps, "expects"))
            one = next((x for x in lists if set(values) == set(x[1])), None)
            if one is not None:
                own, ids, other, other_ids, where = one
                if is_text and inst in other_ids:
                    add(path, f"'{inst}' is a {other}, not a {own}",
                        f"list it under `{where}`; {own}s: {', '.join(ids)}")
                else:
                    add(path, f"unknown {own} id '{inst}'",
                        f"{suggest(str(inst), ids)}{own}s: {', '.join(ids)}")
            elif set(values) == steps | pitfalls:
                add(path, f"unknown step or pitfall id '{inst}'",
                    f"{suggest(str(inst), ALL_IDS)}steps: {', '.join(STEP_IDS)}; "
                    f"pitfalls: {', '.join(PITFALL_IDS)}")
            else:
                add(path, f"'{inst}' is not allowed here",
                    f"{suggest(str(inst), values)}use one of: {', '.join(values)}")
        elif kind == "pattern":
            pattern = str(err.validator_value)
            if pattern == "\\S":
                add(path, "is empty", f"write the {last or 'value'}, or remove the field")
            elif last == "id" and len(path) == 1:
                add(path, f"'{inst}' is not a valid persona id",
                    "use lowercase letters, digits and dashes, e.g. late-delivery")
            else:
                add(path, f"'{inst}' is not a valid line id",
                    "use lowercase letters, digits and underscores, starting with a letter, "
                    "e.g. calmer_now")
        elif kind in ("minimum", "maximum"):
            lo, hi = sch.get("minimum"), sch.get("maximum")
            rng = f"between {lo} and {hi}" if lo is not None and hi is not None else \
                (f"at least {lo}" if lo is not None else f"at most {hi}")
            add(path, f"{inst} is out of range", f"use a value {rng}")
        elif kind == "minItems":
            add(path, "the list is empty", "list at least one item, or remove the field")
        elif kind == "uniqueItems":
            dupes = sorted({str(v) for v in inst if list(inst).count(v) > 1})
            add(path, f"lists {', '.join(repr(d) for d in dupes)} more than once",
                "keep each id once")
        elif kind == "maxLength":
            add(path, f"too long ({len(inst)} characters)",
                f"shorten it to at most {err.validator_value}")
        else:  # a rule the schema gained later; still one clear line
            add(path, err.message, "see `voice-sim persona schema`")
    return found.problems



# --- validation ---------------------------------------------------------------------

def _str_list(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def rules_of(value: Any) -> list[tuple[int | None, Any]]:
    """(index, rule mapping) pairs of a ``next`` value; a plain string is one default rule."""
    if isinstance(value, str):
        return [(None, {"goto": value})]
    if isinstance(value, list):
        return [(i, r) for i, r in enumerate(value) if isinstance(r, dict)]
    return []


def semantic_problems(data: dict[str, Any], path: Path, *, check_voice: bool) -> list[Problem]:
    """What the schema cannot say: ids, targets, rule shapes, the graph, audio, voice."""
    c = _Checker(data, path)
    c.persona_id()
    c.collect_lines()
    start = c.start_line()
    c.always_rules()
    c.each_line()
    c.turn_limit()
    if start is not None:
        c.graph(start)
    if check_voice:
        c.voice()
    return c.problems


class _Checker(Checker):
    """One pass of the semantic checks over a structurally loaded persona."""

    def __init__(self, data: dict[str, Any], path: Path) -> None:
        super().__init__(path, data)
        self.data: dict[str, Any] = data
        self.file = path
        self.lines: dict[str, tuple[int, dict[str, Any]]] = {}
        """Line id -> (index in ``lines``, the mapping), first occurrence only."""
        self.edges: dict[str, list[str]] = {}
        """Line id -> targets of its own ``next`` rules."""
        self.misspelt: set[str] = set()
        """Lines a misspelt ``goto`` probably meant (not reported again as unreachable)."""

    @property
    def ids(self) -> list[str]:
        return list(self.lines)

    def ends(self, lid: str) -> bool:
        return self.lines[lid][1].get("end") is not None

    def persona_id(self) -> None:
        pid = self.data.get("id")
        if isinstance(pid, str) and pid and self.file.stem != pid:
            self.at(["id"], f"id '{pid}' differs from the file name '{self.file.name}'",
                    f"rename the file to {pid}{self.file.suffix or '.yaml'} or set "
                    f"`id: {self.file.stem}`")

    def collect_lines(self) -> None:
        raw = self.data.get("lines")
        if not isinstance(raw, list):
            return
        for i, item in enumerate(raw):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            lid = item["id"]
            if lid in self.lines:
                first = position(raw, self.lines[lid][0])[0]
                self.at(["lines", i, "id"], f"duplicate line id '{lid}' (first used on line "
                        f"{first})", "give every line its own id")
            elif lid in END_STATES:
                self.at(["lines", i, "id"], f"'{lid}' is an end state, not a line id",
                        f"rename the line, e.g. {lid}_line")
            else:
                self.lines[lid] = (i, item)

    def target(self, fpath: Sequence[str | int], target: Any) -> bool:
        """Whether ``target`` names a line or an end state (reported when it does not)."""
        if not isinstance(target, str):
            return False
        if target in self.lines or target in END_STATES:
            return True
        meant = closest(target, self.ids)
        if meant is not None:
            self.misspelt.add(meant)
        self.at(fpath, f"'{target}' is not a line",
                f"{suggest(target, [*self.ids, *END_STATES])}lines: {', '.join(self.ids)}; "
                f"or end the call with {', '.join(END_STATES)}")
        return False

    def rule(self, fpath: list[str | int], rule: dict[str, Any]) -> None:
        self.target([*fpath, "goto"], rule.get("goto"))
        both = sorted(set(_str_list(rule.get("heard"))) & set(_str_list(rule.get("not_heard"))))
        if both:
            self.at(fpath, f"'{both[0]}' is both in heard and not_heard: the rule can never "
                    "match", "keep it in one of the two")
        lo, hi = rule.get("mood_at_least"), rule.get("mood_below")
        if isinstance(lo, int | float) and isinstance(hi, int | float) and lo >= hi:
            self.at(fpath, f"mood_at_least {lo} and mood_below {hi} can never both hold",
                    "make mood_at_least smaller than mood_below")

    def start_line(self) -> str | None:
        start = self.data.get("start")
        if isinstance(start, str) and start not in self.lines:
            self.at(["start"], f"'{start}' is not a line",
                    f"{suggest(start, self.ids)}lines: {', '.join(self.ids)}")
            return None
        if not isinstance(start, str):
            if "start" in self.data or not self.lines:
                return None
            start = self.ids[0]
        if self.ends(start):
            where: list[str | int] = ["start"] if "start" in self.data else \
                ["lines", self.lines[start][0], "end"]
            self.at(where, f"the opening line '{start}' has `end`, so the call would close "
                    "before the trainee speaks", "start with a line that has `next`")
        return start

    def always_rules(self) -> None:
        for k, rule in rules_of(self.data.get("always")):
            fpath: list[str | int] = ["always", k if k is not None else 0]
            self.rule(fpath, rule)
            if not any(c in rule for c in CONDITIONS):
                self.at(fpath, "a rule under `always` needs a condition (it would override "
                        "every line)", "add e.g. `mood_at_least: 10`, or move the rule into a "
                        "line's `next`")

    def each_line(self) -> None:
        pid = self.data.get("id")
        folder_id = pid if isinstance(pid, str) else self.file.stem
        for lid, (i, item) in self.lines.items():
            base: list[str | int] = ["lines", i]
            has_end, has_next = item.get("end") is not None, "next" in item
            if has_end and has_next:
                self.at([*base, "next"], f"line '{lid}' has both `end` and `next`",
                        "an end line closes the call after it is spoken: remove `next` or "
                        "`end`")
            elif not has_end and not has_next:
                self.at(base, f"line '{lid}' has neither `next` nor `end`",
                        "add `next:` (where the call goes after the trainee answers) or "
                        f"`end:` ({', '.join(END_STATES)})")
            if has_end:
                for key in ("expects", "hurts", "sample_reply"):
                    if item.get(key):
                        self.at([*base, key], f"line '{lid}' ends the call, so no reply "
                                f"follows and `{key}` is never used", f"remove `{key}` here",
                                "warning")
            self.edges[lid] = self.next_rules(lid, base, item) if has_next and not has_end \
                else []
            audio = item.get("audio")
            if isinstance(audio, str) and audio.strip():
                found = _audio_problem(audio, self.file, folder_id, lid)
                if found:
                    self.at([*base, "audio"], *found)
            self.variants(lid, base, item)

    def variants(self, lid: str, base: list[str | int], item: dict[str, Any]) -> None:
        """A phrasing repeating the line's text adds nothing; a recording covers only
        ``text``, so its variants would switch to the TTS voice mid-persona."""
        raw = item.get("variants")
        if not isinstance(raw, list):
            return
        text = " ".join(str(item.get("text", "")).split())
        for k, v in enumerate(raw):
            if isinstance(v, str) and " ".join(v.split()) == text:
                self.at([*base, "variants", k], f"variant {k + 1} of line '{lid}' repeats its "
                        "text", "write a different phrasing, or remove it")
        if item.get("audio") and raw:
            self.at([*base, "variants"], f"line '{lid}' has a recording but its variants have "
                    "none: they are spoken by the TTS voice", "remove `audio` or the variants",
                    "warning")

    def next_rules(self, lid: str, base: list[str | int], item: dict[str, Any]) -> list[str]:
        """Check a line's ``next`` rules; return their targets."""
        targets: list[str] = []
        rules = rules_of(item.get("next"))
        for n, (j, rule) in enumerate(rules):
            rpath: list[str | int] = [*base, "next"] + ([j] if j is not None else [])
            self.rule(rpath, rule)
            if isinstance(rule.get("goto"), str):
                targets.append(rule["goto"])
            is_default = not any(c in rule for c in CONDITIONS)
            if n == len(rules) - 1 and not is_default:
                self.at(rpath, f"the last rule of line '{lid}' has conditions, so a reply "
                        "could match no rule", "add a final rule with only `goto:` (the "
                        "default)")
            elif n < len(rules) - 1 and is_default:
                self.at(rpath, "this rule has no condition, so the rules after it are never "
                        "used", "move it to the end of the list, or give it a condition")
        return targets

    def turn_limit(self) -> None:
        on_max = self.data.get("on_max_turns")
        if on_max is not None and self.target(["on_max_turns"], on_max) \
                and on_max in self.lines and not self.ends(on_max):
            self.at(["on_max_turns"], f"line '{on_max}' has no `end`, so the call would go on "
                    "past max_turns", f"name a line with `end:`, or one of "
                    f"{', '.join(END_STATES)}")

    def graph(self, start: str) -> None:
        """Every line reachable; an end reachable from each; resolving fits max_turns."""
        always = [r["goto"] for _, r in rules_of(self.data.get("always"))
                  if isinstance(r.get("goto"), str)]
        follow = {lid: [] if self.ends(lid) else [*always, *targets]
                  for lid, targets in self.edges.items()}
        on_max = self.data.get("on_max_turns")
        limit = [on_max] if isinstance(on_max, str) and on_max in self.lines else []

        # Running out of turns is a way to reach a line, but not a way out of a loop.
        reach = _reachable([start], lambda n: [*follow.get(n, []), *limit]
                           if n in self.lines and not self.ends(n) else [])
        for lid, (i, _) in self.lines.items():
            if lid not in reach and lid not in self.misspelt:  # one typo, one problem
                self.at(["lines", i, "id"], f"line '{lid}' can never be reached",
                        "point a `goto` at it, or remove it")
        enders = {lid for lid in self.lines if self.ends(lid)}
        enders |= {lid for lid, ts in follow.items() if any(t in END_STATES for t in ts)}
        back: dict[str, list[str]] = {}
        for src, ts in follow.items():
            for t in ts:
                back.setdefault(t, []).append(src)
        can_end = _reachable(list(enders), lambda n: back.get(n, []))
        for lid, (i, _) in self.lines.items():
            if lid in reach and lid not in can_end:
                self.at(["lines", i, "id"], f"no end can be reached from line '{lid}': every "
                        "path from it loops back", "add a rule that leads to a line with "
                        "`end:`, or `goto: resolved` / `hung_up`")

        dist = _distances(start, follow)
        resolving = [d for lid, d in dist.items()
                     if self.lines[lid][1].get("end") == "resolved"]
        resolving += [dist[lid] + 1 for lid, ts in follow.items()
                      if lid in dist and "resolved" in ts]
        max_turns = self.data.get("max_turns")
        if not resolving:
            self.at(["lines"], "no line leads to `resolved`: the trainee can never resolve "
                    "this call", "add a line with `end: resolved` and a rule that reaches it",
                    "warning")
        elif isinstance(max_turns, int) and min(resolving) > max_turns:
            self.at(["max_turns"], f"resolving takes at least {min(resolving)} replies but "
                    f"max_turns is {max_turns}", f"raise max_turns to {min(resolving)} or more")
        if resolving:
            self.difficulty(min(resolving))

    def difficulty(self, replies: int) -> None:
        """Warn when the declared difficulty contradicts the call's measurable shape."""
        declared = self.data.get("difficulty")
        if declared not in ("easy", "hard"):
            return
        points, why = difficulty_points(self.data, replies)
        if (declared == "easy" and points >= HARD_POINTS) or \
                (declared == "hard" and points <= EASY_POINTS):
            shape = "hard" if declared == "easy" else "easy"
            self.at(["difficulty"], f"declared {declared}, but the call is shaped like a "
                    f"{shape} one ({'; '.join(why)})", f"set `difficulty: {shape}`, or change "
                    "the call (docs/personas.md, 'What makes a call hard')", "warning")

    def voice(self) -> None:
        customer = self.data.get("customer")
        voice = customer.get("voice") if isinstance(customer, dict) else None
        if not isinstance(voice, dict) or not isinstance(voice.get("id"), str):
            return
        from voice_sim.speak import voice_exists

        vid, where = voice["id"], ["customer", "voice", "id"]
        try:
            exists = voice_exists(vid)
        except TTSError as e:
            self.at(where, f"could not check voice '{vid}': {e.line()}",
                    "run `voice-sim doctor`", "warning")
            return
        if not exists:
            self.at(where, f"unknown voice '{vid}' on this machine",
                    "pick one from `voice-sim voices --lang en` (e.g. en-us+f3); the default "
                    "voice is used meanwhile", "warning")


HARD_POINTS, EASY_POINTS = 3, -2
"""A persona scoring this many difficulty points or more is shaped hard; this or fewer, easy."""


def difficulty_points(data: Mapping[str, Any], replies: int) -> tuple[int, list[str]]:
    """How hard a call is by its shape, as points (each feature -1, 0 or +1) and the
    features that scored, in words. ``replies``: the fewest replies that resolve it.

    What makes a call hard: an angrier start, pitfalls that hurt more (``hurts_factor``),
    a longer way to ``resolved``, more expected steps per line, and demanding rules
    (impatience per turn, several steps at once, steps remembered, a calm mood needed).
    """
    raw_mood = data.get("mood")
    mood: Mapping[str, Any] = raw_mood if isinstance(raw_mood, Mapping) else {}
    raw_lines = data.get("lines")
    lines = [x for x in raw_lines if isinstance(x, Mapping) and "next" in x] \
        if isinstance(raw_lines, list) else []
    points, why = 0, []

    def score(value: float, hard: float, easy: float, words: str) -> None:
        nonlocal points
        if value >= hard:
            points += 1
            why.append(f"{words} {value:g} (hard)")
        elif value <= easy:
            points -= 1
            why.append(f"{words} {value:g} (easy)")

    start = mood.get("start")
    if isinstance(start, int | float):
        score(start, 8, 5, "opening mood")
    factor = mood.get("hurts_factor", 2)
    if isinstance(factor, int | float):
        score(factor, 2.5, 1.5, "hurts_factor")
    score(replies, 5, 3, "replies to resolve")
    expects = [len(_str_list(x.get("expects"))) for x in lines]
    if expects:
        score(round(sum(expects) / len(expects), 1), 2.2, 1.5, "expected steps per line")
    demanding = sum(1 for x in lines for _, r in rules_of(x.get("next"))
                    if len(_str_list(r.get("heard"))) >= 2 or r.get("heard_ever")
                    or r.get("mood_below") is not None)
    per_turn = mood.get("per_turn", 0)
    if (isinstance(per_turn, int | float) and per_turn > 0) or demanding >= 2:
        points += 1
        why.append(f"{demanding} demanding rules, per_turn {per_turn:g} (hard)")
    return points, why


def _reachable(starts: list[str], nxt: Any) -> set[str]:
    seen: set[str] = set()
    todo = deque(starts)
    while todo:
        node = todo.popleft()
        if node in seen:
            continue
        seen.add(node)
        todo.extend(t for t in nxt(node) if t not in seen)
    return seen


def _distances(start: str, follow: Mapping[str, list[str]]) -> dict[str, int]:
    dist = {start: 0}
    todo = deque([start])
    while todo:
        node = todo.popleft()
        for t in follow.get(node, []):
            if t in follow and t not in dist:
                dist[t] = dist[node] + 1
                todo.append(t)
    return dist


def _audio_problem(audio: str, persona_path: Path, persona_id: str,
                   line_id: str) -> tuple[str, str] | None:
    """Why a line's ``audio`` path is unusable, as (message, hint); None when fine."""
    from voice_sim.audio import info, load_audio
    from voice_sim.errors import AudioError

    example = f"{persona_id}/{line_id}.wav"
    rel = PurePosixPath(audio.replace("\\", "/"))
    if rel.is_absolute() or audio.startswith("~") or (len(audio) > 1 and audio[1] == ":"):
        return (f"audio path '{audio}' is absolute",
                f"give it relative to the persona file, inside its folder, e.g. {example}")
    if ".." in rel.parts:
        return (f"audio path '{audio}' uses '..' and leaves the persona's folder",
                f"keep recordings beside the persona file, e.g. {example}")
    try:
        folder = persona_path.parent.resolve()
        full = persona_path.parent / Path(*rel.parts)
        real = full.resolve()
        found = full.exists()
    except (OSError, RuntimeError, ValueError) as e:  # too long, a symlink loop, a NUL
        reason = getattr(e, "strerror", None) or str(e)
        return (f"audio path '{audio}' cannot be used ({reason})",
                f"name a recording inside the persona's folder, e.g. {example}")
    if not real.is_relative_to(folder):
        return (f"audio path '{audio}' is a symlink to {real}, outside the persona's folder",
                f"copy the recording into {folder}")
    if not found:
        return (f"audio file '{audio}' not found (looked for {full})",
                f"fix the path, or record it: voice-sim persona record {persona_path} "
                f"--line {line_id}")
    try:
        # Decoded in full (at its own rate: no resampling), so what a call would refuse
        # when the line is due (0 frames, over-long, cut short, damaged, silent) is
        # reported here, before the call starts.
        load_audio(full, sr=info(full).sample_rate)
    except AudioError as e:
        return (f"audio file '{audio}' is not usable: {e.message}", e.hint or "record it again")
    return None
