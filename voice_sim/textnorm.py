"""Transcript normalisation: typed text and speech-to-text output reduced to one form.

The content scorer must give the same verdict whether a reply was typed ("I'm sorry,
I can't refund the $40.") or came out of a speech engine ("um im sorry i cant refund
the forty dollars"). Both go through :func:`normalize`, and so do the rubric's
patterns, so a pattern written with punctuation and contractions matches speech
without them. The steps:

1. split into word tokens, dropping punctuation (hyphenated words become separate
   words, as speech engines write them);
2. lowercase and straighten apostrophes;
3. expand contractions, with or without the apostrophe ("don't", "dont" -> "do not";
   "im" -> "i am"; "can't", "cannot" -> "can not"); "ill" and "id" only where the next
   word makes the contraction likely ("ill call you" but "feeling ill"), and
   "your" -> "you are" before words a possessive never precedes ("your right");
4. numbers as words ("3" -> "three", "$40" -> "forty dollars", "3rd" -> "third",
   "10%" -> "ten percent", "6:30" -> "six thirty"; digit strings of four or more
   digits, which are nearly always order or reference numbers, digit by digit);
5. a few spelling variants merged (British "-ise" verbs, "ok" -> "okay");
6. filler words dropped ("um", "uh", "er", "hmm", ...), and a word repeated
   straight after itself collapsed ("i i am" -> "i am"; numbers are kept, since
   "four four seven one" is a reference number).

Every output token keeps the character span of the word it came from in the original
string, so a match on the normalised text maps back to the exact words the trainee
said (see :meth:`Norm.original_span`).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_TOKEN_RE = re.compile(
    r"[$£€]?\d+(?:[,.:]\d+)*(?:%|[a-z]+\b)?"  # numbers, money, times, ordinals, "10am"
    r"|[^\W\d_]+(?:['’][^\W\d_]+)*"  # words, with inner apostrophes
    r"|&",
    re.IGNORECASE,
)

FILLERS: frozenset[str] = _words("um umm ummm uh uhh uhm er erm err ah ahh hmm hm mm mmm mhm "
                                  "eh huh unk")
"""Words dropped everywhere: hesitation sounds, and ``[unk]`` markers from speech engines."""

_WITH_APOSTROPHE: dict[str, str] = {
    "can't": "can not", "won't": "will not", "shan't": "shall not", "ain't": "is not",
    "let's": "let us", "y'all": "you all", "ma'am": "madam", "o'clock": "oclock",
    "'cause": "because", "'em": "them",
}
"""Contractions the general suffix rules below would get wrong."""

_WITHOUT_APOSTROPHE: dict[str, str] = {
    "im": "i am", "ive": "i have", "youre": "you are", "youve": "you have",
    "youll": "you will", "youd": "you would", "theyre": "they are", "theyve": "they have",
    "theyll": "they will", "theyd": "they would", "weve": "we have",
    "dont": "do not", "doesnt": "does not", "didnt": "did not", "isnt": "is not",
    "wasnt": "was not", "arent": "are not", "werent": "were not", "cant": "can not",
    "cannot": "can not", "wont": "will not", "couldnt": "could not",
    "shouldnt": "should not", "wouldnt": "would not", "havent": "have not",
    "hasnt": "has not", "hadnt": "had not", "mustnt": "must not", "aint": "is not",
    "thats": "that is", "whats": "what is", "theres": "there is", "heres": "here is",
    "wheres": "where is", "whos": "who is", "hows": "how is", "its": "it is",
    "itll": "it will", "thatll": "that will", "lets": "let us", "hes": "he is",
    "shes": "she is", "shouldve": "should have", "couldve": "could have",
    "wouldve": "would have", "mustve": "must have", "mightve": "might have",
    "gonna": "going to", "wanna": "want to", "gotta": "got to", "lemme": "let me",
    "gimme": "give me", "kinda": "kind of", "sorta": "sort of", "dunno": "do not know",
    "u": "you", "ur": "your", "pls": "please", "plz": "please", "ok": "okay",
    "alright": "all right", "cos": "because", "coz": "because", "cuz": "because",
    "bout": "about", "til": "until", "till": "until", "thru": "through",
    "apologise": "apologize", "apologised": "apologized", "apologises": "apologizes",
    "apologising": "apologizing", "realise": "realize", "realised": "realized",
    "recognise": "recognize", "prioritise": "prioritize", "authorise": "authorize",
    "authorised": "authorized", "organise": "organize", "organised": "organized",
    "centre": "center", "cancelled": "canceled", "cancelling": "canceling",
}
"""Contractions and variants as speech engines and hurried typists write them."""

_SUFFIXES = (("n't", " not"), ("'re", " are"), ("'ve", " have"), ("'ll", " will"),
             ("'d", " would"), ("'m", " am"), ("'s", ""))
"""General contraction rules; "'s" is dropped (possessive, or "is" after a noun)."""

_IS_S = _words("that what there here where who how it he she let")
"""Words whose "'s" means "is" (handled through the apostrophe-less table)."""

_ID_NEXT = _words("be like love want feel say suggest recommend need hate also never rather "
                  "probably really just still have definitely certainly personally")
"""Words after "id" that make it "i would" rather than an identifier."""

_ILL_NOT_AFTER = _words("feel feels felt feeling was is be been get got very so fall fell "
                        "seriously really am are were look looks looked become became an the "
                        "mentally critically terminally quite")
"""Words before "ill" that make it the adjective, not "i will"."""

_YOUR_ARE_NEXT = _words("right wrong welcome overreacting being going not so very really saying "
                        "telling still probably just upset frustrated angry entitled "
                        "absolutely correct asking the a an already making trying")
"""Words a possessive "your" never precedes: "your right" is a mis-spelled "you're"."""

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth",
            "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}

NUMBER_WORDS: frozenset[str] = frozenset(
    [*_ONES, *_TENS[2:], "hundred", "thousand", "million", "billion", "oh", "half",
     "couple", "few", "several", "dozen"])
"""Words that spell a quantity (what the rubric class ``<num>`` matches)."""

_CURRENCY = {"$": "dollars", "£": "pounds", "€": "euros"}


def number_words(n: int) -> list[str]:
    """Spell a non-negative integer: 42 -> ["forty", "two"]."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        tens, ones = divmod(n, 10)
        return [_TENS[tens]] + ([_ONES[ones]] if ones else [])
    for size, name in ((1_000_000_000, "billion"), (1_000_000, "million"),
                       (1000, "thousand"), (100, "hundred")):
        if n >= size:
            high, rest = divmod(n, size)
            return [*number_words(high), name, *(number_words(rest) if rest else [])]
    raise AssertionError("unreachable")


def _ordinal(words: list[str]) -> list[str]:
    last = words[-1]
    if last in _ORDINAL:
        last = _ORDINAL[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return [*words[:-1], last]


def _spell_number(raw: str) -> list[str]:
    """Words for one numeric token as the tokeniser cut it ("$12.50", "3rd", "6:30")."""
    s = raw.lower()
    unit = _CURRENCY.get(s[0])
    if unit:
        s = s[1:]
    m = re.fullmatch(r"([\d,.:]+)([a-z%]*)", s)
    if m is None:  # pragma: no cover - the tokeniser only yields this shape
        return [s]
    digits, suffix = m.groups()
    out: list[str]
    if ":" in digits:  # a clock time
        parts = [p for p in digits.split(":") if p]
        out = number_words(int(parts[0]))
        for p in parts[1:]:
            if int(p) == 0:
                continue
            out += (["oh"] if p.startswith("0") else []) + number_words(int(p))
    elif re.fullmatch(r"\d{1,3}(,\d{3})+", digits):
        out = number_words(int(digits.replace(",", "")))
    elif "." in digits and re.fullmatch(r"\d+\.\d+", digits):
        whole, frac = digits.split(".")
        if unit:  # "$12.50" -> "twelve dollars fifty"
            out = [*number_words(int(whole)), unit]
            unit = None
            if int(frac):
                out += number_words(int(frac))
        else:
            out = [*number_words(int(whole)), "point", *(_ONES[int(d)] for d in frac)]
    elif digits.isdigit():
        if len(digits) >= 4 and not unit:
            out = [_ONES[int(d)] for d in digits]  # order / reference numbers
        else:
            out = number_words(int(digits))
    else:
        out = [_ONES[int(d)] for d in digits if d.isdigit()]
    if suffix in ("st", "nd", "rd", "th"):
        out = _ordinal(out)
    elif suffix == "%":
        out.append("percent")
    elif suffix == "k":
        out.append("thousand")
    elif suffix:
        out.append(suffix)  # "10am" -> "ten am", "48h" -> "forty eight h"
    if unit:
        out.append(unit)
    return out


def _expand_word(w: str) -> list[str]:
    """Contractions and variants of one lowercase word (no context needed)."""
    if "'" in w:
        if w in _WITH_APOSTROPHE:
            return _WITH_APOSTROPHE[w].split()
        bare = w.replace("'", "")
        if w.endswith("'s") and w[:-2] in _IS_S:
            return _WITHOUT_APOSTROPHE.get(bare, bare).split()
        for suffix, repl in _SUFFIXES:
            if w.endswith(suffix):
                base = w[: -len(suffix)]
                return [*_expand_word(base), *repl.split()]
        return [bare]
    return _WITHOUT_APOSTROPHE.get(w, w).split()


@dataclass(frozen=True)
class Norm:
    """A normalised text: tokens, and where each came from in the original string."""

    original: str
    tokens: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]
    """Per token, the (start, end) character span in :attr:`original`."""
    text: str
    """The tokens joined by single spaces."""
    offsets: tuple[int, ...]
    """Per token, its character offset in :attr:`text`."""

    def token_range(self, start: int, end: int) -> tuple[int, int]:
        """Tokens ``[i, j)`` covering characters ``[start, end)`` of :attr:`text`."""
        i = bisect_right(self.offsets, start) - 1
        j = bisect_right(self.offsets, max(start, end - 1))
        return max(i, 0), j

    def original_span(self, i: int, j: int) -> tuple[int, int]:
        """Character span in :attr:`original` of tokens ``[i, j)``."""
        if not self.tokens or j <= i:
            return (0, 0)
        return (min(s for s, _ in self.spans[i:j]), max(e for _, e in self.spans[i:j]))


def normalize(text: str) -> Norm:
    """Normalise a reply, a customer line or a rubric phrase (see the module docstring)."""
    raw = [(m.group(0), m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]
    words = [w.lower().replace("’", "'") for w, _, _ in raw]
    tokens: list[str] = []
    spans: list[tuple[int, int]] = []
    for k, (word, (_, start, end)) in enumerate(zip(words, raw, strict=True)):
        nxt = words[k + 1] if k + 1 < len(words) else ""
        prev = words[k - 1] if k else ""
        if word[0] in "$£€" or word[0].isdigit():
            out = _spell_number(word)
        elif word == "&":
            out = ["and"]
        elif word == "id" and nxt in _ID_NEXT:
            out = ["i", "would"]
        elif word == "ill" and prev not in _ILL_NOT_AFTER and nxt not in ("", "health"):
            out = ["i", "will"]
        elif word == "your" and nxt in _YOUR_ARE_NEXT:
            out = ["you", "are"]
        else:
            out = _expand_word(word)
        for tok in out:
            if tok in FILLERS or not tok:
                continue
            if tokens and tok == tokens[-1] and tok not in NUMBER_WORDS:
                spans[-1] = (spans[-1][0], end)  # a stutter: "i i am"
                continue
            tokens.append(tok)
            spans.append((start, end))
    offsets: list[int] = []
    pos = 0
    for tok in tokens:
        offsets.append(pos)
        pos += len(tok) + 1
    return Norm(text, tuple(tokens), tuple(spans), " ".join(tokens), tuple(offsets))


def normalize_words(text: str) -> tuple[str, ...]:
    """Just the normalised tokens of ``text``."""
    return normalize(text).tokens


_SUFFIX_STEMS = ("ingly", "edly", "ings", "ing", "ied", "ies", "ed", "es", "ly", "s")


def stem(word: str) -> str:
    """A crude, consistent stem ("charged", "charges" -> "charg"), for word overlap only."""
    for suffix in _SUFFIX_STEMS:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            base = word[: -len(suffix)]
            if suffix in ("ied", "ies"):
                base += "y"
            if len(base) > 3 and base[-1] == base[-2] and base[-1] not in "aeiouls":
                base = base[:-1]  # "stopped" -> "stop"
            return base
    if word.endswith("e") and len(word) > 4:
        return word[:-1]  # "charge" and "charged" meet at "charg"
    return word
