"""Barge-in: the trainee talks over the persona, and the persona stops.

:class:`ListeningSpeaker` is the live call's :class:`~voice_sim.session.Speaker`: it plays
a line on a :class:`~voice_sim.devices.Player` (a callback stream that can be cut short)
while it reads the microphone. The trainee is talking over the line when a block is

* speech to the Silero model (voice_sim.vad), and
* louder than the room (the noise floor + :data:`MARGIN_DB`), and
* louder, by :data:`DOUBLE_TALK_DB`, than the echo of the line itself could be. The
  echo path is measured at the start of every line (the first :data:`LEARN_S`, when
  nobody talks over a caller yet): the lag at which the line's 20 ms levels follow the
  microphone's best, and the gain (a high percentile of the microphone over the line
  at that lag). The echo expected now is the line's loudest frame around that lag
  (never more than :data:`ALIGN_GAIN_DB` under the loudest of the last
  :data:`ECHO_WINDOW_S`) plus the gain; without a clear lag, the whole window's. So a
  laptop's loud speaker next to its microphone raises the bar and a headset lowers it.
  The persona's own voice coming back through the microphone is speech too, so the
  voice model alone cannot tell it from the trainee's. This is level-based double-talk
  detection, not echo cancellation: with a strong echo path (-8 dB) and a loud line,
  the trainee's first words may be heard only late (see bench_latency.py
  --mode barge-in).

:data:`CONFIRM_BLOCKS` such blocks in a row (60 ms) are a barge-in: the line stops at
once (``stop``: the stream is aborted, its buffered audio dropped) or at the end of the
sentence being said (``finish_sentence``: the next pause of :data:`SENTENCE_GAP_S` in
the line), per persona (``customer.when_interrupted``). The microphone's blocks from
:data:`CARRY_S` before the barge-in (or from where the microphone first rose above the
echo, if earlier) are given back to it as the start of the trainee's answer, so words
said over the line are not lost; :attr:`ListeningSpeaker.last` records when it
happened and how long both talked (:class:`Interruption`), which the session turns into
a delivery reason.

After the line has played, the microphone is watched for :data:`ECHO_TAIL_S` more: the
echo still arriving then teaches the floor rather than starting the answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from voice_sim.audio import FRAME_S

if TYPE_CHECKING:
    import numpy as np

    from voice_sim.listen import Block, Microphone

WHEN_INTERRUPTED = ("stop", "finish_sentence")
MARGIN_DB = 12.0
"""dB above the room's noise floor for a block to be the trainee."""
DOUBLE_TALK_DB = 6.0
"""dB above the loudest echo the line could cause for a block to be the trainee."""
ECHO_WINDOW_S = 0.4
"""Seconds of the line (handed to the device) whose echo may be arriving now: the
output buffer, the device, the room and the input buffer together."""
LEARN_S = 0.5
"""Seconds at the start of each line in which the echo path is measured (no barge-in)."""
NO_ECHO_DB = -60.0
"""dB: the echo gain assumed before any measurement (a headset: none)."""
MAX_ECHO_DB = 0.0
"""dB: the most echo gain believed (an echo louder than the line itself means the
trainee was talking while it was measured)."""
ALIGN_SLACK = 2
"""Frames either side of the measured echo lag that may be the echo (jitter)."""
ALIGN_GAIN_DB = 4.0
"""dB the aligned echo estimate may lower the bar below the whole window's."""
MIN_LEARN_FRAMES = 12
"""Frames of a line's start needed to measure the echo path."""
MIN_ECHO_CORR = 0.5
"""Correlation of the microphone's levels with the line's below which there is no echo."""
VOICE_P = 0.3
"""Silero speech probability from which a loud enough block is the trainee (lower than
voice_sim.vad's SPEECH_P: the level test above the echo already rules the echo out, and
every 32 ms of the model's onset counts against the 150 ms stop)."""
CONFIRM_BLOCKS = 3
"""Blocks in a row (20 ms each) of trainee speech that make a barge-in (2 let the echo
through 3-4 times in 50 lines)."""
SOFT_GAP_BLOCKS = 5
"""Blocks under the echo that end a stretch where the trainee may have begun."""
CARRY_S = 1.5
"""Seconds before the barge-in handed to the answer as its start (at least): under a
loud line the trainee's first words are heard late (bench_latency.py --mode barge-in:
up to ~1.4 s with a -8 dB echo path), and they must not be lost."""
PREROLL_S = 0.3
"""Seconds before the onset given to the answer with it (soft onsets)."""
SENTENCE_GAP_S = 0.25
"""Seconds of quiet in the line that end a sentence (``finish_sentence``)."""
QUIET_DBFS = -45.0
"""dBFS: the line is quiet below this."""
ECHO_TAIL_S = 0.3
"""Seconds the microphone is watched after the line, for the trainee (the echo still
arriving then is not an answer)."""


@dataclass(frozen=True)
class Interruption:
    """The trainee talked over a line."""

    at_s: float
    """Seconds into the line when the trainee began."""
    overlap_s: float
    """Seconds both were talking: from the onset until the line stopped."""
    detect_s: float
    """Seconds from the onset to the barge-in being detected (the line told to stop)."""
    finished_sentence: bool
    """True when the persona finished its sentence rather than stopping at once."""
    line_s: float
    """Seconds the whole line would have lasted."""

    def to_json(self) -> dict[str, Any]:
        """The turn's ``interruption`` object in ``session.json``."""
        return {"at_s": round(self.at_s, 3), "overlap_s": round(self.overlap_s, 3),
                "detect_s": round(self.detect_s, 3),
                "finished_sentence": self.finished_sentence, "line_s": round(self.line_s, 3)}


def frame_levels(x: np.ndarray, sr: int) -> np.ndarray:
    """dBFS of each 20 ms frame of ``x``."""
    import numpy as np

    n = max(1, round(sr * FRAME_S))
    k = len(x) // n
    if k == 0:
        return np.full(1, -120.0)
    f = x[:k * n].reshape(k, n).astype(np.float64)
    rms = np.sqrt(np.mean(f * f, axis=1))
    return np.maximum(-120.0, 20 * np.log10(np.maximum(rms, 1e-6)))


def next_gap(levels: np.ndarray, frame: int) -> int | None:
    """Frame index where the next pause of SENTENCE_GAP_S begins at or after ``frame``."""
    need = round(SENTENCE_GAP_S / FRAME_S)
    run = 0
    for i in range(frame, len(levels)):
        run = run + 1 if levels[i] < QUIET_DBFS else 0
        if run >= need:
            return i - need + 1
    return None


class ListeningSpeaker:
    """Plays the persona's lines on a device while listening for the trainee on ``mic``."""

    def __init__(self, mic: Microphone, device: str | int | None = None, *,
                 when_interrupted: str = "stop") -> None:
        from voice_sim import devices
        from voice_sim.errors import InputError

        if when_interrupted not in WHEN_INTERRUPTED:
            raise InputError(f"when_interrupted={when_interrupted!r}: not a choice",
                             hint=f"one of {', '.join(WHEN_INTERRUPTED)}")
        self.mic = mic
        self.device = devices.resolve_device(device, "output")
        self.when_interrupted = when_interrupted
        self.echo_gain_db = NO_ECHO_DB
        """The echo path's gain, from the latest line's measurement."""
        self.last: Interruption | None = None
        """The interruption of the latest line (None: it was heard out)."""
        self.last_player: Any = None
        self.echo_lag: int | None = None
        """Frames (20 ms) between a frame being handed to the device and its echo in the
        microphone, measured like the gain (None: not measured; the whole window counts)."""
        from voice_sim.vad import SpeechProbability

        SpeechProbability()  # the model loads now, not as the first line starts

    def _learn(self, heard: list[tuple[int, float]], ref: np.ndarray, window: int) -> None:
        """Measure the echo path from the start of a line: the lag whose line levels
        follow the microphone's best, and the gain (a high percentile of the microphone
        over the line at that lag, so the loudest echo stays under the bar)."""
        import numpy as np

        k = np.array([h[0] for h in heard])
        mic = np.array([h[1] for h in heard])
        best: tuple[float, int] | None = None
        for lag in range(0, window + 1):
            j = k - lag
            ok = j >= 0
            if ok.sum() < MIN_LEARN_FRAMES:
                continue
            r = ref[np.clip(j, 0, len(ref) - 1)]
            loud = ok & (r > QUIET_DBFS)
            if loud.sum() < MIN_LEARN_FRAMES // 2 or np.std(r[ok]) < 1e-6:
                continue
            c = float(np.corrcoef(r[ok], mic[ok])[0, 1])
            if best is None or c > best[0]:
                best = (c, lag)
        if best is None or not best[0] > MIN_ECHO_CORR:
            # The levels do not follow the line (no echo to be seen, a quiet start, or
            # jitter): fall back to the whole window, with the gain as measured plainly.
            self.echo_lag = None
            r = np.array([ref[max(0, i - window):i + 1].max() for i in np.maximum(k, 0)])
            loud = r > QUIET_DBFS
            if loud.sum() >= MIN_LEARN_FRAMES // 2:
                self.echo_gain_db = min(MAX_ECHO_DB, float((mic[loud] - r[loud]).max()))
            return
        lag = best[1]
        j = k - lag
        near = np.array([ref[max(0, i - ALIGN_SLACK):i + ALIGN_SLACK + 1].max()
                         for i in np.clip(j, 0, len(ref) - 1)])
        loud = (j >= 0) & (near > QUIET_DBFS)
        self.echo_lag = lag
        self.echo_gain_db = min(MAX_ECHO_DB, float(np.percentile(mic[loud] - near[loud], 95)))

    def speak(self, samples: np.ndarray, sr: int) -> float:
        """Play a line, listening; returns when it is over (heard out or cut short)."""
        import numpy as np

        from voice_sim.devices import Player
        from voice_sim.listen import level_dbfs
        from voice_sim.vad import SpeechProbability

        self.last = None
        before = self.mic.drain()
        room = [level_dbfs(b.samples) for b in before[-50:]]
        floor = float(np.percentile(room, 10)) if room else -70.0
        self.mic.unread(before, turn=False)
        player = Player(samples, sr, self.device)
        self.last_player = player
        ref = frame_levels(player.data, player.sr)
        frame = max(1, round(player.sr * FRAME_S))
        window = max(1, round(ECHO_WINDOW_S / FRAME_S))
        vad = SpeechProbability()
        blocks: list[Block] = []
        run = 0
        soft: int | None = None  # first block of the latest stretch above the echo alone
        misses = 0
        heard: list[tuple[int, float]] = []  # (line frame handed out, mic level) while learning
        onset: int | None = None  # index in blocks of the barge-in's first block
        onset_at = detected_at = 0.0
        at_s = 0.0
        tail_until: float | None = None
        started = time.perf_counter()
        player.start()
        try:
            while True:
                now = time.perf_counter()
                if player.done.is_set():
                    if onset is not None:
                        break
                    if tail_until is None:
                        tail_until = now + ECHO_TAIL_S
                    elif now >= tail_until:
                        break
                b = self.mic.read(timeout=0.02)
                if b is None:
                    continue
                blocks.append(b)
                lvl = level_dbfs(b.samples)
                vad.push(b.samples)
                if onset is not None:
                    continue  # finishing the sentence: keep the trainee's words
                k = min(len(ref), player.pos // frame)
                if b.at - started < LEARN_S:
                    heard.append((k, lvl))
                    continue
                if heard:
                    self._learn(heard, ref, window)
                    heard = []
                recent = float(ref[max(0, k - window):k + 1].max()) if k else -120.0
                if self.echo_lag is not None:
                    # The frame the echo now arriving came from, give or take the jitter;
                    # never more than ALIGN_GAIN_DB under the whole window's bar.
                    j = k - self.echo_lag
                    near = (float(ref[max(0, j - ALIGN_SLACK):j + ALIGN_SLACK + 1].max())
                            if j + ALIGN_SLACK >= 0 else -120.0)
                    recent = max(near, recent - ALIGN_GAIN_DB)
                echo = recent + self.echo_gain_db
                bar = max(floor + MARGIN_DB, echo + DOUBLE_TALK_DB)
                # Where the trainee may have begun: the microphone above the echo alone.
                if lvl > max(floor + MARGIN_DB, echo):
                    soft = len(blocks) - 1 if soft is None else soft
                    misses = 0
                elif soft is not None:
                    misses += 1
                    if misses > SOFT_GAP_BLOCKS:
                        soft, misses = None, 0
                run = run + 1 if vad.p >= VOICE_P and lvl > bar else 0
                if run >= CONFIRM_BLOCKS:
                    onset = len(blocks) - run
                    if tail_until is not None:
                        break  # the line was over: an answer, not an interruption
                    onset_at = blocks[onset].at - FRAME_S
                    detected_at = time.perf_counter()
                    at_s = max(0.0, onset_at - started)
                    if self.when_interrupted == "stop":
                        player.stop()
                        break
                    gap = next_gap(ref, k)
                    player.stop_at(len(player.data) if gap is None else gap * frame)
        finally:
            if onset is None and not player.done.is_set():
                player.stop()  # an exception (Ctrl-C): never leave the line playing
            player.close()
        if onset is None:
            self.mic.unread(blocks, turn=False)
            return started
        # Hand over from before the trainee may have begun: words said over a loud line
        # are heard only late, and belong to the answer (with some of the line's echo,
        # which the transcript may then hold too).
        begun = max(0, onset - round(CARRY_S / FRAME_S))
        if soft is not None:
            begun = max(min(begun, soft), onset - 2 * round(CARRY_S / FRAME_S))
        first = max(0, begun - round(PREROLL_S / FRAME_S))
        if tail_until is not None:
            # The trainee began just after the line: the answer's start, handed over.
            self.mic.unread(blocks[:first], turn=False)
            self.mic.unread(blocks[first:], turn=True)
            return started
        stopped = player.stopped_at if self.when_interrupted == "stop" else time.perf_counter()
        self.mic.unread(blocks[:first], turn=False)
        self.mic.unread(blocks[first:], turn=True)
        self.last = Interruption(
            at_s=at_s, overlap_s=max(0.0, (stopped or detected_at) - onset_at),
            detect_s=detected_at - onset_at,
            finished_sentence=self.when_interrupted == "finish_sentence",
            line_s=len(player.data) / player.sr)
        return started
