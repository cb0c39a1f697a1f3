"""The safe YAML loader shared by persona and rubric files."""

from __future__ import annotations

from pathlib import Path

import pytest

from voice_sim.yamlfile import MAX_YAML_BYTES, YamlProblem, load_yaml, position


def _write(tmp_path: Path, text: str | bytes, name: str = "f.yaml") -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def test_positions_are_one_based(tmp_path: Path) -> None:
    data = load_yaml(_write(tmp_path, "a:\n  b: 1\n  c: [1, 2]\n"))
    assert position(data, "a") == (1, 1)
    assert position(data["a"], "c") == (3, 3)
    assert position(data["a"]["c"], 1) == (3, 10)


def test_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    data = load_yaml(_write(tmp_path, "v: &v {rate: 180, pitch: 40}\nw: {<<: *v, rate: 200}\n"))
    assert dict(data["w"]) == {"rate": 200, "pitch": 40}


@pytest.mark.parametrize(
    ("text", "where", "words"),
    [
        ("a: !!python/object/apply:os.system ['true']\n", ":1:4:", "not allowed"),
        ("a: !custom x\n", ":1:4:", "not allowed"),
        ("a: [1,\nb: 2\n", ":3:1:", "YAML syntax error"),
        ("a:\n\tb: 1\n", ":2:1:", "YAML syntax error"),
    ],
)
def test_refused_with_position(tmp_path: Path, text: str, where: str, words: str) -> None:
    p = _write(tmp_path, text)
    with pytest.raises(YamlProblem) as e:
        load_yaml(p)
    assert str(p) + where in e.value.line()
    assert words in e.value.line()


def test_billion_laughs_refused_before_expansion(tmp_path: Path) -> None:
    rows = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    rows += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(YamlProblem, match="expands to more than"):
        load_yaml(_write(tmp_path, "\n".join(rows) + "\n"))


def test_deep_nesting_refused(tmp_path: Path) -> None:
    with pytest.raises(YamlProblem, match="nested more than"):
        load_yaml(_write(tmp_path, "a: " + "[" * 60 + "]" * 60 + "\n"))


def test_non_utf8_names_line_and_column(tmp_path: Path) -> None:
    p = _write(tmp_path, b"a: 1\nb: caf\xe9\n")
    with pytest.raises(YamlProblem, match=r":2:7: byte 0xe9 is not UTF-8"):
        load_yaml(p)


def test_missing_folder_and_huge(tmp_path: Path) -> None:
    with pytest.raises(YamlProblem, match="no such file"):
        load_yaml(tmp_path / "nope.yaml")
    with pytest.raises(YamlProblem, match="is a folder"):
        load_yaml(tmp_path)
    big = _write(tmp_path, "a: " + "x" * (MAX_YAML_BYTES + 10) + "\n")
    with pytest.raises(YamlProblem, match="byte limit"):
        load_yaml(big)


# --- the fast reader (libyaml events) against ruamel's round trip ----------------------

ROOT = Path(__file__).resolve().parent.parent


def _same(fast: object, slow: object, where: str = "$") -> None:
    """Equal data, and every position :func:`position` can read equal too."""
    if isinstance(slow, dict):
        assert isinstance(fast, dict) and list(fast) == list(slow), where
        assert position(fast) == position(slow), where
        for k in slow:
            assert position(fast, k) == position(slow, k), f"{where}.{k}"
            assert position(fast, k, at_value=True) == position(slow, k, at_value=True), \
                f"{where}.{k} (value)"
            _same(fast[k], slow[k], f"{where}.{k}")  # type: ignore[index]
    elif isinstance(slow, list):
        assert isinstance(fast, list) and len(fast) == len(slow), where
        assert position(fast) == position(slow), where
        for i, item in enumerate(slow):
            assert position(fast, i) == position(slow, i), f"{where}[{i}]"
            _same(fast[i], item, f"{where}[{i}]")
    else:  # ruamel's float and str subclasses only remember how the value was written
        assert fast == slow and isinstance(slow, type(fast)), (where, fast, slow)
        assert type(fast) in (type(slow), float, str), (where, type(fast), type(slow))


@pytest.mark.parametrize(("name", "end"), [("voice_sim/rubric.yaml", "\n"),
                                         ("personas/perfectionist.yaml", "\r\n"),
                                         ("tests/example_suite/good-call.call.yaml", "\n")])
def test_shipped_files_read_fast_and_alike(name: str, end: str) -> None:
    """The built-in rubric (every phrase's line is evidence), the largest persona (with
    Windows line ends) and a call spec take the fast reader, with the data and positions
    of the round trip. (Every YAML file of the repository was checked so once, by hand;
    the persona and rubric tests check the positions of their messages.)"""
    from voice_sim.yamlfile import _fast_load, _load_round_trip, read_text

    source = read_text(ROOT / name).replace("\n", end)
    done, fast = _fast_load(source)
    assert done, name
    _same(fast, _load_round_trip(name, source))


@pytest.mark.parametrize("text", [
    "a:\nb: 1\n",  # a left-out value: ruamel places it at the next key
    "x:\n  a: # note\n  b:\n\n# end\n",
    "a: {b: , c: [d, ]}\n",
    "a: &v 1\nb: *v\n",
    "a: {<<: {b: 1}}\n",
    "a: 1\na: 2\n",
    "a: x\tb\n",  # tabs: libyaml takes some that ruamel refuses
    "a: >-#\n  x\n",
    "%YAML 1.1\n---\na: yes\n",
    "a: 1\n---\nb: 2\n",
    "\ufeffa: 1\n",
    "a: [1,\nb: 2\n",
    "a: 0\nb: 0x1f\nc: 1_000\nd: .inf\ne: 2020-01-02\nf: yes\ng: -1.5e3\nh: 007\n",
    "k: |+\n  kept\n\nl: 'it''s'\nm: \"\\u00e9\\t\"\nn: [1, {o: p}]\nq: plain\n  folded\n",
])
def test_fast_reader_or_round_trip_same_result(tmp_path: Path, text: str) -> None:
    """Whatever the fast reader takes gives the round trip's data and positions; what it
    leaves (tags, aliases, left-out values, ...) or what is an error reads as before."""
    from voice_sim.yamlfile import _load_round_trip

    p = _write(tmp_path, text)
    try:
        slow = _load_round_trip(str(p), text)
    except YamlProblem as e:
        with pytest.raises(YamlProblem) as fast_error:
            load_yaml(p)
        assert fast_error.value.line() == e.line()
        return
    _same(load_yaml(p), slow)

