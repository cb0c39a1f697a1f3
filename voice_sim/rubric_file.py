"""Reading rubric files: the built-in ``rubric.yaml`` merged with a trainer's file,
checked with ``file:line`` problems, compiled into a :class:`Rubric`.

A trainer file has the built-in file's layout and holds only what changes: its
patterns, exemplars, class words and synonyms are added; its ``weight``, ``mood`` and
``negation`` replace the built-in ones; ``replace: true`` under an id drops the
built-in phrases of that id. :func:`rubric_beside` finds a ``rubric.yaml`` in a
persona's folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voice_sim.errors import InputError, RubricError
from voice_sim.rubric_patterns import Matcher, Src, build_matcher, compile_classes
from voice_sim.steps import PITFALL_IDS, STEP_IDS, WORD_STEP_IDS
from voice_sim.textnorm import normalize, stem
from voice_sim.yamlfile import (
    Checker,
    Problem,
    YamlProblem,
    closest,
    kind_of,
    load_yaml,
    position,
)

BUILTIN_PATH = Path(__file__).with_name("rubric.yaml")
"""The rubric shipped with the package."""

ALL_IDS: tuple[str, ...] = (*STEP_IDS, *PITFALL_IDS)
CONTENT_IDS: tuple[str, ...] = (*WORD_STEP_IDS, *PITFALL_IDS)
"""The ids the content scorer detects (``stay_calm`` comes from delivery analysis)."""

_ID_FIELDS = ("weight", "mood", "negation", "replace", "patterns", "exemplars", "not_if")
_TOP_FIELDS = ("version", "negation", "contrast", "classes", "refusal", "reflect", "ids")
_REFLECT_FIELDS = ("min_shared", "min_coverage", "ignore", "synonyms", "frames")
_NEGATION_FIELDS = ("words", "breakers", "idioms", "window")


@dataclass(frozen=True, eq=False)
class IdSpec:
    id: str
    kind: str
    weight: float
    mood: float
    negation: bool
    matcher: Matcher | None
    not_if: Matcher | None
    examples: tuple[Src, ...] = ()
    """Exemplars: sentences matched by meaning (see :mod:`voice_sim.rubric_semantic`)."""
    replace: bool = False
    """Only the trainer file's phrases decide this id (``replace: true``)."""


@dataclass(frozen=True, eq=False)
class Rubric:
    """A compiled rubric: per-id phrases, weights and mood changes, and reading rules."""

    sources: tuple[str, ...]
    """The files merged, built-in first."""
    specs: Mapping[str, IdSpec]
    refusal: Matcher | None
    frames: Matcher | None
    negators: frozenset[str]
    breakers: frozenset[str]
    idioms: frozenset[str]
    window: int
    contrast: frozenset[str]
    reflect_ignore: frozenset[str]
    synonyms: Mapping[str, str]
    min_shared: int
    min_coverage: float

    def weight(self, id: str) -> float:
        """Turn-score points of a step or pitfall id."""
        return self._spec(id).weight

    def mood(self, id: str) -> float:
        """Default change on the persona's 0-10 anger scale when ``id`` is detected
        (steps negative, pitfalls positive)."""
        return self._spec(id).mood

    def _spec(self, id: str) -> IdSpec:
        try:
            return self.specs[id]
        except KeyError:
            raise InputError(f"unknown step or pitfall id {id!r}",
                             hint=valid_ids_hint(id)) from None


def valid_ids_hint(id: str, choices: Sequence[str] = ALL_IDS,
                    label: str = "valid ids") -> str:
    close = closest(id, choices)
    prefix = f"did you mean {close!r}? " if close else ""
    return prefix + f"{label}: " + ", ".join(choices)

# --- reading rubric files ------------------------------------------------------------


@dataclass
class _RawId:
    pos: tuple[str, int, int]
    weight: float | None = None
    mood: float | None = None
    negation: bool | None = None
    replace: bool = False
    patterns: list[Src] = field(default_factory=list)
    exemplars: list[Src] = field(default_factory=list)
    not_if: list[Src] = field(default_factory=list)


@dataclass
class _Raw:
    path: str
    negators: list[str] = field(default_factory=list)
    breakers: list[str] = field(default_factory=list)
    idioms: list[str] = field(default_factory=list)
    window: int | None = None
    contrast: list[str] = field(default_factory=list)
    classes: dict[str, list[Src]] = field(default_factory=dict)
    refusal: list[Src] = field(default_factory=list)
    frames: list[Src] = field(default_factory=list)
    min_shared: int | None = None
    min_coverage: float | None = None
    ignore: list[str] = field(default_factory=list)
    synonyms: list[list[Src]] = field(default_factory=list)
    ids: dict[str, _RawId] = field(default_factory=dict)


class _Reader(Checker):
    """Walks one rubric file, collecting every problem instead of stopping at the first."""

    def mapping(self, node: Any, key: str | int | None, value: Any, fld: str) -> bool:
        if isinstance(value, dict):
            return True
        self.add(node, key, fld, f"must be a mapping, not {kind_of(value)}",
                 "write key: value lines indented under it", at_value=False)
        return False

    def keys(self, node: dict[str, Any], allowed: Sequence[str], fld: str) -> None:
        self.unknown(node, f"{fld}." if fld else "", allowed,
                     hint=lambda key, valid: valid_ids_hint(key, valid, "allowed"))

    def strings(self, node: Any, key: str | int, fld: str) -> list[Src]:
        value = node[key]
        if isinstance(value, str):
            value = [value]
            items: Iterable[tuple[int | None, Any]] = [(None, value[0])]
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            self.add(node, key, fld, f"must be a list of phrases, not {kind_of(value)}",
                     "write one '- phrase' per line", at_value=False)
            return []
        out: list[Src] = []
        for i, item in items:
            where_node, where_key = (node, key) if i is None else (value, i)
            f = fld if i is None else f"{fld}[{i}]"
            if not isinstance(item, str) or not item.strip():
                self.add(where_node, where_key, f, f"must be a non-empty phrase, not "
                         f"{kind_of(item)}", "quote it if it holds : or #", at_value=False)
                continue
            line, col = position(where_node, where_key)
            out.append(Src(item.strip(), self.path, line, col, f))
        return out

    def words(self, node: Any, key: str, fld: str) -> list[str]:
        out = []
        for src in self.strings(node, key, fld):
            toks = normalize(src.text).tokens
            if len(toks) != 1:
                self.note(src.line, src.col, src.field, f"{src.text!r} must be a single word",
                          "split it into one word per entry")
                continue
            out.append(toks[0])
        return out

    def number(self, node: Any, key: str, fld: str, lo: float, hi: float) -> float | None:
        value = node[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(node, key, fld, f"must be a number, not {kind_of(value)}",
                     f"write a number from {lo:g} to {hi:g}")
            return None
        if not lo <= value <= hi:
            self.add(node, key, fld, f"{value} is out of range",
                     f"use a number from {lo:g} to {hi:g}")
            return None
        return float(value)

    def boolean(self, node: Any, key: str, fld: str) -> bool | None:
        value = node[key]
        if not isinstance(value, bool):
            self.add(node, key, fld, f"must be true or false, not {kind_of(value)}")
            return None
        return value


def _read(path: str, text: str | None = None) -> tuple[_Raw, list[Problem]]:
    """Parse and check the structure of one rubric file."""
    try:
        data = load_yaml(path, what="rubric file", text=text)
    except YamlProblem as e:
        return _Raw(path), [e.problem]
    rd = _Reader(path)
    raw = _Raw(path)
    if data is None:
        return raw, [Problem(path, 0, 0, "", "the rubric file is empty",
                             "add an 'ids:' section (see the built-in rubric.yaml)")]
    if not isinstance(data, dict):
        return raw, [Problem(path, 1, 1, "", f"must be a mapping, not {kind_of(data)}",
                             "start with 'ids:' (see the built-in rubric.yaml)")]
    rd.keys(data, _TOP_FIELDS, "")
    if "version" in data and data["version"] != 1:
        rd.add(data, "version", "version", f"unsupported version {data['version']!r}",
               "write version: 1", at_value=False)
    if "negation" in data and rd.mapping(data, "negation", data["negation"], "negation"):
        neg = data["negation"]
        rd.keys(neg, _NEGATION_FIELDS, "negation")
        for k, attr in (("words", "negators"), ("breakers", "breakers"),
                        ("idioms", "idioms")):
            if k in neg:
                getattr(raw, attr).extend(rd.words(neg, k, f"negation.{k}"))
        if "window" in neg:
            w = rd.number(neg, "window", "negation.window", 1, 10)
            raw.window = int(w) if w is not None else None
    if "contrast" in data:
        raw.contrast.extend(rd.words(data, "contrast", "contrast"))
    if "classes" in data and rd.mapping(data, "classes", data["classes"], "classes"):
        for name in data["classes"]:
            fld = f"classes.{name}"
            if not re.fullmatch(r"[a-z_]+", str(name)) or name == "num":
                rd.add(data["classes"], name, fld, f"bad class name {name!r}",
                       "use lowercase letters and _ ('num' is built in)", at_value=False)
                continue
            raw.classes[name] = rd.strings(data["classes"], name, fld)
    if "refusal" in data and rd.mapping(data, "refusal", data["refusal"], "refusal"):
        rd.keys(data["refusal"], ("patterns",), "refusal")
        if "patterns" in data["refusal"]:
            raw.refusal = rd.strings(data["refusal"], "patterns", "refusal.patterns")
    if "reflect" in data and rd.mapping(data, "reflect", data["reflect"], "reflect"):
        rf = data["reflect"]
        rd.keys(rf, _REFLECT_FIELDS, "reflect")
        if "min_shared" in rf:
            n = rd.number(rf, "min_shared", "reflect.min_shared", 1, 10)
            raw.min_shared = int(n) if n is not None else None
        if "min_coverage" in rf:
            raw.min_coverage = rd.number(rf, "min_coverage", "reflect.min_coverage", 0, 1)
        if "ignore" in rf:
            raw.ignore = rd.words(rf, "ignore", "reflect.ignore")
        if "frames" in rf:
            raw.frames = rd.strings(rf, "frames", "reflect.frames")
        if "synonyms" in rf:
            syn = rf["synonyms"]
            if not isinstance(syn, list):
                rd.add(rf, "synonyms", "reflect.synonyms", "must be a list of word lists",
                       "write - [twice, double]", at_value=False)
            else:
                for i in range(len(syn)):
                    group = rd.strings(syn, i, f"reflect.synonyms[{i}]")
                    for src in group:
                        if len(normalize(src.text).tokens) != 1:
                            rd.note(src.line, src.col, src.field,
                                    f"{src.text!r} must be a single word",
                                    "synonyms are single words")
                    raw.synonyms.append(group)
    if "ids" in data and rd.mapping(data, "ids", data["ids"], "ids"):
        ids = data["ids"]
        for id_ in ids:
            fld = f"ids.{id_}"
            if id_ not in ALL_IDS:
                rd.add(ids, id_, fld, f"unknown id {id_!r}", valid_ids_hint(str(id_)),
                       at_value=False)
                continue
            node = ids[id_]
            if not rd.mapping(ids, id_, node, fld):
                continue
            line, col = position(ids, id_)
            entry = raw.ids[id_] = _RawId((path, line, col))
            rd.keys(node, _ID_FIELDS, fld)
            if "weight" in node:
                entry.weight = rd.number(node, "weight", f"{fld}.weight", 0, 100)
            if "mood" in node:
                entry.mood = rd.number(node, "mood", f"{fld}.mood", -10, 10)
            if "negation" in node:
                entry.negation = rd.boolean(node, "negation", f"{fld}.negation")
            if "replace" in node:
                entry.replace = bool(rd.boolean(node, "replace", f"{fld}.replace"))
            for k in ("patterns", "exemplars", "not_if"):
                if k in node:
                    if id_ == "stay_calm":
                        rd.add(node, k, f"{fld}.{k}", "stay_calm is measured from the "
                               "audio, not words", "give it only weight and mood",
                               at_value=False)
                        continue
                    if id_ == "listen_reflect" and k == "patterns":
                        rd.add(node, k, f"{fld}.{k}", "listen_reflect is judged against "
                               "the customer's line", "put reflective frames under "
                               "reflect.frames", at_value=False)
                        continue
                    getattr(entry, k).extend(rd.strings(node, k, f"{fld}.{k}"))
    elif "ids" not in data:
        rd.add(data, None, "ids", "no 'ids:' section",
               "add ids: with the steps and pitfalls to change", at_value=False)
    return raw, rd.problems


def _merge(base: _Raw, extra: _Raw) -> _Raw:
    """``extra`` layered over ``base``: lists extend, numbers and flags replace."""
    out = _Raw(extra.path)
    out.negators = [*base.negators, *extra.negators]
    out.breakers = [*base.breakers, *extra.breakers]
    out.idioms = [*base.idioms, *extra.idioms]
    out.window = extra.window if extra.window is not None else base.window
    out.contrast = [*base.contrast, *extra.contrast]
    out.classes = {k: list(v) for k, v in base.classes.items()}
    for k, v in extra.classes.items():
        out.classes.setdefault(k, []).extend(v)
    out.refusal = [*base.refusal, *extra.refusal]
    out.frames = [*base.frames, *extra.frames]
    out.min_shared = extra.min_shared if extra.min_shared is not None else base.min_shared
    out.min_coverage = (extra.min_coverage if extra.min_coverage is not None
                        else base.min_coverage)
    out.ignore = [*base.ignore, *extra.ignore]
    out.synonyms = [*base.synonyms, *extra.synonyms]
    out.ids = {}
    for id_ in {*base.ids, *extra.ids}:
        b, e = base.ids.get(id_), extra.ids.get(id_)
        if b is None or e is None:
            out.ids[id_] = b or e  # type: ignore[assignment]
            continue
        m = _RawId(e.pos)
        m.weight = e.weight if e.weight is not None else b.weight
        m.mood = e.mood if e.mood is not None else b.mood
        m.negation = e.negation if e.negation is not None else b.negation
        m.replace = e.replace
        for k in ("patterns", "exemplars", "not_if"):
            setattr(m, k, [*([] if e.replace else getattr(b, k)), *getattr(e, k)])
        out.ids[id_] = m
    return out


def _compile(raw: _Raw, sources: tuple[str, ...]) -> tuple[Rubric | None, list[Problem]]:
    """Compile a merged rubric; every bad phrase becomes a problem at its line."""
    problems: list[Problem] = []

    def bad(src: Src, message: str, hint: str = "") -> None:
        problems.append(Problem(src.path, src.line, src.col, src.field, message, hint))

    classes = compile_classes(raw.classes, bad)

    def matcher(items: Iterable[tuple[str, Src]]) -> Matcher | None:
        return build_matcher(items, classes, bad)

    specs: dict[str, IdSpec] = {}
    for id_ in ALL_IDS:
        entry = raw.ids.get(id_)
        kind = "pitfall" if id_ in PITFALL_IDS else "step"
        if entry is None or entry.weight is None or entry.mood is None:
            missing = "weight and mood" if entry is None else " and ".join(
                k for k in ("weight", "mood") if getattr(entry, k) is None)
            path, line, col = entry.pos if entry else (raw.path, 0, 0)
            problems.append(Problem(path, line, col, f"ids.{id_}",
                                    f"{id_} has no {missing}",
                                    "every step and pitfall needs a weight and a mood"))
            continue
        if id_ in CONTENT_IDS and id_ != "listen_reflect" and not (
                entry.patterns or entry.exemplars):
            path, line, col = entry.pos
            problems.append(Problem(path, line, col, f"ids.{id_}",
                                    f"{id_} has no patterns or exemplars",
                                    "add at least one, or drop 'replace: true'"))
        for ex in entry.exemplars:
            if not normalize(ex.text).tokens:
                bad(ex, f"bad exemplar {ex.text!r}: it has no words", "write a sentence as "
                    "a trainee would say it")
        specs[id_] = IdSpec(
            id_, kind, entry.weight, entry.mood,
            entry.negation if entry.negation is not None else True,
            matcher(("pattern", s) for s in entry.patterns),
            matcher(("pattern", s) for s in entry.not_if),
            tuple(entry.exemplars), entry.replace)
    refusal = matcher(("refusal", s) for s in raw.refusal)
    frames = matcher(("frame", s) for s in raw.frames)
    synonyms: dict[str, str] = {}
    for group in raw.synonyms:
        keys = [stem(normalize(s.text).tokens[0]) for s in group
                if len(normalize(s.text).tokens) == 1]
        for k in keys:
            synonyms[k] = synonyms.get(keys[0], keys[0])
    if problems:
        return None, problems
    return Rubric(
        sources=sources, specs=specs, refusal=refusal, frames=frames,
        negators=frozenset(raw.negators), breakers=frozenset(raw.breakers),
        idioms=frozenset(raw.idioms), window=raw.window or 4,
        contrast=frozenset(raw.contrast),
        reflect_ignore=frozenset(stem(w) for w in raw.ignore),
        synonyms=synonyms, min_shared=raw.min_shared or 2,
        min_coverage=raw.min_coverage if raw.min_coverage is not None else 0.3,
    ), []


_BASE: dict[tuple[str, int, int], tuple[_Raw, list[Problem]]] = {}


def _build(extra: str | None) -> tuple[Rubric | None, list[Problem]]:
    stamp = _stamp(BUILTIN_PATH)
    if stamp not in _BASE:  # parsing the built-in file is most of the cost; do it once
        _BASE.clear()
        _BASE[stamp] = _read(str(BUILTIN_PATH))
    base, problems = _BASE[stamp]
    if problems:
        return None, problems
    sources: tuple[str, ...] = (str(BUILTIN_PATH),)
    raw = base
    found: list[Problem] = []
    if extra is not None:
        more, found = _read(extra)
        raw = _merge(base, more)
        sources = (*sources, extra)
    # compile even after structure problems, so one run reports bad phrases too
    rubric, problems = _compile(raw, sources)
    problems = sorted([*found, *problems], key=lambda p: (p.path != str(extra), p.line, p.column))
    return (None if problems else rubric), problems


def check_rubric(path: str | os.PathLike[str]) -> list[Problem]:
    """Every problem in a rubric file (merged over the built-in one), empty when valid."""
    p = Path(path)
    if p.resolve() == BUILTIN_PATH.resolve():
        return _build(None)[1]
    return _build(str(p))[1]


_CACHE: dict[tuple[Any, ...], Rubric] = {}


def _stamp(p: Path) -> tuple[str, int, int]:
    try:
        st = p.stat()
    except OSError:
        return (str(p), 0, 0)
    return (str(p.resolve()), st.st_mtime_ns, st.st_size)


def load_rubric(extra: str | os.PathLike[str] | None = None) -> Rubric:
    """The built-in rubric, merged with a trainer's file when given; cached per process
    (keyed by path and modification time). Raises :class:`RubricError` naming
    ``file:line:col``, the field and the fix for an invalid file."""
    key = (_stamp(BUILTIN_PATH), _stamp(Path(extra)) if extra is not None else None)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    rubric, problems = _build(None if extra is None else str(extra))
    if rubric is None:
        more = len(problems) - 1
        raise RubricError(problems[0].line_text(severity=False) + (
            f" (and {more} more problem{'s' if more > 1 else ''} in the file)" if more else ""))
    _CACHE[key] = rubric
    return rubric


RUBRIC_BESIDE = "rubric.yaml"
"""The name of a trainer's rubric file kept in a personas folder (not a persona)."""


def rubric_beside(persona_path: str | os.PathLike[str]) -> Path | None:
    """``rubric.yaml`` in the folder of a persona file, if a trainer put one there."""
    p = Path(persona_path)
    candidate = (p if p.is_dir() else p.parent) / RUBRIC_BESIDE
    return candidate if candidate.is_file() else None
