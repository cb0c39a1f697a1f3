"""Reading trainer-written YAML safely, with positions for error messages.

Persona and rubric files are written by hand, so every problem must point at a
``file:line:column``, and evidence names the rubric line a phrase came from. The
loader gives mappings and lists that carry their positions (``.lc``, ruamel.yaml's
interface, read only by :func:`position`) and refuses what a plain data file never
needs: oversized files, bytes that are not UTF-8, explicit tags (``!!python/object``
and friends) and alias bombs.

Two readers, one result. A plain file — no tags, anchors, aliases, directives, merge
keys, tabs or left-out values — is read from libyaml's event stream (PyYAML's C
parser; :func:`_fast_load`) into :class:`YamlMap` / :class:`YamlList`, values resolved
by YAML 1.2's rules as ruamel's are: the 974-line built-in rubric in ~5 ms (30 ms with
the import) instead of ~300 ms. Anything else — a syntax error, a tag, an alias, a
duplicate key, ``key:`` with nothing after it (whose position the two parsers place
differently), anything the fast reader is not sure of — goes through ruamel.yaml's
round-trip loader (:func:`_load_round_trip`), which gives every refusal its
``file:line:column`` exactly as before. The two agree on the data and on every
position (checked on every YAML file of the repository, with Unix and Windows line
ends, and on 37,000 mutated and generated files; ``tests/test_yamlfile.py`` keeps a
few of each); the fast reader's floats are plain ``float`` and its block scalars
plain ``str`` (ruamel's subclasses of them only remember how they were written, for
writing back). Editing a file keeping its comments (:mod:`voice_sim.persona_edit`)
uses ruamel itself.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voice_sim.errors import InputError, one_line

MAX_YAML_BYTES = 1 << 20
"""Bytes. Hand-written persona and rubric files are a few kilobytes; a megabyte is generous."""

MAX_NODES = 100_000
"""Values in a file once every ``*alias`` is expanded. Anchors are handy for repeated
blocks; a few aliases that each repeat the one before ("billion laughs") would expand
into billions of values the moment anything walks the data."""

MAX_DEPTH = 40
"""Nesting depth of collections; real files use fewer than ten levels."""

_STANDARD_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}"
    for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "binary",
              "omap", "set", "merge")
)


@dataclass(frozen=True)
class Problem:
    """One problem found in a file, as ``file:line:col: field: message (fix)``."""

    path: str
    line: int
    """1-based; 0 when the problem concerns the whole file."""
    column: int
    """1-based; 0 when unknown."""
    field: str
    """Dotted path to the field, e.g. ``lines[2].expects``; empty for the whole file."""
    message: str
    hint: str = ""
    severity: str = "error"
    """``error`` or ``warning``; only errors make a file invalid."""

    def line_text(self, *, severity: bool = True) -> str:
        """The one-line form printed by ``check`` commands; ``severity=False`` for the
        message of an error (the CLI already prefixes ``error:``)."""
        where = f"{self.path}:{self.line}:{self.column}" if self.line else self.path
        field = f" {self.field}:" if self.field else ""
        fix = f" — {self.hint}" if self.hint else ""
        level = f" {self.severity}:" if severity else ""
        return one_line(f"{where}:{level}{field} {self.message}{fix}")

    def to_json(self) -> dict[str, Any]:
        """JSON form for ``--json`` output."""
        return {"path": self.path, "line": self.line, "column": self.column,
                "field": self.field, "message": self.message, "hint": self.hint,
                "severity": self.severity}


class YamlProblem(InputError):
    """A file that is not loadable YAML at all; ``problem`` says where."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.line_text(severity=False))
        self.problem = problem


def read_text(path: str | os.PathLike[str], *, what: str = "file") -> str:
    """Read a hand-written text file: exists, is a file, not huge, UTF-8."""
    p = Path(path)
    if not p.exists():
        raise YamlProblem(Problem(str(p), 0, 0, "", f"no such {what}", "check the path"))
    if p.is_dir():
        raise YamlProblem(Problem(str(p), 0, 0, "", f"is a folder, not a {what}",
                                  "name a .yaml file"))
    size = p.stat().st_size
    if size > MAX_YAML_BYTES:
        raise YamlProblem(Problem(str(p), 0, 0, "", f"{size} bytes, over the "
                                  f"{MAX_YAML_BYTES} byte limit for a {what}",
                                  "split it or remove what is not needed"))
    raw = p.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise YamlProblem(Problem(str(p), line, col, "", f"byte 0x{raw[e.start]:02x} is not "
                                  "UTF-8 text", "save the file as UTF-8")) from e


def load_yaml(path: str | os.PathLike[str], *, what: str = "file",
              text: str | None = None) -> Any:
    """Parse a YAML file into mappings and lists that know their positions (dict/list
    subclasses with ``.lc``, read by :func:`position`).

    Raises :class:`YamlProblem` naming ``file:line:column`` for unreadable files,
    syntax errors, explicit tags, alias bombs and over-deep nesting.
    """
    source = read_text(path, what=what) if text is None else text
    done, data = _fast_load(source)
    return data if done else _load_round_trip(str(path), source)


class _Positions:
    """Where a mapping's or list's parts start, 0-based, as ruamel's ``lc`` has them:
    ``line`` / ``col`` of the collection, ``key(k)`` / ``value(k)`` of an entry,
    ``item(i)`` of a list item (KeyError when unknown)."""

    def __init__(self, line: int, col: int) -> None:
        self.line = line
        self.col = col
        self.data: dict[Any, tuple[int, ...]] = {}

    def key(self, k: Any) -> tuple[int, int]:
        at = self.data[k]
        return at[0], at[1]

    def value(self, k: Any) -> tuple[int, int]:
        at = self.data[k]
        return at[2], at[3]

    def item(self, i: int) -> tuple[int, int]:
        at = self.data[i]
        return at[0], at[1]


class YamlMap(dict[Any, Any]):
    """A mapping read by the fast reader; ``lc`` holds its positions."""

    lc: _Positions


class YamlList(list[Any]):
    """A list read by the fast reader; ``lc`` holds its positions."""

    lc: _Positions


class _Unsure(Exception):
    """The fast reader leaves this file to the round-trip loader."""


_RESOLVED_FIRST = frozenset("-+.0123456789<=~!&*")
"""First characters of plain scalars that YAML 1.2 may read as something other than
text, true/false or empty (numbers, dates, ``<<``, ``=``): ruamel decides these.
(ruamel's 1.2 table keys its resolvers by first character; the others are t, T, f, F
for true/false and n, N, ~ for null, handled below.)"""

_BLOCK_HEADER = re.compile(r"[|>](?:[-+][1-9]?|[1-9][-+]?)?(?: +(?:#.*)?)?")
"""A block scalar's first line as ruamel accepts it (libyaml also takes ``>-#``)."""
_DECIMAL = re.compile(r"[-+]?[1-9][0-9]*")
"""Integers ruamel reads as plain ``int`` (a zero keeps its written width there)."""
_FLOAT = re.compile(r"[-+]?[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?")
_BOOLS = {"true": True, "True": True, "TRUE": True,
          "false": False, "False": False, "FALSE": False}
_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
_UNUSUAL = re.compile("[^\n\r\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe"
                      "\uff00-\ufffd\U00010000-\U0010ffff]")
"""Characters the fast reader leaves to ruamel: tabs (YAML 1.2 and libyaml differ on
where one may stand), control characters (refused there, with their position), the
BOM, and NEL and the Unicode line and paragraph separators, which YAML 1.1 readers
count as line breaks."""


def _plain(value: str) -> Any:
    """A plain (unquoted) scalar, as ruamel's YAML 1.2 round-trip loader reads it."""
    first = value[:1]
    if first not in _RESOLVED_FIRST:
        if value in _BOOLS:
            return _BOOLS[value]
        return None if value in _NULLS else value
    if _DECIMAL.fullmatch(value):
        return int(value)
    if _FLOAT.fullmatch(value):
        return float(value)
    if value == "~":
        return None
    return _ruamel_scalar(value)


def _ruamel_scalar(value: str) -> Any:
    """What ruamel makes of a rarer plain scalar (``0x1f``, ``1_000``, ``.inf``, a
    date); a merge key or ``=`` leaves the file to it."""
    from ruamel.yaml import YAML
    from ruamel.yaml.nodes import ScalarNode

    yaml = YAML(typ="rt")
    tag = yaml.resolver.resolve(ScalarNode, value, (True, False))
    if str(tag) not in _STANDARD_TAGS or str(tag).endswith((":merge", ":value", ":yaml")):
        raise _Unsure(value)
    try:
        return yaml.constructor.construct_object(ScalarNode(tag, value), deep=True)
    except Exception as e:  # e.g. a date that does not exist: the round trip says how
        raise _Unsure(value) from e


def _fast_load(source: str) -> tuple[bool, Any]:
    """(True, data) for a plain file read from libyaml's events; (False, None) when
    the round-trip loader must read it (see the module docstring)."""
    try:
        from yaml import YAMLError
        from yaml._yaml import CParser
    except ImportError:  # PyYAML without libyaml: the round trip reads everything
        return False, None
    if _UNUSUAL.search(source):
        return False, None
    try:
        return True, _build(CParser(source), source.splitlines())
    except (_Unsure, YAMLError, UnicodeError):
        return False, None


def _build(parser: Any, lines: Sequence[str]) -> Any:
    """The one document of ``parser``'s events (``lines``: the source's) as
    :class:`YamlMap` / :class:`YamlList`; :class:`_Unsure` for anything the round trip
    must decide."""
    from yaml.events import (
        AliasEvent,
        DocumentStartEvent,
        MappingEndEvent,
        MappingStartEvent,
        ScalarEvent,
        SequenceEndEvent,
        SequenceStartEvent,
        StreamEndEvent,
    )

    no_key = object()
    root: Any = no_key
    # each open collection: [container, pending key (no_key when a key comes next),
    # the pending key's line and column, whether it is a [...] or {...}]
    stack: list[list[Any]] = []
    values = documents = flow = 0
    while True:
        event = parser.get_event()
        kind = type(event)
        if kind is ScalarEvent or kind is MappingStartEvent or kind is SequenceStartEvent:
            if event.anchor is not None or event.tag is not None:
                raise _Unsure("anchor or tag")
            values += 1
            if values > MAX_NODES:
                raise _Unsure("too big")
            mark = event.start_mark
            line, col = mark.line, mark.column
            if kind is ScalarEvent:
                if not event.value and event.end_mark.index == mark.index and (
                        flow or not stack or type(stack[-1][0]) is not YamlList):
                    # A value left out (``key:`` and nothing): where it "is" differs —
                    # libyaml puts it after the ':' in a block, at the next token in
                    # [...] or {...}; ruamel the other way round, or after a comment.
                    # Only an empty item of a block list is placed alike.
                    raise _Unsure("a value left out")
                if event.style in ("|", ">") and not _BLOCK_HEADER.fullmatch(
                        lines[line], col):
                    raise _Unsure("a block scalar header libyaml reads more loosely")
                value: Any = _plain(event.value) if event.implicit[0] else event.value
            else:
                if len(stack) >= MAX_DEPTH:
                    raise _Unsure("too deep")
                value = YamlMap() if kind is MappingStartEvent else YamlList()
                value.lc = _Positions(line, col)
            if not stack:
                root = value
            else:
                top = stack[-1]
                box = top[0]
                if type(box) is YamlList:
                    box.lc.data[len(box)] = (line, col)
                    box.append(value)
                elif top[1] is no_key:
                    if kind is not ScalarEvent or value in box:
                        raise _Unsure("a key that is not a plain value, or a duplicate")
                    top[1], top[2], top[3] = value, line, col
                else:
                    key = top[1]
                    box.lc.data[key] = (top[2], top[3], line, col)
                    box[key] = value
                    top[1] = no_key
            if kind is not ScalarEvent:
                in_flow = bool(event.flow_style)
                stack.append([value, no_key, 0, 0, in_flow])
                flow += in_flow
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            flow -= stack.pop()[4]
        elif kind is DocumentStartEvent:
            documents += 1
            if documents > 1 or event.version is not None or event.tags:
                raise _Unsure("several documents, or directives")
        elif kind is AliasEvent:
            raise _Unsure("alias")
        elif kind is StreamEndEvent:
            break
    if root is no_key:
        raise _Unsure("no document")
    return root


def _load_round_trip(p: str, source: str) -> Any:
    """ruamel.yaml's round-trip loader, with the event pass that refuses tags, alias
    bombs and over-deep nesting before anything is built."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError
    from ruamel.yaml.events import (
        AliasEvent,
        CollectionEndEvent,
        CollectionStartEvent,
        ScalarEvent,
    )

    yaml = YAML(typ="rt")
    try:
        # A pass over the event stream first: cheap, and it sees aliases and tags
        # before anything is built from them.
        # ``stack`` holds the expanded size of each open collection; ``sizes`` the
        # expanded size of each anchored node, so an alias costs what it stands for.
        stack: list[int] = [0]
        anchors: list[str | None] = [None]
        sizes: dict[str, int] = {}
        for event in yaml.parse(source):
            mark = event.start_mark
            tag = getattr(event, "tag", None)
            if tag is not None and str(tag) not in _STANDARD_TAGS:
                raise YamlProblem(Problem(p, mark.line + 1, mark.column + 1, "",
                                          f"the tag {tag} is not allowed",
                                          "remove it: plain data files need no tags"))
            if isinstance(event, CollectionStartEvent):
                if len(stack) > MAX_DEPTH:
                    raise YamlProblem(Problem(p, mark.line + 1, mark.column + 1, "",
                                              f"nested more than {MAX_DEPTH} levels deep",
                                              "flatten the structure"))
                stack.append(0)
                anchors.append(event.anchor)
                continue
            if isinstance(event, CollectionEndEvent):
                size, anchor = stack.pop() + 1, anchors.pop()
            elif isinstance(event, AliasEvent):
                size, anchor = sizes.get(str(event.anchor), 1), None
            elif isinstance(event, ScalarEvent):
                size, anchor = 1, event.anchor
            else:
                continue
            if anchor is not None:
                sizes[str(anchor)] = size
            stack[-1] += size
            if stack[-1] > MAX_NODES:
                raise YamlProblem(Problem(p, mark.line + 1, mark.column + 1, "",
                                          f"expands to more than {MAX_NODES} values "
                                          "(aliases repeating aliases)",
                                          "write the values out instead of *aliases"))
        data = yaml.load(source)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        msg = " ".join(str(x) for x in (e.context, e.problem) if x) or "invalid YAML"
        raise YamlProblem(Problem(p, line, col, "", f"YAML syntax error: {msg}",
                                  "fix the indentation or quoting there")) from e
    except YAMLError as e:
        # A control character (NUL, an escape code) gives a ReaderError: two lines,
        # with a character offset instead of a mark. Keep one line, with the position.
        at = getattr(e, "position", None)
        line = col = 0
        if isinstance(at, int) and 0 <= at <= len(source):
            line = source.count("\n", 0, at) + 1
            col = at - (source.rfind("\n", 0, at) + 1) + 1
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise YamlProblem(Problem(p, line, col, "", f"YAML error: {first}",
                                  "remove that character, or fix the file there")) from e
    return data


def position(node: Any, key: str | int | None = None, *,
             at_value: bool = False) -> tuple[int, int]:
    """1-based (line, column) of ``node``, or of ``node[key]``: of the key in a mapping
    (of its value with ``at_value``), of the item in a list; ``node``'s own position
    when the key's is unknown, (0, 0) when that is unknown too. The one place that reads
    ruamel's positions."""
    lc = getattr(node, "lc", None)
    # A value ruamel read without a position (e.g. the document `=`) has lc.line None.
    if lc is None or not isinstance(lc.line, int) or not isinstance(lc.col, int):
        return (0, 0)
    try:
        if key is None:
            return (lc.line + 1, lc.col + 1)
        if isinstance(node, list):
            line, col = lc.item(key)
        else:
            line, col = lc.value(key) if at_value else lc.key(key)
        return (line + 1, col + 1)
    except (KeyError, IndexError, TypeError, AttributeError):
        return (lc.line + 1, lc.col + 1)


FieldPath = Sequence[str | int]
"""Keys and list indexes from the top of a document down to a value, as a schema
validator reports them: ``["lines", 2, "expects"]``."""


def field_name(path: FieldPath) -> str:
    """The dotted name of a field path, as messages print it: ``lines[2].expects``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def node_at(data: Any, path: FieldPath) -> Any:
    """The value at ``path`` in ``data``; KeyError, IndexError or TypeError when absent."""
    node = data
    for part in path:
        node = node[part]
    return node


def path_position(data: Any, path: FieldPath) -> tuple[int, int]:
    """:func:`position` of the value at ``path`` (of its key, for a mapping entry); the
    document's own for an empty path, (0, 0) when the path leads nowhere."""
    if not path:
        return position(data) if hasattr(data, "lc") else (1, 1)
    try:
        parent = node_at(data, path[:-1])
    except (KeyError, IndexError, TypeError):
        return (0, 0)
    return position(parent, path[-1])


def kind_of(value: Any) -> str:
    """What a YAML value is, in a trainer's words: ``must be a list, not text``."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class FileProblems(InputError):
    """A file people write (a call spec, a fixtures spec) with problems: ``problems``
    holds every one, in file order; the message names the first."""

    what = "file"
    """The kind of file, as the messages name it."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: (p.path, p.line, p.column)))
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"invalid {self.what} {self.problems[0].line_text(severity=False)}{more}")


def load_checked(path: Path, error: type[FileProblems]) -> Any:
    """:func:`load_yaml`, a problem reading or parsing the file raised as ``error``."""
    try:
        return load_yaml(path, what=error.what)
    except YamlProblem as e:
        raise error([e.problem]) from e


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice an unknown name was most likely meant to be; None when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return close[0] if close else None


def suggest(word: str, choices: Sequence[str]) -> str:
    """A fix for an unknown name: the closest choice, then all of them."""
    close = closest(word, choices)
    lead = f"did you mean {close}? " if close else ""
    return f"{lead}choose from {', '.join(choices)}"


class Checker:
    """Walks one YAML file, collecting every problem (not stopping at the first), each
    pointing at the key or value at fault. A file's reader subclasses it, or uses it as
    is, and adds the checks its own fields need; field names are ``prefix + key``
    (``expect.`` + ``min_score``). The one skeleton of every hand-written validator
    (call specs, fixtures specs, personas, rubric files)."""

    def __init__(self, path: str | os.PathLike[str], data: Any = None) -> None:
        self.path = str(path)
        self.data = data
        """The whole document, for problems placed by field path (:meth:`at`)."""
        self.problems: list[Problem] = []

    def note(self, line: int, column: int, fld: str, message: str, hint: str = "",
             severity: str = "error") -> None:
        """A problem at a known position."""
        self.problems.append(Problem(self.path, line, column, fld, message, hint, severity))

    def add(self, node: Any, key: Any, fld: str, message: str, hint: str = "", *,
            at_value: bool = True, severity: str = "error") -> None:
        """A problem at ``node[key]`` (its value, or its key); at ``node`` for None."""
        line, col = position(node, key, at_value=at_value)
        self.note(line, col, fld, message, hint, severity)

    def at(self, path: FieldPath, message: str, hint: str = "",
           severity: str = "error") -> None:
        """A problem at the field ``path`` of :attr:`data`, named by :func:`field_name`."""
        line, col = path_position(self.data, path)
        self.note(line, col, field_name(path), message, hint, severity)

    def unknown(self, node: Mapping[str, Any], prefix: str, valid: Sequence[str],
                hint: Callable[[str, Sequence[str]], str] = suggest) -> None:
        """A problem for every key of ``node`` not in ``valid``; ``hint`` words the fix
        from the key and the valid ones."""
        for key in node:
            if key not in valid:
                self.add(node, key, f"{prefix}{key}", f"unknown field {key!r}",
                         hint(str(key), valid), at_value=False)

    def text(self, node: Mapping[str, Any], key: str, prefix: str) -> str | None:
        """``node[key]`` stripped; None when absent or empty in YAML; a problem (and
        None) unless it is non-blank text."""
        value = node.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.add(node, key, f"{prefix}{key}", f"must be text, not {value!r}")
            return None
        return value.strip()

    def flag(self, node: Mapping[str, Any], key: str, prefix: str) -> bool | None:
        """``node[key]`` as true/false; None when absent; a problem unless a boolean."""
        if key not in node:
            return None
        value = node[key]
        if not isinstance(value, bool):
            self.add(node, key, f"{prefix}{key}", f"must be true or false, not {value!r}")
            return None
        return value

    def score(self, node: Mapping[str, Any], key: str, prefix: str) -> float | None:
        """``node[key]`` as a score 0-100; None when absent; a problem otherwise (an
        empty value too: a score left blank is a mistake, not a choice)."""
        if key not in node:
            return None
        value = node[key]
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not 0 <= value <= 100:
            self.add(node, key, f"{prefix}{key}", f"must be a number 0-100, not {value!r}")
            return None
        return float(value)
