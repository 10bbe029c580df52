"""Canary-mini's RoT writer: generated rules-of-thumb for flagged contexts that retrieval cannot answer.

The paper's Canary writes the RoTs of a context itself (§4.1). Canary-mini's RoT bank only answers where a known
post is close (`rotbank`'s relevance gate): most flagged contexts, and every dangerous situation, are not close to
any. The writer is a small LoRA adapter on the packaged SmolLM2-135M-Instruct (`prosocial.lm.lora`), run by
llama.cpp, that completes the paper's RoT & Response line after the dialogue:

    The following is a conversation between Speaker 1 and Speaker 2.

    Speaker 1: {earlier turn}
    Speaker 2: {earlier reply}
    Speaker 1: {the flagged turn}
    Rule of thumb: {the RoT it writes}

It is trained (`rotwriter_train`) on Social Bias Frames posts with their implied-statement RoTs, ProsocialDialog
contexts (with their recovered history) with the norm their reply states, and the danger corpus' situations with
their category's safety rule. A model folder holds it as the module ``rot_writer/`` (adapter + ``config.json``).

Nothing here may leave a flagged context without a reason: a failed, malformed or ungrounded generation becomes None
and the caller (`CanaryMini.add_rots`) falls back to the nearest bank entries' RoTs, then to a general rule.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

from prosocial.data.context import check_context, clip_context
from prosocial.errors import ModelError
from prosocial.lm.prompts import RULE_TAG, dialogue_prompt
from prosocial.model_folder import read_model_config, write_model_config
from prosocial.scoring import crude_stem as _stem

log = logging.getLogger(__name__)

FOLDER = "rot_writer"
ADAPTER_FILE = "rot-writer-lora.gguf"
CONFIG = "config.json"
#: a written RoT is one sentence that says something: at least this many words, mostly letters
MIN_WORDS = 4
_SPEAKER = re.compile(r"\s*(Speaker [12]|Rule of thumb)\s*:.*", re.DOTALL)
#: "It's wrong to think/say/assume <who> …": SBIC's form, which names the group a post stereotypes
_ABOUT = re.compile(r"^(it'?s|it is) (wrong|not (ok|okay|right)|bad|rude) to (think|assume|believe|imply)"
                    r"( that)? (?P<rest>.+)$", re.IGNORECASE)
#: plurals that do not share their singular's first letters
_IRREGULAR = {"men": "man", "women": "woman", "people": "person", "children": "child"}
_WORD = re.compile(r"[a-z]+")
#: words that do not name who the rule is about ("It's wrong to think that people with disabilities …")
_GENERIC = frozenset("that the a an all any some most every people person someone somebody others other those these "
                     "with of who are is be their them they it its".split())


@dataclass
class RotWriterConfig:
    """Prompt shaping and decoding; saved as ``rot_writer/config.json`` with the run's record in `meta`."""

    max_turns: int = 3
    max_prompt_chars: int = 1200
    max_new_tokens: int = 40
    meta: dict | None = None

    @classmethod
    def load(cls, path: Path) -> RotWriterConfig:
        """The saved config (defaults where the file is absent); an unknown key is an error naming the file."""
        return cls(**read_model_config(path, cls.__dataclass_fields__))

    def save(self, path: Path) -> None:
        write_model_config(path, asdict(self))


def writer_prompt(context: Sequence[str], max_turns: int = 3) -> str:
    """The dialogue (last `max_turns` utterances) and the opened RoT line: exactly what the adapter was trained on."""
    return f"{dialogue_prompt(context, max_turns)}{RULE_TAG}"


def clean_rot(text: str) -> str | None:
    """A generation as one RoT sentence, or None when it is not one (empty, a fragment, a speaker line)."""
    text = _SPEAKER.sub("", text.split("<|im_end|>")[0].split("\n")[0])
    text = " ".join(text.split()).strip(" \"'")
    letters = sum(ch.isalpha() for ch in text)
    if len(text.split()) < MIN_WORDS or letters < 0.6 * len(text):
        return None
    if text[-1] not in ".!?":
        text += "."
    return text[0].upper() + text[1:]


#: the words every rule-of-thumb is made of; they say nothing about what a rule is about
_FRAME = frozenset(
    "it it's its is are be being been not no never don't doesn't shouldn't should must ought to wrong right good bad "
    "okay ok fine rude nice important kind unkind mean fair unfair acceptable expected normal think thinking say "
    "saying do doing make making let get have has had you your yours you're yourself someone somebody people person "
    "others other everyone anyone something things thing way when if that this the a an and or but of in on for with "
    "about at by from as so because want wanting try trying always all any some can could would will".split()
)


def relevant(rot: str, context: Sequence[str]) -> bool:
    """Whether the rule is about something the dialogue mentions: one of its content words (not the words every
    rule is made of, `_FRAME`) shares a stem with a word of the dialogue. A rule about another situation ("It's
    wrong to make fun of someone else's schoolwork." to a fire-alarm prank) shares none; a general rule of the
    fallback is not checked."""
    return shared_words(rot, context) > 0


def shared_words(rot: str, context: Sequence[str], besides: str | None = None) -> int:
    """How many of the rule's content words (not `_FRAME` words, nor `besides`) share a stem with a word of the
    dialogue. A stereotype rule that says the post's own words ("… women are emotional." to "Women are just too
    emotional to lead") is about the post's stereotype; one that shares only the group is about another."""
    skip = _stem(besides) if besides else None
    content = {_stem(w) for w in _WORD.findall(rot.lower().replace("\u2019", "'"))
               if w not in _FRAME and w not in _FILLER and len(w) > 2}
    said = {_stem(w) for turn in context for w in _WORD.findall(turn.lower())}
    return len((content - {skip}) & said)


#: words that say how, not what: sharing "just" with a post says nothing about its stereotype
_FILLER = frozenset("just really very too also only even still much more most than then such quite".split())


def _same_word(a: str, b: str) -> bool:
    """Forms of one word, loosely: the same first three letters (gay/gays, jews/jewish, women/woman)."""
    a, b = _IRREGULAR.get(a, a), _IRREGULAR.get(b, b)
    return a == b or (min(len(a), len(b)) >= 3 and a[:3] == b[:3])


def _singular(word: str) -> str:
    """A word without its plural ending, strictly (a group word must be the same word: cats are not catholics)."""
    word = _IRREGULAR.get(word, word)
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


def subject(rot: str) -> str | None:
    """Who an RoT of the stereotype form ("It's wrong to think muslims are thieves.") is about: its first word that
    is not generic; None for a rule of another form."""
    match = _ABOUT.match(rot.strip())
    if not match:
        return None
    return next((w for w in _WORD.findall(match["rest"].lower()) if w not in _GENERIC), None)


def stereotyped_groups(rots: Iterable[str], min_count: int = 3) -> frozenset[str]:
    """The words that rules of the stereotype form are about at least `min_count` times in `rots` (the RoT bank's:
    Social Bias Frames' implied statements): who that form is for — black, women, jews, immigrants, …"""
    counts = Counter(who for who in map(subject, rots) if who)
    return frozenset(who for who, n in counts.items() if n >= min_count)


def grounded(rot: str, context: Sequence[str], groups: frozenset[str] | None = None) -> bool:
    """Whether an RoT that says who it is about ("It's wrong to think muslims are thieves.") names someone the
    dialogue names — and, given `groups` (`stereotyped_groups`), a group of people that form is for. A small writer
    trained on Social Bias Frames learns that form well, and then puts a group into contexts that never mention one
    ("I'll just take the money from the register" → "… muslims are thieves"): an insult in the guise of a reason;
    or it fills the form with whatever the dialogue names ("I shot a bald eagle" → "It's wrong to think bald eagles
    are animals."): a tautology in the guise of a reason. Rules of other forms ("You shouldn't steal.") pass."""
    who = subject(rot)
    if who is None:
        return True
    if groups is not None and _singular(who) not in {_singular(group) for group in groups}:
        return False
    return any(_same_word(who, w) for turn in context for w in _WORD.findall(turn.lower()))


class RotWriter:
    """Writes one RoT per context with the adapter in `directory` (a ``rot_writer/`` folder); loads on first use.

    Greedy decoding, so a context always gets the same RoT. `n_threads` defaults to all available cores.
    """

    def __init__(self, directory: str | Path, n_threads: int | None = None, n_parallel: int = 2,
                 groups: frozenset[str] | None = None):
        self.directory = Path(directory)
        self.n_threads = n_threads
        self.n_parallel = n_parallel
        #: who a stereotype-form rule may be about (`grounded`); None: anyone the dialogue names
        self.groups = groups

    @classmethod
    def load(cls, model_dir: str | Path, **settings) -> RotWriter | None:
        """The writer of a model folder, or None where the folder has none (an older Canary-mini)."""
        directory = Path(model_dir) / FOLDER
        return cls(directory, **settings) if (directory / ADAPTER_FILE).is_file() else None

    @cached_property
    def config(self) -> RotWriterConfig:
        return RotWriterConfig.load(self.directory / CONFIG)

    @cached_property
    def lm(self):
        from prosocial.lm.llamacpp import LlamaCppLM

        adapter = self.directory / ADAPTER_FILE
        if not adapter.is_file():
            raise ModelError(f"RoT writer adapter not found: {adapter} (rebuild: prosocial train rot-writer)")
        return LlamaCppLM(lora=adapter, n_ctx=512 * self.n_parallel, n_parallel=self.n_parallel,
                          n_threads=self.n_threads)

    def prompts(self, contexts: Sequence[Sequence[str]]) -> list[str]:
        config = self.config
        out = []
        for i, context in enumerate(contexts):
            turns = clip_context(check_context(context, f"contexts[{i}]"), config.max_prompt_chars, per_turn=12)
            out.append(writer_prompt(turns, config.max_turns))
        return out

    def write(self, contexts: Sequence[Sequence[str]]) -> list[str | None]:
        """One RoT per context, None where the generation is not a usable sentence, names a group the dialogue
        does not (`grounded`) or is about nothing the dialogue mentions (`relevant`). Raises what the LM raises (the
        caller decides the fallback)."""
        if not contexts:
            return []
        texts = self.lm.generate(self.prompts(contexts), max_new_tokens=self.config.max_new_tokens,
                                 temperature=0.0, stop=["\n", "<|im_end|>"])
        rots = []
        for context, text in zip(contexts, texts, strict=True):
            rot = clean_rot(text)
            if rot is not None and not (grounded(rot, context, self.groups) and relevant(rot, context)):
                rot = None
            if rot is None:
                log.info("RoT writer gave no usable rule for %r (wrote %r)", context[-1][:80], text[:80])
            rots.append(rot)
        return rots
