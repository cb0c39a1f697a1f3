"""Barge-in: the trainee talks over the persona, and the persona stops.

:class:`ListeningSpeaker` is the live call's :class:`~voice_sim.session.Speaker`: it plays
a line on a :class:`~voice_sim.devices.Player` (a callback stream that can be cut short)
or in the browser's page (voice_sim.serve_call.WebPlayer) while it reads the microphone.
The persona's own voice coming back through the microphone is speech too, so the voice
model alone cannot tell it from the trainee's; but the line is known sample by sample,
so its echo is cancelled first (:class:`EchoCanceller`: the delay from a
cross-correlation of the line's first :data:`LEARN_S`, to a fraction of a sample, a
short filter started from it (or fitted by least squares, when that cancels the rest of
the start clearly better: a browser's resamplers) and adapted by block NLMS, frozen in
double talk, each 5 ms re-aligned within :data:`REALIGN_S` because buffering moves the
delay, and the whole window searched again when the echo stops cancelling: a speaker
buffer that ran dry delays the rest of the line for good). Then the trainee is talking
over the line when a block's residual is

* speech to the Silero model (voice_sim.vad, fed the residual), and
* louder than the room (the noise floor + :data:`MARGIN_DB`), and
* louder, by :data:`RESIDUAL_DT_DB`, than the echo the canceller leaves (the echo
  estimate less the cancellation measured on single talk), with the microphone itself
  not under the echo estimate (a dropped block is not a voice), nor the residual over
  the microphone (an estimate at the wrong delay added to it), and
* not the line's echo at another delay in the window (checked on the last
  :data:`CONFIRM_S` before a barge-in is declared).

When no echo is found (a headset, or a line whose start is too quiet to measure in
:data:`MAX_LEARN_S`) the older level rule judges the raw microphone: louder, by
:data:`DOUBLE_TALK_DB`, than the echo of the line could be, from the lag and gain of the
line's 20 ms levels at its start.

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

A reply that cut the trainee off is another matter (:attr:`ListeningSpeaker.replying`:
the session says the line answers the trainee). A trainee who goes on within
:data:`YIELD_S` of the reply's start had not finished: the persona gives way at once
(whatever ``when_interrupted`` says), :attr:`ListeningSpeaker.gave_way` records it
(:class:`Yield`, not an :class:`Interruption`) and every block since the answer was
captured goes back to the microphone as the turn's start, so the session continues the
same answer. Speech already under way when the reply is due stops it before it sounds;
a reply's echo path is sought from :data:`REPLY_LEARN_S`, and until it is found the
level rule judges, with the echo gain and lag the previous line measured (kept, too,
when the reply's own measurement heard more: the trainee talking over it).

Blocks handed to the answer carry the echo-cancelled signal beside the raw one
(:attr:`voice_sim.listen.Block.clean`): the answer's recording keeps what the microphone
heard, the transcript and the delivery analysis get the trainee without the line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from voice_sim.audio import FRAME_S, SAMPLE_RATE

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
REPLY_LEARN_S = 0.25
"""Seconds into a reply at which its echo path is first sought: found, the canceller
judges the trainee going on from then, in place of the level rule."""
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
CONFIRM_S = 0.1
"""Seconds of the microphone, up to a barge-in, that the line at any delay in the window
must not explain (else the delay moved and it was the echo)."""
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
SR = SAMPLE_RATE
TAPS = 64
"""Taps (4 ms at 16 kHz) of the echo path's filter around its delay."""
MAX_LEAD_S = 0.05
"""Seconds the microphone's count may run ahead of the line's (a block in flight)."""
MIN_ERLE_DB = 6.0
"""dB the residual must be under the microphone for the echo to count as cancelled
(learning succeeds, the filter adapts); less is double talk or a moved delay."""
MU = 0.3
"""Block NLMS step size."""
REALIGN_S = 0.04
"""Seconds either side of the delay searched again when the echo stops cancelling."""
REALIGN_CORR = 0.7
"""Normalised correlation of a block with the line that moves the delay (the trainee
talking over it keeps the correlation lower, so double talk never moves it)."""
REALIGN_GAIN = 0.05
"""Correlation a new delay must explain more than the current one to replace it."""
LS_RIDGE = 1e-4
"""Ridge (a share of the mean tap energy) in the least-squares fit of the filter."""
FRACTIONS = 11
"""Fractional delays tried for the echo path, -0.5 to 0.5 sample."""
LS_FIT_SHARE = 0.6
"""Share of the line's start the least-squares filter is fitted on (the rest tests it)."""
LS_GAIN_DB = 3.0
"""dB by which the fitted filter must cancel the rest of the start better than the
adapted pure delay to replace it."""
MIN_MOVE = 4
"""Samples the best pure delay of a piece must lie from the filter's for the delay to be
moved (less is the filter's to follow)."""
MOVE_GAIN_DB = 3.0
"""dB by which the filter at a new delay must cancel a piece better than at the current
one for the delay to move there."""
SUB_S = 0.005
"""Seconds of microphone aligned to the line at a time."""
ECHO_QUIET_DBFS = -65.0
"""dBFS: an echo estimate under this is no echo (the filter rests)."""
RESIDUAL_DT_DB = 10.0
"""dB above the residual echo expected (the echo estimate minus what the canceller
takes away) for a residual block to be the trainee."""
MAX_ERLE_DB = 40.0
"""dB the canceller is believed to take away at most (a sample-exact echo cancels to
nothing, but a real one, or a jittered one, does not)."""
ECHO_DROP_DB = 1.0
"""dB the microphone may be under the echo estimate with the trainee talking."""
MIN_VOICE_DBFS = -55.0
"""dBFS: a residual under this is never the trainee (a digitally silent line and room
would otherwise put the bar at the quantisation noise)."""
GLITCH_DB = 10.0
"""dB under the echo estimate at which the microphone has lost audio (a device's
buffer ran dry): the delay moves next, and the residual is echo for a moment."""
GLITCH_HOLD_BLOCKS = 8
"""Blocks after such a glitch in which no barge-in is judged."""
RELOCATE_S = 0.15
"""Seconds of the latest microphone searched for the delay over the whole window when
the echo stops cancelling: a device's buffer that ran dry delays the rest of the line
for good, and soon by more than REALIGN_S."""
LOST_BLOCKS = 3
"""Blocks in a row with an echo estimate not cancelled (or audio lost) after which the
delay is searched over the whole window (again every as many blocks while it lasts)."""
RELOCATE_GAIN = 0.2
"""Normalised correlation by which a delay elsewhere in the window must explain the
microphone better than the current one to replace it (it must also cancel it by
MIN_ERLE_DB: the trainee talking over the line cannot be cancelled, and a line's voice
may well resemble the trainee's for a moment, with a TTS voice much alike)."""
RELEARN_S = 0.25
"""Seconds between attempts to find the echo path when the line's start was too quiet."""
MAX_LEARN_S = 2.0
"""Seconds of the line's start the echo path is searched in at most."""
YIELD_S = 1.0
"""Seconds from the start of a reply within which the trainee going on means the reply
cut them off (the persona gives way and the answer goes on); later it is a barge-in."""
ROOM_BLOCKS = 25
"""Blocks (20 ms) heard before a line from which its noise floor is measured afresh."""
LOOK_BACK_S = 0.2
"""Seconds before a reply in which speech means the trainee has already gone on."""


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


@dataclass(frozen=True)
class Yield:
    """The persona's reply cut the trainee off, and gave way when they went on."""

    resumed_s: float
    """Seconds from the reply's start to the trainee going on (negative: before it)."""
    played_s: float
    """Seconds of the reply handed to the device before it stopped (0: none)."""
    detect_s: float
    """Seconds from the trainee going on to the reply being stopped."""
    line_s: float
    """Seconds the whole reply would have lasted."""
    resumed_at: float = 0.0
    """``perf_counter()`` when the trainee went on."""
    line: str = ""
    """The reply that gave way (its line id; set by the session)."""
    pause_s: float | None = None
    """Seconds the trainee paused before going on (set by the session)."""

    def to_json(self) -> dict[str, Any]:
        """One entry of the turn's ``yielded`` list in ``session.json``."""
        return {"line": self.line, "resumed_s": round(self.resumed_s, 3),
                "played_s": round(self.played_s, 3), "detect_s": round(self.detect_s, 3),
                "line_s": round(self.line_s, 3),
                "pause_s": None if self.pause_s is None else round(self.pause_s, 3)}


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


class EchoCanceller:
    """Cancels the line's echo from the microphone: the line is known sample by sample,
    so the microphone is the trainee plus the line through an echo path (a delay and a
    short filter). The delay is found by cross-correlating the first :data:`LEARN_S` of
    the microphone with the line (the microphone's samples counted from the first block
    read after the line starts); a :data:`TAPS`-tap filter around it is solved by (ridge)
    least squares on the same stretch and then adapted by block NLMS (normalised least mean
    squares, one step per 20 ms block), frozen in double talk (the residual is not well
    under the microphone: someone else is talking, or the path moved). When the residual
    stays near the microphone while the line is loud the delay is searched again within
    :data:`REALIGN_S` (a device's buffering jitters). :meth:`cancel` gives the residual."""

    def __init__(self, ref: np.ndarray, max_lag_s: float = ECHO_WINDOW_S) -> None:
        import numpy as np

        self.max_lag = round(max_lag_s * SR)
        self.pad = self.max_lag + TAPS
        self.ref = np.concatenate([np.zeros(self.pad, np.float32), ref.astype(np.float32),
                                   np.zeros(round(MAX_LEAD_S * SR) + TAPS + 2 * SR,
                                            np.float32)])
        self.lag: int | None = None
        self.base = 0
        """The delay found at the line's start; realignment stays within REALIGN_S."""
        """Samples from a line sample (handed out) to its echo in the microphone."""
        self.w = np.zeros(TAPS)
        self.ratio_db = 0.0
        """dB of the residual under the echo estimate on single-talk blocks (ERLE)."""
        self.misses = 0
        """Blocks in a row whose echo estimate was not cancelled (or whose audio was lost)."""
        self.moved = False
        """The latest :meth:`cancel` found the delay elsewhere in the window (its earlier
        residuals were the echo itself)."""
        self.moves = 0
        """Times the delay was found elsewhere in the window during the line."""
        self._recent: list[tuple[int, np.ndarray]] = []
        """The latest RELOCATE_S of the microphone: (first sample's index, samples)."""
        self._learning = False

    def _rows(self, m0: int, n: int, lag: int) -> np.ndarray:
        """The filter's input for microphone samples m0..m0+n at ``lag``: row i holds the
        line's samples m0+i-lag-TAPS/2 .. +TAPS/2 (newest last)."""
        from numpy.lib.stride_tricks import sliding_window_view

        a = m0 - lag + self.pad - TAPS // 2
        seg = self.ref[max(0, a):max(0, a + n + TAPS - 1)]
        if len(seg) < n + TAPS - 1:
            import numpy as np

            seg = np.concatenate([seg, np.zeros(n + TAPS - 1 - len(seg), np.float32)])
        return sliding_window_view(seg, TAPS)

    def learn(self, mic: np.ndarray) -> bool:
        """Find the delay and the filter from the microphone's start (``mic``, samples
        from index 0); False when the line's echo is not to be seen in it."""
        import numpy as np

        n = len(mic)
        lead = round(MAX_LEAD_S * SR)
        ref = self.ref[self.pad:self.pad + n + lead]
        if np.sqrt(np.mean(ref * ref)) < 10 ** (QUIET_DBFS / 20) or not mic.any():
            return False
        size = 1 << int(np.ceil(np.log2(n + len(ref))))
        c = np.fft.irfft(np.fft.rfft(mic, size) * np.conj(np.fft.rfft(ref, size)), size)
        # c[k]: mic[m + k] against the line's sample m, so the delay is k.
        lags = np.arange(-lead, self.max_lag + 1)
        vals = np.abs(c[lags % size])
        lag = int(lags[int(np.argmax(vals))])
        # No echo to be seen (a headset, the room alone): said before any filter is
        # fitted, which costs tens of milliseconds a try, every RELEARN_S of the line.
        seen = self.ref[self.pad:self.pad + max(0, n - lag)]
        rho = float(np.max(vals)) / max(np.sqrt(float(mic @ mic) * float(seen @ seen)), 1e-12)
        if rho < MIN_ECHO_CORR:
            self.lag = None
            return False
        self.base = self.lag = lag
        block = round(FRAME_S * SR)
        m = n // block * block
        # A delay (to a fraction of a sample: a 48 kHz device or browser context heard
        # at 16 kHz is a third or two off, and a whole-sample delay then leaves a
        # fricative's energy above 4 kHz all but uncancelled, the trainee to the bar)
        # at the gain that fits best, adapted by NLMS over the start twice (the second
        # pass says how well it works): right for a device's path, a delay that may
        # jump while the line starts.
        self.w = self._delay(mic[:m], lag)
        out = self._passes(mic[:m], lag)
        # A browser's path is no pure delay (its resamplers and a fractional delay take
        # every tap: NLMS from a pure delay left 5-10 dB of echo in one block in seven
        # for seconds). A filter fitted by least squares on the first part of the start
        # replaces it when it cancels the rest clearly better (a fit over a delay that
        # jumped would not).
        cut = round(LS_FIT_SHARE * (m // block)) * block
        if cut >= MIN_LEARN_FRAMES // 2 * block and m - cut >= 3 * block:
            w = self._fit(mic[:cut], lag)
            rows = np.concatenate([self._rows(i, block, lag) for i in range(cut, m, block)])
            held = mic[cut:m] - rows @ w
            kept = np.concatenate(out)[cut:m]
            if float(held @ held) * 10 ** (LS_GAIN_DB / 10) < float(kept @ kept):
                self.w, self.ratio_db = self._fit(mic[:m], lag), 0.0
                out = self._passes(mic[:m], lag)
        e = np.concatenate(out)
        got = mic[:len(e)]
        gain = 10 * np.log10(max(float(np.mean(e * e)), 1e-12)
                             / max(float(np.mean(got * got)), 1e-12))
        if gain > -MIN_ERLE_DB:
            self.lag = None
            return False  # the microphone does not follow the line: no echo to cancel
        return True

    def _delay(self, mic: np.ndarray, lag: int) -> np.ndarray:
        """The filter of a pure delay ``lag`` plus the fraction of a sample (in
        FRACTIONS steps; a windowed sinc) and the gain that explain ``mic`` (samples
        from index 0) best."""
        import numpy as np

        block = round(FRAME_S * SR)
        x = np.concatenate([self._rows(i, block, lag) for i in range(0, len(mic), block)]
                           ).astype(np.float64)
        d = mic[:len(x)].astype(np.float64)
        k = np.arange(TAPS) - TAPS // 2
        best: tuple[float, np.ndarray] | None = None
        for f in np.linspace(-0.5, 0.5, FRACTIONS):
            h = np.sinc(k + f) * np.hanning(TAPS + 2)[1:-1]
            y = x @ h
            g = float(y @ d) / max(float(y @ y), 1e-12)
            e = d - g * y
            if best is None or float(e @ e) < best[0]:
                best = (float(e @ e), g * h)
        assert best is not None
        return best[1]

    def _passes(self, mic: np.ndarray, lag: int) -> list[np.ndarray]:
        """Run the canceller over the start twice from ``lag`` (adapting the filter and
        the residual's level); the second pass's residuals."""
        block = round(FRAME_S * SR)
        self._learning = True
        for _ in range(2):
            self.lag = lag
            out = [self.cancel(mic[i:i + block], i)[0] for i in range(0, len(mic), block)]
        self._learning = False
        return out

    def _fit(self, mic: np.ndarray, lag: int) -> np.ndarray:
        """The filter at ``lag`` that explains ``mic`` (samples from index 0) best, by
        ridge least squares."""
        import numpy as np

        block = round(FRAME_S * SR)
        x = np.concatenate([self._rows(i, block, lag) for i in range(0, len(mic), block)]
                           ).astype(np.float64)
        a = x.T @ x
        a[np.diag_indices(TAPS)] += LS_RIDGE * max(float(np.trace(a)) / TAPS, 1e-12)
        w: np.ndarray = np.linalg.solve(a, x.T @ mic.astype(np.float64))
        return w

    def cancel(self, d: np.ndarray, m0: int, *, adapt: bool = True) -> tuple[np.ndarray, float]:
        """The residual of microphone samples ``d`` (at index ``m0``) and the echo
        estimate's level (dBFS). Each :data:`SUB_S` piece is aligned on its own: a
        device's buffering moves the delay by whole chunks, even inside a block."""
        import numpy as np

        assert self.lag is not None
        track = adapt and not self._learning
        if track:
            self._recent.append((m0, d))
            while sum(len(x) for _, x in self._recent[1:]) >= RELOCATE_S * SR:
                self._recent.pop(0)
        rows, y = self._estimate(d, m0)
        e = d - y
        ed, ey, ee = (float(np.mean(v * v)) + 1e-12 for v in (d, y, e))
        y_db = 10 * np.log10(ey)
        # The echo estimate not cancelled, or the microphone far under it (audio lost:
        # the line comes later from now on): the delay may have moved out of reach.
        # A loud microphone left as it was under a quiet estimate is the trainee, or
        # the line's echo from elsewhere in the window: the search tells.
        lost = ((y_db > ECHO_QUIET_DBFS or ed > 10 ** (MIN_VOICE_DBFS / 10))
                and (ee > ed * 10 ** (-MIN_ERLE_DB / 10) or ed < ey * 10 ** (-GLITCH_DB / 10)))
        self.misses = self.misses + 1 if lost and track else 0
        self.moved = False
        if self.misses and self.misses % LOST_BLOCKS == 0 and self.relocate():
            self.moved, self.misses = True, 0
            self.moves += 1
            rows, y = self._estimate(d, m0)
            e = d - y
            ey, ee = (float(np.mean(v * v)) + 1e-12 for v in (y, e))
            y_db = 10 * np.log10(ey)
            adapt = False  # this block straddles the move
        # Double-talk guard: adapt only when the residual is well under the microphone
        # (the echo is what is there), so the trainee's voice never trains the filter.
        if adapt and y_db > ECHO_QUIET_DBFS and ee < ed * 10 ** (-MIN_ERLE_DB / 10):
            x = np.concatenate(rows)
            self.w += MU * (x.T @ e) / (float(np.sum(x * x)) + 1e-6)
            # The residual left on single talk: rises quickly, falls slowly (the bar
            # for the trainee is this far under the echo estimate, plus a margin).
            r = 10 * np.log10(ee / ey)
            k = 0.3 if r > self.ratio_db else 0.02
            self.ratio_db += k * (r - self.ratio_db)
        return e, y_db

    def _estimate(self, d: np.ndarray, m0: int) -> tuple[list[np.ndarray], np.ndarray]:
        """The filter's input rows and the echo estimate for microphone samples ``d``
        (at index ``m0``), each SUB_S piece realigned first."""
        import numpy as np

        assert self.lag is not None
        sub = max(1, round(SUB_S * SR))
        rows, ys = [], []
        for i in range(0, len(d), sub):
            piece = d[i:i + sub]
            self._realign(piece, m0 + i)
            x = self._rows(m0 + i, len(piece), self.lag)
            rows.append(x)
            ys.append(x @ self.w)
        return rows, np.concatenate(ys)

    def relocate(self, seconds: float = RELOCATE_S) -> bool:
        """Search the whole window for the delay on the latest ``seconds`` of the
        microphone; True when the line's echo is clearly elsewhere (the delay and the
        realignment's centre move there): the residual of those samples was the echo."""
        import numpy as np

        assert self.lag is not None
        if not self._recent:
            return False
        seg = np.concatenate([x for _, x in self._recent]).astype(np.float64)
        m_a = self._recent[0][0] + max(0, len(seg) - round(seconds * SR))
        seg = seg[len(seg) - min(len(seg), round(seconds * SR)):]
        n = len(seg)
        lead = round(MAX_LEAD_S * SR)
        dd = float(seg @ seg)
        if n < seconds * SR // 2 or dd <= 0:
            return False
        # r[i]: the line's sample m_a - max_lag + i; the delay L puts the microphone's
        # sample m_a + j against r[j + max_lag - L].
        lo = m_a - self.max_lag + self.pad
        r = self.ref[lo:lo + n + self.max_lag + lead].astype(np.float64)
        if lo < 0 or len(r) < n + self.max_lag + lead:
            return False
        size = 1 << int(np.ceil(np.log2(len(r) + n)))
        c = np.fft.irfft(np.fft.rfft(r, size) * np.conj(np.fft.rfft(seg, size)), size)
        k = len(r) - n + 1
        cs = np.concatenate([[0.0], np.cumsum(r * r)])
        rho = np.abs(c[:k]) / np.sqrt(np.maximum(cs[n:n + k] - cs[:k], 1e-12) * dd)
        i = int(np.argmax(rho))
        lag = self.max_lag - i
        eff = self.lag + TAPS // 2 - int(np.argmax(np.abs(self.w)))  # as in _realign
        now = self.max_lag - eff
        here = float(rho[now]) if 0 <= now < k else 0.0
        # rho squared is the share of the microphone a delay explains (at the best gain).
        if (rho[i] ** 2 >= 1 - 10 ** (-MIN_ERLE_DB / 10) and rho[i] >= here + RELOCATE_GAIN
                and abs(lag - eff) > TAPS // 4
                and self._explains(seg, m_a, self.lag + lag - eff)):
            self.base = self.lag = self.lag + lag - eff
            return True
        return False

    def _realign(self, d: np.ndarray, m0: int) -> None:
        """Move the delay within REALIGN_S to where the line best explains ``d``, when
        it explains it clearly (normalised correlation REALIGN_CORR) and better."""
        import numpy as np

        assert self.lag is not None
        j = round(REALIGN_S * SR)
        a = m0 - self.base - j + self.pad
        seg = self.ref[max(0, a):a + len(d) + 2 * j]
        dd = float(d @ d)
        if a < 0 or len(seg) < len(d) + 2 * j or dd < len(d) * 10 ** (ECHO_QUIET_DBFS / 10):
            return
        c = np.correlate(seg, d, mode="valid")  # c[i]: d against seg[i:i+len(d)]
        cs = np.concatenate([[0.0], np.cumsum(seg.astype(np.float64) ** 2)])
        win = cs[len(d):] - cs[:-len(d)]
        rho = np.abs(c) / (np.sqrt(np.maximum(win, 1e-12) * dd))
        i = int(np.argmax(rho))
        # The delay the filter puts the echo at now (its largest tap, off the centre
        # when the path is no pure delay), against the pure delay this piece fits best:
        # a move of a few samples is the filter's to follow (a fractional delay makes
        # the best pure delay flicker by one), a buffer's jump is more.
        eff = self.lag + TAPS // 2 - int(np.argmax(np.abs(self.w)))
        lag = self.base + j - i
        now = self.base + j - eff
        if (rho[i] >= REALIGN_CORR and (not 0 <= now < len(rho) or rho[i] > rho[now] + REALIGN_GAIN)
                and abs(lag - eff) > MIN_MOVE
                and -round(MAX_LEAD_S * SR) <= self.lag + lag - eff <= self.max_lag
                and self._explains(d, m0, self.lag + lag - eff)):
            self.lag += lag - eff

    def _explains(self, d: np.ndarray, m0: int, lag: int) -> bool:
        """The filter at ``lag`` takes clearly more of microphone samples ``d`` (at index
        ``m0``) away than at the current delay. A voiced stretch of the line resembles
        itself a pitch period later, so a short piece's best pure delay may be one
        period off; the filter, shaped on the path, tells the two apart."""
        assert self.lag is not None
        e_now = d - self._rows(m0, len(d), self.lag) @ self.w
        e_new = d - self._rows(m0, len(d), lag) @ self.w
        return float(e_new @ e_new) * 10 ** (MOVE_GAIN_DB / 10) < float(e_now @ e_now)


class ListeningSpeaker:
    """Plays the persona's lines on a device (or in the browser's page) while listening
    for the trainee on ``mic``."""

    def __init__(self, mic: Microphone, device: str | int | None = None, *,
                 when_interrupted: str = "stop",
                 player: Callable[[np.ndarray, int], Any] | None = None) -> None:
        from voice_sim import devices
        from voice_sim.errors import InputError

        if when_interrupted not in WHEN_INTERRUPTED:
            raise InputError(f"when_interrupted={when_interrupted!r}: not a choice",
                             hint=f"one of {', '.join(WHEN_INTERRUPTED)}")
        self.mic = mic
        self.player = player
        """Makes each line's player from its samples and rate (None: a
        :class:`voice_sim.devices.Player` on ``device``; the browser's page plays them:
        voice_sim.serve_call.PageAudio.player)."""
        self.device = devices.resolve_device(device, "output") if player is None else None
        self.when_interrupted = when_interrupted
        self.echo_gain_db = NO_ECHO_DB
        """The echo path's gain, from the latest line's measurement."""
        self.last: Interruption | None = None
        """The interruption of the latest line (None: it was heard out)."""
        self.last_player: Any = None
        self.echo_lag: int | None = None
        """Frames (20 ms) between a frame being handed to the device and its echo in the
        microphone, measured like the gain (None: not measured; the whole window counts)."""
        self.aec_ms: list[float] = []
        """Milliseconds the echo canceller took per 20 ms block of the latest line."""
        self.aec: EchoCanceller | None = None
        """The latest line's echo canceller (its delay is None: no echo was found)."""
        self.on_sound: Callable[[], None] | None = None
        """Called once per line as its first audio goes to the device (the session
        starts the answer's final transcript then: voice_sim.session.Answer.final_go)."""
        self.replying = False
        """The next line answers the trainee (the session sets it): going on within
        :data:`YIELD_S` of its start makes it give way (:attr:`gave_way`)."""
        self.gave_way: Yield | None = None
        """The latest line gave way to the trainee going on (None: it did not)."""
        self._room_db = -70.0
        """dBFS: the room's noise floor as the latest wait of ROOM_BLOCKS or more before a
        line that is not a reply heard it."""
        self.trace: list[tuple[Any, ...]] | None = None
        """When a list, each block of the latest line's judgement is appended to it
        (bench_latency.py --trace): (seconds into the line, rule, microphone dBFS, judged
        dBFS, bar dBFS, echo alone dBFS, speech probability, run, canceller's delay)."""
        self._heard_until = 0.0
        """``perf_counter()`` stamp of the last block the latest line listened to: blocks
        up to it hold that line's echo, never the trainee going on."""
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

    def _echo_frames(self, ref: np.ndarray, k: int, window: int) -> float:
        """dBFS of the loudest line frame whose echo may be arriving as frame ``k`` is
        handed out: the window's, or with the echo's lag measured, the frame it came
        from give or take the jitter (never more than ALIGN_GAIN_DB under the window's)."""
        recent = float(ref[max(0, k - window):k + 1].max()) if k else -120.0
        if self.echo_lag is None:
            return recent
        j = k - self.echo_lag
        near = (float(ref[max(0, j - ALIGN_SLACK):j + ALIGN_SLACK + 1].max())
                if j + ALIGN_SLACK >= 0 else -120.0)
        return max(near, recent - ALIGN_GAIN_DB)

    def _look_back(self, before: list[Block], floor: float, vad: Any
                   ) -> tuple[int | None, int]:
        """Speech in the audio heard since the answer was captured, before a reply: the
        first block of :data:`CONFIRM_BLOCKS` in a row (None: none; the trainee went on),
        and how many blocks of speech end it. ``vad`` hears the end of it too."""
        from voice_sim.listen import level_dbfs

        levels = [level_dbfs(b.samples) for b in before]
        loud = [lvl > floor + MARGIN_DB for lvl in levels]
        # The voice model only where it may matter: from just before the first loud block,
        # and the last LOOK_BACK_S whatever (so it has heard what precedes the reply).
        tail = len(before) - max(1, round(LOOK_BACK_S / FRAME_S))
        first = next((i for i, x in enumerate(loud) if x), len(before))
        run = 0
        for i in range(max(0, min(first - CONFIRM_BLOCKS, tail)), len(before)):
            vad.push(before[i].samples)
            run = run + 1 if vad.p >= VOICE_P and loud[i] else 0
            if run >= CONFIRM_BLOCKS:
                return i - run + 1, run
        return None, run

    def speak(self, samples: np.ndarray, sr: int) -> float:
        """Play a line, listening; returns when it is over (heard out or cut short)."""
        import numpy as np

        from voice_sim.devices import Player
        from voice_sim.listen import level_dbfs
        from voice_sim.vad import SpeechProbability

        self.last = self.gave_way = None
        if self.trace is not None:
            self.trace.clear()
        replying, self.replying = self.replying, False
        before = self.mic.drain()
        # Blocks given back as a turn's start that the answer did not read (it ended
        # before them) came after it too: what the trainee said since.
        while (b := self.mic.read(0)) is not None:
            before.append(b)
        room = [level_dbfs(b.samples) for b in before[-50:]]
        floor = float(np.percentile(room, 10)) if room else -70.0
        if len(room) >= ROOM_BLOCKS and not replying:
            self._room_db = floor
        else:
            # A few blocks, or a reply's wait, may all be the trainee going on (read as the
            # room, a second of voice raised the floor by some 30 dB, for this line and the
            # lines after, and timed the going on from the loudest words): the room is what
            # the last longer wait before a line heard, unless this is quieter.
            floor = min(floor, self._room_db)
        vad = SpeechProbability()
        since = [b for b in before if b.at > self._heard_until]
        went_on, run = self._look_back(since, floor, vad) if replying else (None, 0)
        if went_on is not None:
            # The trainee went on while the reply was being chosen: it never sounds.
            now = time.perf_counter()
            onset_at = since[went_on].at - FRAME_S
            self.gave_way = Yield(resumed_s=onset_at - now, played_s=0.0,
                                  detect_s=now - onset_at, line_s=len(samples) / sr,
                                  resumed_at=onset_at)
            self.mic.unread(before, turn=True)
            self._heard_until = now  # handed on: not to be heard as going on again
            return now
        player = (Player(samples, sr, self.device) if self.player is None
                  else self.player(samples, sr))
        self.last_player = player
        ref = frame_levels(player.data, player.sr)
        frame = max(1, round(player.sr * FRAME_S))
        window = max(1, round(ECHO_WINDOW_S / FRAME_S))
        ref16 = player.data
        if player.sr != SR:
            from voice_sim.audio import resample

            ref16 = resample(player.data, player.sr, SR)
        aec = self.aec = EchoCanceller(ref16)
        aec_on = False
        hold = 0  # blocks in which no barge-in is judged (the echo path just glitched)
        got: list[np.ndarray] = []  # the microphone's samples while the path is learned
        m0 = 0  # the microphone's samples read since the line started
        # A reply's trainee may be going on from its first word: its echo path is sought
        # sooner, for the canceller to judge them as soon as it can.
        next_learn = REPLY_LEARN_S if replying else LEARN_S
        last_rule = "early"  # a reply: the look-back's run goes on into the early rule
        self.aec_ms = []
        blocks: list[Block] = []
        clean: list[np.ndarray | None] = []  # each block's residual (None: not cancelled)
        at_m: list[int] = []  # each block's first sample, counted as m0
        soft: int | None = None  # first block of the latest stretch above the echo alone
        misses = 0
        heard: list[tuple[int, float]] = []  # (line frame handed out, mic level) while learning
        onset: int | None = None  # index in blocks of the barge-in's first block
        onset_at = detected_at = 0.0
        at_s = 0.0
        gives_way = False
        tail_until: float | None = None
        started = time.perf_counter()
        player.start()
        sounded = self.on_sound is None
        try:
            while True:
                now = time.perf_counter()
                if not sounded and (player.pos or player.done.is_set()):
                    sounded = True
                    self.on_sound()  # type: ignore[misc]
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
                at_m.append(m0)
                t0 = time.perf_counter()
                if not aec_on and m0 < MAX_LEARN_S * SR:
                    got.append(b.samples)
                    if (m0 + len(b.samples)) >= next_learn * SR:
                        next_learn += RELEARN_S
                        aec_on = aec.learn(np.concatenate(got))
                        if aec_on:
                            got = []
                            vad.reset()  # it heard the echo so far, not the residual
                    m0 += len(b.samples)
                    res, echo_db = b.samples, -120.0
                    clean.append(None)
                elif aec_on:
                    res, echo_db = aec.cancel(b.samples, m0, adapt=onset is None)
                    if aec.moved:
                        run = 0  # the residuals before were the echo itself
                    m0 += len(b.samples)
                    self.aec_ms.append(1000 * (time.perf_counter() - t0))
                    clean.append(res)
                else:
                    res, echo_db = b.samples, -120.0
                    m0 += len(b.samples)
                    clean.append(None)
                lvl = level_dbfs(b.samples)
                vad.push(res)
                if onset is not None:
                    continue  # finishing the sentence: keep the trainee's words
                # The line's frame handed out as this block was heard, by the
                # microphone's own count of samples since the line started: not by the
                # player's position now, which runs ahead of a block read late (a busy
                # CPU), and would set the echo's frames apart by as much.
                k = min(len(ref), player.pos // frame, round(m0 / SR / FRAME_S))
                learning = b.at - started < LEARN_S
                if learning:
                    heard.append((k, lvl))
                rule = ("early" if learning and not (replying and aec_on)
                        else "aec" if aec_on else "level")
                if rule != last_rule:
                    run = 0  # one rule's count does not carry into another's
                last_rule = rule
                if rule == "early":
                    if not replying:
                        continue
                    # A reply: the trainee going on now was cut off. The echo path is
                    # not measured yet: the level rule, at the previous line's gain
                    # and lag.
                    recent = self._echo_frames(ref, k, window)
                    bar = max(floor + MARGIN_DB, recent + self.echo_gain_db + DOUBLE_TALK_DB)
                    run = run + 1 if vad.p >= VOICE_P and lvl > bar else 0
                    alone = recent + self.echo_gain_db
                else:
                    if heard and not learning:
                        path = self.echo_gain_db, self.echo_lag
                        self._learn(heard, ref, window)
                        heard = []
                        if replying and not aec_on and NO_ECHO_DB < path[0] < self.echo_gain_db:
                            # A reply whose echo path the canceller could not find, heard
                            # louder than the previous line's: the trainee going on from
                            # its start talked over the measurement (their voice is no
                            # echo). The path is the previous line's.
                            self.echo_gain_db, self.echo_lag = path
                    if aec_on:
                        # Judged on the residual: what is left once the line's echo is
                        # taken away, against the residual echo the canceller leaves.
                        lvl = level_dbfs(res)
                        left = echo_db + min(0.0, max(-MAX_ERLE_DB, aec.ratio_db))
                        alone = left
                        bar = max(floor + MARGIN_DB, left + RESIDUAL_DT_DB, MIN_VOICE_DBFS)
                        # A trainee adds to the echo: a microphone under the echo
                        # estimate is the echo path dropping or moving, not someone talking.
                        raw = level_dbfs(b.samples)
                        if raw < echo_db - GLITCH_DB:
                            hold = GLITCH_HOLD_BLOCKS  # the path dropped audio: it jumps next
                        added = raw > echo_db - ECHO_DROP_DB
                        # A residual over the microphone is an estimate at the wrong
                        # delay added to it (the trainee's voice only ever remains).
                        added = added and lvl <= raw + ECHO_DROP_DB
                        run = (run + 1 if vad.p >= VOICE_P and lvl > bar and added and not hold
                               else 0)
                        hold = max(0, hold - 1)
                    else:
                        recent = self._echo_frames(ref, k, window)
                        echo = recent + self.echo_gain_db
                        bar = max(floor + MARGIN_DB, echo + DOUBLE_TALK_DB)
                        alone = echo
                        run = run + 1 if vad.p >= VOICE_P and lvl > bar else 0
                if self.trace is not None:
                    self.trace.append((b.at - started, rule, level_dbfs(b.samples), lvl, bar,
                                       alone, vad.p, run, aec.lag if aec_on else None))
                # Where the trainee may have begun: the microphone above the echo alone.
                if lvl > max(floor + MARGIN_DB, alone):
                    soft = len(blocks) - 1 if soft is None else soft
                    misses = 0
                elif soft is not None:
                    misses += 1
                    if misses > SOFT_GAP_BLOCKS:
                        soft, misses = None, 0
                if run >= CONFIRM_BLOCKS and aec_on and aec.relocate(CONFIRM_S):
                    run = 0  # the line's echo from elsewhere in the window: it moved
                if run >= CONFIRM_BLOCKS:
                    onset = max(0, len(blocks) - run)
                    if tail_until is not None:
                        break  # the line was over: an answer, not an interruption
                    # (A run begun before the reply began at the end of ``before``.)
                    first_at = (blocks[onset] if run <= len(blocks)
                                else since[len(blocks) - run]).at
                    onset_at = first_at - FRAME_S
                    detected_at = time.perf_counter()
                    at_s = onset_at - started
                    gives_way = replying and at_s <= YIELD_S
                    if self.when_interrupted == "stop" or gives_way:
                        player.stop()
                        break
                    gap = next_gap(ref, min(len(ref), player.pos // frame))
                    player.stop_at(len(player.data) if gap is None else gap * frame)
        finally:
            if onset is None and not player.done.is_set():
                player.stop()  # an exception (Ctrl-C): never leave the line playing
            player.close()
            # Cut short, the line's echo still arrives for up to ECHO_WINDOW_S.
            self._heard_until = max(blocks[-1].at if blocks else started,
                                    (player.stopped_at or 0.0) + ECHO_WINDOW_S)
        if onset is None:
            self.mic.unread(before + blocks, turn=False)
            return started

        def kept(first: int) -> list[Block]:
            # The blocks from ``first`` with their residuals, those heard while the echo
            # path was being measured cancelled now that it is known.
            out = []
            for i in range(first, len(blocks)):
                c = clean[i]
                if c is None and aec.lag is not None and at_m[i] < m0:
                    c = aec.cancel(blocks[i].samples, at_m[i], adapt=False)[0]
                out.append(blocks[i] if c is None else replace(blocks[i], clean=c))
            return out
        if gives_way:
            # The reply cut the trainee off: everything since the answer was captured is
            # the same answer going on. Stopped before its echo path was measured, what
            # was heard of it before the trainee went on (the echo alone) may tell the
            # path, so that its echo is cancelled from the answer there too.
            if not aec_on and onset >= MIN_LEARN_FRAMES:
                aec.learn(np.concatenate(got[:onset]))
            self.gave_way = Yield(
                resumed_s=at_s, played_s=player.pos / player.sr,
                detect_s=(player.stopped_at or detected_at) - onset_at,
                line_s=len(player.data) / player.sr, resumed_at=onset_at)
            self.mic.unread(before + kept(0), turn=True)
            return started
        # Hand over from before the trainee may have begun: words said over a loud line
        # are heard only late, and belong to the answer (with the echo cancelled where
        # the canceller runs; the raw microphone stays in the recording).
        begun = max(0, onset - round(CARRY_S / FRAME_S))
        if soft is not None:
            begun = max(min(begun, soft), onset - 2 * round(CARRY_S / FRAME_S))
        first = max(0, begun - round(PREROLL_S / FRAME_S))
        self.mic.unread(before + blocks[:first], turn=False)
        self.mic.unread(kept(first), turn=True)
        if tail_until is not None:
            return started  # the trainee began just after the line: the answer's start
        stopped = player.stopped_at if self.when_interrupted == "stop" else time.perf_counter()
        self.last = Interruption(
            at_s=max(0.0, at_s), overlap_s=max(0.0, (stopped or detected_at) - onset_at),
            detect_s=detected_at - onset_at,
            finished_sentence=self.when_interrupted == "finish_sentence",
            line_s=len(player.data) / player.sr)
        return started
