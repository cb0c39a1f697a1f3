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
