#!/usr/bin/env python3
"""End of turn: the learned decision and the word-list rule (voice_sim.endpoint) against
Smart Turn v3.2, on rendered and recorded answers.

Two sets of trainee answers, rendered with espeak-ng in four voices and two paces:

  finished  one or two complete sentences, then silence: how soon after the true end
            of the speech is the end detected (``delay``; lower is better)?
  paused    answers with a natural mid-answer pause of 0.5-1.2 s (seeded, uniform):
            after a filler (``so what I can do is, um``), a holding phrase (``let me
            see``), a conjunction, a breath between clauses, or, separately reported,
            between two full sentences (``sentence``, the ambiguous case): how often
            does the turn end inside the pause (``premature``; target <= 2%)?

``--set held-out`` renders other answers in three other voices: the rule's
subordinate-clause and breath cues were added after the first run on the ``dev`` set
(the breaths of both sets are synthetic: band-limited noise, not recorded breathing).

Each answer goes block by block (20 ms) through two real :class:`TurnDetector` (energy
+ Silero VAD + final pitch + breaths), faster than real time: one deciding with the
learned model (``model``), one with the word lists (``rule``), both reading the same
words. The words it reads come from a real
Whisper stream fed the same blocks and told of each pause as capture_answer tells it
(listen.PAUSE_HINT_S), each decode settled at once and its text shown some seconds of
audio later: ``--text-lag`` for the pause's greedy decode, ``--commit-lag`` for the
others (a commit's beam search with word times), about what bench_latency.py measures
live on an idle machine; 0 would flatter the rule.

``--set fresh`` is a second held-out set (five more voices and paces, other answers, its
own seed): written before the second round of changes to the rule and run once, after
it.

``--set unseen`` (five more espeak-ng voices and paces, answers of its own) and ``--set
asterisk`` (real recorded speech: Debian's asterisk-core-sounds-en-wav prompts, an
unfinished fragment + pause + its continuation, or whole prompts) are the figure sets of
the learned decision (voice_sim.endpoint), written and committed before it was trained.

``--set final`` is the figure set of the fourth round (written and committed before its
decision changed, measured once at its end): five more espeak-ng voices and paces,
answers of its own, two-sentence answers whose sentences are 0.25-0.6 s apart, and real
speech of two people: Asterisk prompts none of ``--set asterisk`` uses, and LibriVox
read speech (Debian pocketsphinx-testdata) cut at the reader's own pauses. Premature
ends are also reported per source (``premature_natural_by_source``), and the learned
decision's band each finished answer ended on (``finished_read``) for every set.

Smart Turn v3.2 (the ONNX model inside the PyPI package ``pipecat-ai`` 1.14.0, run with
onnxruntime on the last 8 s of 16 kHz audio, Whisper log-mel features computed by
pipecat's own numpy code) is asked, as pipecat asks it, once the VAD has heard
``--smart-wait`` seconds of pause: the turn ends there when it says complete
(probability > 0.5), else at the profile's longest wait. It needs pipecat-ai installed
with its dependencies (``.venv/bin/pip install pipecat-ai==1.14.0``: its package
``__init__`` imports loguru and wait_for2, so ``--no-deps`` does not import; it moves
soundfile to 0.13.1 and protobuf to 6, so use a scratch venv or reinstall with
``scripts/setup`` after). Only its model and feature code are used.
``--rows FILE`` writes every answer's row, with Smart Turn's probability at each pause
it was asked (``smart_p``: seconds into the answer, probability), for analysis.

    .venv/bin/python scripts/bench_turn_end.py [--turn-end normal] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VOICES = [("en-us", 165, 50), ("en-gb", 155, 45), ("en-us+f3", 175, 55), ("en-us+m3", 150, 40)]
FINISHED = [
    "I understand why you are upset, let me look into your order right now.",
    "I am sorry this happened. That sounds really frustrating.",
    "I can issue a refund today, and you will see it within five days.",
    "Could you tell me the order number, please?",
    "You are right, we should have called you back yesterday.",
    "I will stay on the line until this is sorted out.",
]
PAUSED = [
    ("filler", "So what I can do is, um", "send you a replacement by express shipping."),
    ("filler", "Well, uh", "I think the best option is a full refund."),
    ("holding", "Let me see", "yes, the parcel left our warehouse on Monday."),
    ("holding", "One moment, let me check", "right, I can see both payments here."),
    ("conjunction", "I have checked your account and", "the second charge is a duplicate."),
    ("conjunction", "The courier was booked for Tuesday, but", "the van broke down on the way."),
    ("breath", "I am sorry about the wait,", "I know it has been a long morning for you."),
    ("breath", "If you can give me the order number,", "I will pull it up straight away."),
    ("sentence", "I completely understand.", "Let me fix this for you right now."),
    ("sentence", "That should not have happened.", "I will refund the extra charge today."),
]
BREATH_DBFS = -42.0
HELD_OUT_VOICES = [("en-gb-scotland", 160, 50), ("en-029", 170, 45),
                   ("en-gb-x-rp+f2", 165, 60)]
"""``--set held-out``: voices, answers and pauses the rule was never looked at with (the
subordinate-clause and breath cues were added after the ``dev`` set's first run)."""
HELD_OUT_FINISHED = [
    "Thank you for waiting, I have found your booking.",
    "We will send the new card by courier tomorrow morning.",
    "I understand, and I am going to make this right.",
    "Your refund has gone through this afternoon.",
]
HELD_OUT_PAUSED = [
    ("filler", "Right, so, erm", "the technician can come on Friday."),
    ("holding", "Just a second", "okay, I can see the order from June."),
    ("conjunction", "The payment did go through, because", "the bank released it on Monday."),
    ("breath", "When the parcel comes back to us,", "we will refund the full amount."),
    ("breath", "I can see why that upset you,", "nobody told you about the delay."),
    ("sentence", "I am sorry.", "I can offer you a voucher as well."),
]
FRESH_VOICES = [("en-gb-x-gbclan", 150, 50), ("en-gb-x-gbcwmd", 175, 45),
                ("en-us-nyc", 160, 55), ("en-us+f4", 185, 60), ("en-gb+m7", 145, 40)]
"""``--set fresh``: a second held-out set, written (with its own voices, paces and seed)
before the rule's second round of changes and run once, at the end of that round: the
first held-out set had been looked at by then. 110 answers with a natural pause, so
that a premature-end rate near 2% can be told from one near 10%."""
FRESH_FINISHED = [
    "I have booked the engineer for Tuesday morning.",
    "Your account is back to normal now, thank you for waiting.",
    "Is there a good number to reach you on?",
    "I am really sorry for the mix-up with your delivery.",
]
FRESH_PAUSED = [
    ("filler", "Okay, so, um", "I can move the appointment to Thursday."),
    ("filler", "The best thing, uh", "would be to cancel the old order."),
    ("filler", "Hmm, so what happened was", "the label was printed twice."),
    ("filler", "I think, erm", "the discount was applied to the wrong item."),
    ("filler", "What we could try is, um", "resetting the router from our side."),
    ("filler", "So, ah", "your new card should arrive by Friday."),
    ("holding", "Let me just check that", "yes, the engineer is booked for nine."),
    ("holding", "Bear with me a moment", "I am opening your file now."),
    ("holding", "Give me one second", "the system is a little slow today."),
    ("holding", "Hang on, let me look", "there it is, order four one two."),
    ("holding", "Let me think about that", "I can offer a partial refund."),
    ("conjunction", "I spoke to the warehouse and", "they confirmed it was sent back."),
    ("conjunction", "You should have had a text, but", "it looks like the number was wrong."),
    ("conjunction", "We can refund the fee or", "credit it to your next bill."),
    ("conjunction", "I have added a note so that", "nobody asks you this again."),
    ("conjunction", "The meter reading was estimated, which",
     "is why the bill looked so high."),
    ("breath", "I know you have called three times already,",
     "and I am sorry it took this long."),
    ("breath", "Once the engineer has been out,", "the charge will come off your account."),
    ("breath", "If the box arrives damaged again,",
     "just send me a photo and I will replace it."),
    ("breath", "Looking at your last three bills,", "the direct debit went out twice in May."),
    ("breath", "To make up for the trouble,", "I have taken ten pounds off this month."),
    ("breath", "The reason you were charged", "is that the trial ended on Sunday."),
    ("sentence", "I hear you.", "Let me put this right today."),
    ("sentence", "That was our mistake.", "The late fee has been removed."),
    ("sentence", "Thanks for holding.", "I have the details in front of me."),
]
UNSEEN_VOICES = [("en-us+m1", 140, 45), ("en-gb+f5", 190, 60), ("en-gb-x-rp+m6", 160, 40),
                 ("en-029+f1", 175, 55), ("en-gb-scotland+m4", 155, 50)]
"""``--set unseen``: the learned decision's figure set, written and committed before the
model was trained (issue 15, third round): voices and paces of none of the other sets,
answers and pauses of its own, and none of the corpus's replies."""
UNSEEN_FINISHED = [
    "The replacement router is on its way to you now.",
    "I have cancelled the second direct debit.",
    "Would Wednesday afternoon suit you better?",
    "That is all sorted, you will get an email shortly.",
    "I am sorry you were kept waiting on the phone.",
]
UNSEEN_PAUSED = [
    ("filler", "So, you know", "the booking is still there under your name."),
    ("filler", "Basically, um", "the fault is at the exchange, not your house."),
    ("filler", "What I would suggest, er", "is that we send a new meter."),
    ("filler", "Right, so, like", "the voucher should cover the whole stay."),
    ("filler", "I reckon, uh", "the parcel went to your neighbour."),
    ("holding", "Hold on a sec", "okay, the refund was issued on the ninth."),
    ("holding", "Let me pull that up", "right, I have your last two invoices here."),
    ("holding", "I am just looking now", "and yes, the flight was rebooked."),
    ("holding", "Two ticks", "I can see the engineer never arrived."),
    ("holding", "Let me have a quick look", "the claim is marked as pending."),
    ("conjunction", "We can send someone out today, unless",
     "you would rather wait for the weekend."),
    ("conjunction", "The fee was added because", "the payment bounced on Friday."),
    ("conjunction", "I will credit your account so", "you are not out of pocket."),
    ("conjunction", "Your old plan ended in March, whereas",
     "the new one started in April."),
    ("conjunction", "I have logged the fault, and once", "it is fixed you will get a text."),
    ("breath", "Now that I have your reference,", "I can see exactly what went wrong."),
    ("breath", "Even though the system says delivered,",
     "I believe you that nothing came."),
    ("breath", "As soon as the warehouse confirms,", "I will ring you back myself."),
    ("breath", "Before we go any further,", "can I just check your postcode?"),
    ("breath", "For the inconvenience this caused,", "I am adding a month of free service."),
    ("breath", "The person you spoke to on Monday", "should have logged the complaint."),
    ("sentence", "I can see that.", "The charge should never have gone through."),
    ("sentence", "Okay, thank you.", "I will stay on the line while it updates."),
    ("sentence", "You have every right to be annoyed.", "Let me see what I can do."),
    ("sentence", "It is done.", "You will not be billed for it again."),
]
ASTERISK = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
"""Real speech: the Debian package ``asterisk-core-sounds-en-wav`` (one speaker, 8 kHz
prompts recorded to be concatenated; transcripts in asterisk-core-sounds-en's
core-sounds-en.txt). ``--set asterisk``: paused answers join an unfinished fragment, a
pause and its continuation, so the pause follows real unfinished-phrase intonation;
finished answers are whole prompts; ``sentence`` joins two whole prompts. Also written
before the model was trained."""
ASTERISK_FINISHED = [
    ["vm-msgsaved"], ["vm-passchanged"], ["cannot-complete-as-dialed"],
    ["check-number-dial-again"], ["all-circuits-busy-now"], ["number-not-answering"],
    ["demo-echodone"], ["confbridge-removed"], ["queue-youarenext"],
    ["feature-not-avail-line"], ["privacy-unident"], ["dir-nomatch"],
    ["sorry-youre-having-problems"], ["vm-msgforwarded"], ["speed-dial-empty"],
    ["vm-mailboxfull"], ["vm-nobodyavail"], ["pls-hold-while-try"],
]
ASTERISK_PAUSED = [
    ("fragment", ["vm-theperson"], ["digits/4", "digits/2", "vm-isunavail"]),
    ("fragment", ["vm-num-i-have"], ["digits/5", "digits/5", "digits/1"]),
    ("fragment", ["queue-holdtime"], ["digits/3", "queue-minutes"]),
    ("fragment", ["queue-thereare"], ["digits/7"]),
    ("fragment", ["if-correct-press"], ["digits/1"]),
    ("fragment", ["at-tone-time-exactly"], ["digits/9", "digits/40"]),
    ("fragment", ["num-was-successfully"], ["removed"]),
    ("fragment", ["privacy-to-blacklist-last-caller"], ["digits/8", "digits/6"]),
    ("fragment", ["confbridge-there-are"], ["digits/5", "confbridge-participants"]),
    ("fragment", ["queue-quantity1"], ["digits/6", "queue-quantity2"]),
    ("fragment", ["confbridge-dec-list-vol-in"], ["vm-press", "digits/4"]),
    ("fragment", ["confbridge-leave-in"], ["vm-press", "digits/8"]),
    ("fragment", ["dir-pls-enter"], ["digits/3", "dir-last"]),
    ("fragment", ["vm-onefor"], ["vm-INBOX", "vm-messages"]),
    ("fragment", ["vm-duration"], ["digits/2", "minutes"]),
    ("sentence", ["im-sorry"], ["please-try-again"]),
    ("sentence", ["vm-incorrect"], ["please-try-again"]),
    ("sentence", ["auth-thankyou"], ["pls-hold-while-try"]),
    ("sentence", ["vm-msgsaved"], ["vm-goodbye"]),
]
ASTERISK_DRAWS = 3
"""Each asterisk answer is built this many times, each with its own pause length and
noise (the speech is the same: the count is not of independent recordings)."""
FINAL_VOICES = [("en-us+Annie", 170, 50), ("en-gb+Alex", 160, 45),
                ("en-gb-x-rp+Andrea", 175, 55), ("en-029+m2", 185, 50),
                ("en-us-nyc+klatt", 150, 45)]
"""``--set final``: the figure set of issue 15's fourth round, written and committed
before that round's decision was changed, measured once at its end: voices and paces
of no other set (nor of the training renders), answers of its own, two-sentence answers
(finished ones rendered as one text, and ``sentence`` answers whose two sentences are
:data:`FINAL_SENTENCE_GAP` apart), and real recorded speech of two human speakers
(:data:`FINAL_ASTERISK`, :data:`FINAL_LIBRIVOX`)."""
FINAL_FINISHED = [
    "I have moved your delivery to Saturday morning.",
    "Can you read me the number on the back of the card?",
    "The overcharge has been refunded to your card.",
    "I am sorry. I have refunded the delivery fee.",
    "Thank you for your patience. Your new contract starts on Monday.",
    "I will call you back at four o'clock with an update.",
]
FINAL_PAUSED = [
    ("filler", "So, um", "the engineer will be with you before noon."),
    ("filler", "What I can offer, uh", "is a free month on your plan."),
    ("filler", "Honestly, erm", "the fault was on our side."),
    ("filler", "The quickest way is, um", "for me to cancel and reorder it."),
    ("holding", "Let me just bring that up", "okay, the payment failed on the third."),
    ("holding", "One sec", "yes, your tickets were reissued."),
    ("holding", "Just bear with me", "I am transferring the credit now."),
    ("holding", "Let me see here", "I can waive the late charge."),
    ("holding", "I am checking that for you now", "and it shows as dispatched."),
    ("conjunction", "I have spoken to the courier and", "they will redeliver tomorrow."),
    ("conjunction", "The discount applies, as long as",
     "you renew before the end of the month."),
    ("conjunction", "We did receive your letter, but", "it was sent to the wrong team."),
    ("conjunction", "I am adding a credit so that", "your next bill is lower."),
    ("breath", "Now that the refund is approved,", "it should clear in two working days."),
    ("breath", "Because the parcel was signed for,", "I need to open a claim with the courier."),
    ("breath", "I can see three calls from you this week,", "and none of them were logged."),
    ("sentence", "I am so sorry.", "That must have been stressful."),
    ("sentence", "I understand.", "Let me change that booking for you."),
    ("sentence", "Thank you for explaining.", "I can see the double charge now."),
    ("sentence", "I have found the order.", "It was sent to your old address."),
    ("sentence", "That is not good enough.", "I am escalating it to my manager today."),
    ("sentence", "You are right to be upset.", "Would a full refund help?"),
]
FINAL_SENTENCE_GAP = (0.25, 0.6)
"""Seconds between the two sentences of one answer in ``--set final`` (the other kinds
keep the 0.5-1.2 s mid-answer pause)."""
FINAL_ASTERISK_FINISHED = [
    ["conf-locked"], ["vm-deleted"], ["queue-thankyou"], ["conf-onlyperson"],
    ["tt-allbusy"], ["something-terribly-wrong"], ["vm-nomore"], ["conf-kicked"],
    ["vm-tooshort"], ["conf-getconfno"], ["enter-num-blacklist"], ["demo-thanks"],
]
FINAL_ASTERISK = [
    ("fragment", ["vm-youhave"], ["digits/3", "vm-messages"]),
    ("fragment", ["conf-thereare"], ["digits/4", "conf-otherinparty"]),
    ("fragment", ["to-call-this-number"], ["vm-press", "digits/2"]),
    ("fragment", ["queue-reporthold"], ["digits/2", "queue-minutes"]),
    ("fragment", ["queue-less-than"], ["digits/5", "queue-minutes"]),
    ("fragment", ["extension"], ["digits/2", "digits/1", "vm-isonphone"]),
    ("fragment", ["vm-from-phonenumber"], ["digits/6", "digits/3"]),
    ("sentence", ["sorry"], ["please-try-call-later"]),
    ("sentence", ["conf-locked"], ["goodbye"]),
    ("sentence", ["queue-thankyou"], ["one-moment-please"]),
    ("sentence", ["vm-deleted"], ["vm-goodbye"]),
]
"""``--set final``'s Asterisk answers: prompts none of ``--set asterisk``'s answers use
as a whole or a first half."""
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
"""Real read speech (Debian ``pocketsphinx-testdata``: five LibriVox clips, one reader
of *Sense and Sensibility*, transcripts beside them)."""
FINAL_LIBRIVOX = [
    ("fragment", "0870", 3.96), ("fragment", "0880", 1.06), ("fragment", "0890", 1.30),
    ("fragment", "0920", 5.56), ("sentence", "0920+0930", None),
    ("sentence", "0880+0890", None),
]
"""``--set final``'s LibriVox answers: a clip cut at one of its own pauses (the time, in
seconds, is that pause's middle: ``there might be | prudently``, ``he was | not an``,
``cold hearted | and``... the reader's own unfinished intonation), the cut widened to a
0.5-1.2 s pause; two clips one after the other (``sentence``); and each clip whole as a
finished answer."""
SETS = {"dev": (VOICES, FINISHED, PAUSED),
        "held-out": (HELD_OUT_VOICES, HELD_OUT_FINISHED, HELD_OUT_PAUSED),
        "fresh": (FRESH_VOICES, FRESH_FINISHED, FRESH_PAUSED),
        "unseen": (UNSEEN_VOICES, UNSEEN_FINISHED, UNSEEN_PAUSED),
        "asterisk": ([], [], []),
        "final": (FINAL_VOICES, FINAL_FINISHED, FINAL_PAUSED)}
SEEDS = {"dev": 15, "held-out": 15, "fresh": 1515, "unseen": 1516, "asterisk": 1517,
         "final": 1518}
"""Each set's pause lengths and noise (``--seed`` overrides)."""


@dataclass
class Case:
    kind: str
    audio: Any
    """16 kHz float32: 0.3 s of room noise, the answer, 2.5 s of room noise."""
    pause: tuple[float, float] | None
    """(start, end) seconds of the mid-answer pause, None for a finished answer."""
    end_s: float
    """Seconds: the true end of the speech."""
    source: str = "espeak-ng"
    """Whose speech: espeak-ng, asterisk or librivox."""


def speech_span(x: Any) -> tuple[int, int]:
    import numpy as np

    n = len(x) // 320
    rms = np.sqrt(np.mean(x[:n * 320].reshape(n, 320).astype(np.float64) ** 2, axis=1))
    loud = np.flatnonzero(20 * np.log10(rms + 1e-12) > -45)
    return int(loud[0] * 320), int((loud[-1] + 1) * 320)


def render(text: str, voice: tuple[str, int, int]) -> Any:
    from voice_sim.audio import load_audio
    from voice_sim.speak import Voice, cached_render

    x = load_audio(cached_render(text, Voice(id=voice[0], rate=voice[1], pitch=voice[2])))
    a, b = speech_span(x)
    return x[a:b]


def prompt(names: list[str]) -> Any:
    """Asterisk prompts played one after the other (each trimmed to its speech), at 16 kHz."""
    import numpy as np

    from voice_sim.audio import load_audio

    if not ASTERISK.is_dir():
        raise SystemExit(f"bench_turn_end: {ASTERISK} is missing: "
                         "apt-get install asterisk-core-sounds-en-wav (scripts/setup does)")
    parts = []
    for n in names:
        x = load_audio(ASTERISK / f"{n}.wav")
        a, b = speech_span(x)
        parts.append(x[a:b])
    return np.concatenate(parts)


def librivox(name: str) -> Any:
    """A LibriVox clip (``0870``; ``0920+0930``: two, one after the other), trimmed."""
    from voice_sim.audio import load_audio

    if not LIBRIVOX.is_dir():
        raise SystemExit(f"bench_turn_end: {LIBRIVOX} is missing: "
                         "apt-get install pocketsphinx-testdata (scripts/setup does)")
    parts = []
    for n in name.split("+"):
        x = load_audio(LIBRIVOX / f"sense_and_sensibility_01_austen_64kb-{n}.wav")
        a, b = speech_span(x)
        parts.append(x[a:b])
    return parts


def cut_at(x: Any, at_s: float) -> tuple[Any, Any]:
    """``x`` cut in the quiet around ``at_s`` (seconds into the untrimmed clip): the
    speech before and after its own pause, each trimmed to its speech."""
    k = int(at_s * 16_000)
    a, b = x[:k], x[k:]
    return a[:speech_span(a)[1]], b[speech_span(b)[0]:]


def cases(seed: int, which: str = "dev") -> list[Case]:
    import numpy as np

    rng = random.Random(seed)
    noise = np.random.default_rng(seed)

    def room(s: float) -> Any:
        return (noise.standard_normal(int(s * 16_000)) * 10 ** (-62 / 20)).astype(np.float32)

    def finished_case(x: Any, source: str = "espeak-ng") -> Case:
        return Case("finished", np.concatenate([room(0.3), x, room(2.5)]), None,
                    0.3 + len(x) / 16_000, source)

    def paused_case(kind: str, a: Any, b: Any, source: str = "espeak-ng") -> Case:
        gap = rng.uniform(*(FINAL_SENTENCE_GAP if which == "final" and kind == "sentence"
                            else (0.5, 1.2)))
        pause = room(gap)
        if kind == "breath":
            # An audible in-breath: band-limited noise, 0.25 s, in the pause's middle.
            k = int(0.25 * 16_000)
            br: Any = noise.standard_normal(k).astype(np.float32)
            br = np.convolve(br, np.ones(8) / 8, mode="same") * np.hanning(k)
            br *= 10 ** (BREATH_DBFS / 20) / (np.sqrt(np.mean(br ** 2)) + 1e-12)
            m = (len(pause) - k) // 2
            pause[m:m + k] += br.astype(np.float32)
        t0 = 0.3 + len(a) / 16_000
        return Case(kind, np.concatenate([room(0.3), a, pause, b, room(2.5)]),
                    (t0, t0 + gap), t0 + gap + len(b) / 16_000, source)

    out = []
    if which == "asterisk":
        for _ in range(ASTERISK_DRAWS):
            out += [finished_case(prompt(names), "asterisk") for names in ASTERISK_FINISHED]
            out += [paused_case(kind, prompt(a), prompt(b), "asterisk")
                    for kind, a, b in ASTERISK_PAUSED]
        return out
    voices, finished, paused = SETS[which]
    for v in voices:
        out += [finished_case(render(text, v)) for text in finished]
        out += [paused_case(kind, render(first, v), render(second, v))
                for kind, first, second in paused]
    if which == "final":
        for _ in range(ASTERISK_DRAWS):
            out += [finished_case(prompt(names), "asterisk")
                    for names in FINAL_ASTERISK_FINISHED]
            out += [paused_case(kind, prompt(a), prompt(b), "asterisk")
                    for kind, a, b in FINAL_ASTERISK]
            clips = {n: librivox(n)[0] for n in ("0870", "0880", "0890", "0920", "0930")}
            out += [finished_case(x, "librivox") for x in clips.values()]
            for kind, name, at in FINAL_LIBRIVOX:
                if at is None:
                    first, second = librivox(name)
                else:
                    raw = load_librivox_raw(name)
                    first, second = cut_at(raw, at)
                out.append(paused_case(kind, first, second, "librivox"))
    return out


def load_librivox_raw(name: str) -> Any:
    """A LibriVox clip as recorded (untrimmed: cut times count from its start)."""
    from voice_sim.audio import load_audio

    return load_audio(LIBRIVOX / f"sense_and_sensibility_01_austen_64kb-{name}.wav")


class SmartTurn:
    """Smart Turn v3.2 from the installed pipecat-ai package (model and features)."""

    def __init__(self) -> None:
        from importlib.resources import files

        import onnxruntime as ort
        from pipecat.audio.turn.smart_turn._whisper_features import (
            compute_whisper_log_mel_features,
        )

        self.features = compute_whisper_log_mel_features
        path = files("pipecat.audio.turn.smart_turn.data") / "smart-turn-v3.2-cpu.onnx"
        opts = ort.SessionOptions()
        opts.inter_op_num_threads, opts.intra_op_num_threads = 1, 1
        self.session = ort.InferenceSession(str(path), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self.name = self.session.get_inputs()[0].name
        self.times: list[float] = []

    def probability(self, x: Any) -> float:
        import numpy as np

        n = 8 * 16_000
        x = x[-n:] if len(x) >= n else np.pad(x, (n - len(x), 0))
        t = time.perf_counter()
        feats = self.features(x.astype(np.float32), do_normalize=True)[None].astype(np.float32)
        out = self.session.run(None, {self.name: feats})
        self.times.append(time.perf_counter() - t)
        return float(np.ravel(out[0])[0])


def run_case(c: Case, engine: Any, args: argparse.Namespace, smart: SmartTurn | None
             ) -> dict[str, Any]:
    """Where each method ends the turn, in seconds of the case's audio: the learned
    decision and the word-list rule, each its own TurnDetector reading the same words
    of one Whisper stream, and Smart Turn."""
    from voice_sim.endpoint import PATIENCE
    from voice_sim.listen import (
        PAUSE_HINT_S,
        TurnConfig,
        TurnDetector,
    )

    dets = {d: TurnDetector(TurnConfig(turn_end=args.turn_end, decision=d))
            for d in ("model", "rule")}
    # The learned decision under the other profiles too: the same words, its own waits.
    dets |= {f"model-{te}": TurnDetector(TurnConfig(turn_end=te))
             for te in args.profiles if te != args.turn_end}
    det = dets["model"]  # voice activity is the same in both: it times the hints
    stream = engine.stream()
    # (pos when shown, text, covered samples, end probability)
    history: list[tuple[int, str, int, float | None]] = []
    lag = round(args.text_lag * 16_000)
    commit_lag = round(args.commit_lag * 16_000)
    ends: dict[str, float | None] = {name: None for name in [*dets, "smart"]}
    whys = {"model": "", "rule": ""}
    log: list[tuple[float, str]] = []  # the learned decision's readings, as they change
    smart_asked = False
    smart_p: list[tuple[float, float]] = []
    hinted = asked = True
    longest = PATIENCE[args.turn_end].incomplete_s
    x = c.audio
    for i in range(0, len(x) - 319, 320):
        b = x[i:i + 320]
        stream.accept(b)
        stream.settle()
        history.append((i + 320 + commit_lag, stream.text(), round(stream.covered_s * 16_000),
                        stream.end_p))
        shown = [h for h in history if h[0] <= i]
        text, covered, end_p = shown[-1][1:] if shown else ("", 0, None)
        t = (i + 320) / 16_000
        unread = {name: d.hear(text, covered, end_p) for name, d in dets.items()}["model"]
        for name, d in dets.items():
            reason = d.push(b)
            if name == "model" and d.why != (log[-1][1] if log else ""):
                log.append((t, d.why))
            if reason == "silence" and ends[name] is None:
                ends[name], whys[name] = t, d.why
        if not asked and unread:
            asked = True  # as capture_answer asks for the commit the stream holds
            stream.commit()
        if det.speaking:
            hinted = asked = False
        elif not hinted and det.armed and det.silence_s >= PAUSE_HINT_S:
            # As capture_answer does: the stream hears of the pause and decodes its words.
            hinted = True
            stream.pause()
            stream.settle()
            history.append((i + 320 + lag, stream.text(), round(stream.covered_s * 16_000),
                            stream.end_p))
        if smart is not None and ends["smart"] is None and det.armed and det.speech_end:
            if det.speaking:
                smart_asked = False
            elif not smart_asked and det.silence_s >= args.smart_wait:
                smart_asked = True
                prob = smart.probability(x[:i + 320])
                smart_p.append((round(t, 2), round(prob, 4)))
                if prob > 0.5:
                    ends["smart"] = t
            if ends["smart"] is None and det.silence_s >= longest:
                ends["smart"] = t
        if (all(ends[name] is not None for name in dets)
                and (smart is None or ends["smart"] is not None)):
            break
    return {"kind": c.kind, "source": c.source, "model_end": ends["model"],
            "rule_end": ends["rule"],
            "smart_end": ends["smart"], "smart_p": smart_p, "why": whys["model"],
            "rule_why": whys["rule"],
            **{f"{name}_end": e for name, e in ends.items() if name.startswith("model-")},
            "end_s": c.end_s, "pause": c.pause,
            # What the model read 0.45 s into the mid-answer pause (or after a finished
            # answer): the pause decode's words have arrived by then.
            "read": next((w for t, w in reversed(log)
                          if t <= (c.pause[0] if c.pause else c.end_s) + 0.45), ""),
            "asked": (det.heard, det.pitch or "unknown", det.speech_samples / 16_000)}


def decision_ms(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Milliseconds per learned decision (uncached), on the words each answer ended with."""
    from voice_sim.endpoint import load_model

    model = load_model()
    asked = [r.pop("asked") for r in rows]
    asked = [a for a in asked if a[0] is not None]
    times = []
    for heard, pitch, speech_s in asked[:1] + asked * 5:  # the first: warm-up
        t = time.perf_counter()
        model.probability(heard, pitch, speech_s)
        times.append(time.perf_counter() - t)
    s = sorted(times[1:])
    return {"median_ms": round(statistics.median(s) * 1000, 3),
            "p99_ms": round(s[min(len(s) - 1, round(0.99 * (len(s) - 1)))] * 1000, 3),
            "max_ms": round(s[-1] * 1000, 3)} if s else {}


def summarise(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    def premature(r: dict[str, Any]) -> bool:
        e = r[key]
        return e is not None and e < r["end_s"]

    fin = [r[key] - r["end_s"] for r in rows if r["kind"] == "finished" and r[key] is not None]
    paused = [r for r in rows if r["pause"] is not None]
    natural = [r for r in paused if r["kind"] != "sentence"]
    late = [r[key] - r["end_s"] for r in paused if r[key] is not None and not premature(r)]

    def ms(xs: list[float]) -> dict[str, float]:
        s = sorted(xs)
        return {"median_ms": round(statistics.median(s) * 1000), "p95_ms":
                round(s[min(len(s) - 1, round(0.95 * (len(s) - 1)))] * 1000),
                "max_ms": round(s[-1] * 1000)} if s else {}

    by_kind = {k: f"{sum(premature(r) for r in paused if r['kind'] == k)}/"
                  f"{sum(r['kind'] == k for r in paused)}"
               for k in dict.fromkeys(r["kind"] for r in paused)}
    by_source = {src: f"{sum(premature(r) for r in natural if r['source'] == src)}/"
                       f"{sum(r['source'] == src for r in natural)}"
                 for src in dict.fromkeys(r["source"] for r in rows)}
    return {"finished_delay": ms(fin),
            "finished_missed": sum(r[key] is None for r in rows if r["kind"] == "finished"),
            # A finished answer ended before its true end: cut off at a comma inside it.
            "finished_premature": f"{sum(premature(r) for r in rows if r['kind'] == 'finished')}"
                                  f"/{sum(r['kind'] == 'finished' for r in rows)}",
            "paused_end_delay": ms(late),
            "premature_natural": f"{sum(premature(r) for r in natural)}/{len(natural)}",
            "premature_natural_pct": round(100 * sum(premature(r) for r in natural)
                                           / max(1, len(natural)), 1),
            "premature_all": f"{sum(premature(r) for r in paused)}/{len(paused)}",
            "premature_by_kind": by_kind,
            "premature_natural_by_source": by_source}


def main() -> int:
    p = argparse.ArgumentParser(description="end of turn: the rule vs Smart Turn v3.2")
    p.add_argument("--turn-end", default="normal", choices=("fast", "normal", "patient"))
    p.add_argument("--text-lag", type=float, default=0.2,
                   help="seconds of audio before the pause's greedy decode is seen "
                        "(default 0.2)")
    p.add_argument("--commit-lag", type=float, default=0.45,
                   help="seconds of audio before any other decode (a commit's beam "
                        "search, a caption) is seen (default 0.45)")
    p.add_argument("--smart-wait", type=float, default=0.2,
                   help="seconds of pause before Smart Turn is asked (pipecat's default)")
    p.add_argument("--no-smart", action="store_true", help="the rule only")
    p.add_argument("--profiles", default="fast,normal,patient",
                   help="the learned decision is also measured under these --turn-end "
                        "profiles (the same words; reported as model-PROFILE)")
    p.add_argument("--seed", type=int, default=None,
                   help="pause lengths and noise (default: the set's own)")
    p.add_argument("--set", choices=tuple(SETS), default="dev",
                   help="dev: the answers the rule was built on; held-out: other voices, "
                        "answers and pauses; fresh: a second, larger held-out set; "
                        "unseen, asterisk: the learned decision's figure sets (espeak-ng; "
                        "real recorded prompts); final: the fourth round's (espeak-ng, "
                        "Asterisk and LibriVox, sentence gaps of 0.25-0.6 s)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--rows", type=Path, default=None,
                   help="write every answer's row (ends, readings, smart_p) to this JSON file")
    args = p.parse_args()
    args.profiles = [te for te in args.profiles.split(",") if te]
    if args.rows is not None and not args.rows.parent.is_dir():
        p.error(f"--rows: folder {args.rows.parent} does not exist (create it, or pick "
                "another file)")
    for te in args.profiles:
        if te not in ("fast", "normal", "patient"):
            p.error(f"--profiles: {te!r} is not a profile (fast, normal, patient)")
    import numpy as np

    from voice_sim.engines import get_engine

    load = os.getloadavg()
    engine = get_engine("whisper")
    engine.transcribe(np.zeros(16_000, np.float32))
    smart = None
    if not args.no_smart:
        try:
            smart = SmartTurn()
        except ImportError as e:
            print(f"bench_turn_end: Smart Turn unavailable ({e}); "
                  "pip install pipecat-ai==1.14.0 (into a scratch venv: see --help)",
                  file=sys.stderr)
    all_cases = cases(SEEDS[args.set] if args.seed is None else args.seed, args.set)
    print(f"bench_turn_end: {len(all_cases)} answers, turn end {args.turn_end}",
          file=sys.stderr)
    rows = []
    for c in all_cases:
        r = run_case(c, engine, args, smart)
        rows.append(r)
        print(f"  {r['kind']:>11}: end {r['end_s']:.2f}  model {r['model_end']} "
              f"({r['why']}; read {r['read']})  rule {r['rule_end']} ({r['rule_why']})  "
              f"smart {r['smart_end']}", file=sys.stderr)
    result: dict[str, Any] = {
        "set": args.set, "turn_end": args.turn_end, "text_lag_s": args.text_lag,
        "commit_lag_s": args.commit_lag,
        "answers": len(rows),
        "nproc": os.cpu_count(), "loadavg": [round(v, 2) for v in load],
        "model": {**summarise(rows, "model_end"), "decision": decision_ms(rows),
                  # The band each finished answer's turn ended on (its wait).
                  "finished_read": dict(sorted(Counter(
                      r["why"].split(" (")[0] for r in rows
                      if r["kind"] == "finished").items()))},
        "rule": summarise(rows, "rule_end"),
        **{f"model-{te}": summarise(rows, f"model-{te}_end") for te in args.profiles
           if te != args.turn_end}}
    if args.rows is not None:
        args.rows.write_text(json.dumps(rows, indent=1, default=str), encoding="utf-8")
    if smart is not None:
        result["smart_turn"] = summarise(rows, "smart_end")
        result["smart_turn"]["inference_ms"] = round(statistics.median(smart.times) * 1000, 1)
    print(json.dumps(result, indent=2) if args.json else
          "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
