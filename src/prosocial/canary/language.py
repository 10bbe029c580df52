"""Know what you cannot judge: text the models cannot read gets a stated policy, never a confident "casual".

The shipped detectors were trained and measured on English only (their model cards say so). Shown "Me voy a
suicidar esta noche" they see unknown words and say casual, and a guard proxy would forward it unguided. So
`LanguageGuard` wraps any detector, as `NormedDetector` does for norms:

1. every turn of a context is `decode`d first (`prosocial.data.decode`): base64, hex and ROT13 payloads are judged
   as the text they decode to, as an LLM would read them;
2. the context's language is identified (`prosocial.data.language.context_language`: the last turn, or the turns
   before it when that is too short to tell) and reported in `Verdict.language`;
3. a context in a language the models do not read (`SUPPORTED`), or whose last turn is an encoded payload that
   decodes to nothing readable, is decided by the policy:

   - ``flag`` (the default): needs caution, with `UNSUPPORTED_ROT` and `CAREFUL_ROT` as its RoTs, so the proxy
     guides the LLM to answer with care and the agent says it cannot help safely in that language
     (`UNSUPPORTED_REPLY`). The base detector's needs-intervention verdict is never lowered (its RoTs and danger
     category are kept after ours);
   - ``pass``: the base detector's verdict as it is, for a deployment that chose to accept it; the verdict says
     so (`language_policy: "pass"`);
   - ``judge``: the context goes to a judge that reads the language (an LLM judge, issue #34). No such backend
     exists yet, so asking for it without a `judge` is an error before anything runs (`check_policy`).

Cost: decoding and identification take about 0.1 ms a context (fastText), beside milliseconds for the detector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from prosocial.canary.base import SafetyDetector, Verdict
from prosocial.data import language
from prosocial.data.context import check_context
from prosocial.data.decode import decode
from prosocial.data.labels import SafetyLabel

POLICIES = ("flag", "pass", "judge")
DEFAULT_POLICY = "flag"
#: the reason a flagged verdict gives first: the user's side of it
UNSUPPORTED_ROT = ("I can only judge English text safely; please write in English or get help from someone who "
                   "speaks your language.")
#: the guidance the guard proxy gives an LLM with it
CAREFUL_ROT = ("It's important to answer with extra care when a message could not be checked for safety, and not to "
               "encourage anything that could hurt someone.")
#: what the agent says instead of a generated reply
UNSUPPORTED_REPLY = ("I'm sorry, I can only talk about this safely in English. Please write to me in English, or get "
                     "help from someone who speaks your language. If anyone is in danger, call your local emergency "
                     "number.")
POLICY_HELP = ("What to do with text the models cannot read (not English, or an encoded payload that decodes to "
               "nothing readable): flag (needs caution, the default), pass (the detector's verdict as it is, marked "
               "in the verdict) or judge (an LLM judge; not wired in yet).")


def check_policy(policy: str, judge: SafetyDetector | None = None) -> str:
    """The policy, or a ValueError that says what is wrong (an unknown name; judge without a judge)."""
    if policy not in POLICIES:
        raise ValueError(f"unsupported_language: unknown policy {policy!r}; known: {', '.join(POLICIES)}")
    if policy == "judge" and judge is None:
        raise ValueError("unsupported_language: 'judge' needs an LLM judge for text the models cannot read, and none "
                         "is configured (the llm-judge backend exists but is not wired into this policy yet); use "
                         "'flag' or 'pass'")
    return policy


def flagged(verdict: Verdict, with_rots: bool = True) -> Verdict:
    """The ``flag`` policy's verdict: at least needs caution, our reason first."""
    label = max(verdict.safety_label, SafetyLabel.NEEDS_CAUTION)
    kept = label is SafetyLabel.NEEDS_INTERVENTION  # the base detector saw an emergency: keep what it said
    rots = [UNSUPPORTED_ROT, CAREFUL_ROT, *(verdict.rots if kept else [])] if with_rots else []
    return replace(verdict, safety_label=label, rots=rots, danger=verdict.danger if kept else None,
                   language_policy="flag")


class LanguageGuard(SafetyDetector):
    """Any detector, with language identification, decoding and the unsupported-language policy on top
    (`load_detector(name, unsupported_language="flag")` builds one). `judge` is the detector for ``judge``;
    `languages` are the ISO 639-1 codes the base detector reads (a Canary-mini built on a multilingual encoder,
    `prosocial train canary-mini --encoder FOLDER`, reads more than the shipped English-only one)."""

    name = "language-guard"

    def __init__(self, base: SafetyDetector, policy: str = DEFAULT_POLICY, judge: SafetyDetector | None = None,
                 languages: Sequence[str] = language.SUPPORTED):
        self.base = base
        self.policy = policy
        self.judge = judge
        self.languages = languages

    def load(self) -> LanguageGuard:
        """Check the policy and load the language model now (a service does this before it says it is ready)."""
        check_policy(self.policy, self.judge)
        language.load()
        return self

    def warm_up(self) -> None:
        self.base.warm_up()
        self.load()
        if self.judge is not None:
            self.judge.warm_up()

    def predict(self, contexts: Sequence[Sequence[str]], with_rots: bool = True) -> list[Verdict]:
        check_policy(self.policy, self.judge)
        if not contexts:
            return []
        readings = [[decode(t) for t in check_context(c, f"contexts[{i}]")] for i, c in enumerate(contexts)]
        judged = [[r.text for r in turns] for turns in readings]
        # an undecodable payload is in no language (fastText still names one for its letters)
        languages = [language.Language(None) if turns[-1].unreadable else language.context_language(c)
                     for turns, c in zip(readings, judged, strict=True)]
        unreadable = [(lang.code is not None and lang.code not in self.languages) or turns[-1].unreadable
                      for lang, turns in zip(languages, readings, strict=True)]
        to_judge = [i for i, u in enumerate(unreadable) if u] if self.policy == "judge" else []
        judged_elsewhere = set(to_judge)
        to_base = [i for i in range(len(judged)) if i not in judged_elsewhere]
        verdicts: dict[int, Verdict] = {}
        if to_base:
            verdicts |= dict(zip(to_base, self.base.predict([judged[i] for i in to_base], with_rots), strict=True))
        if to_judge:
            assert self.judge is not None
            found = self.judge.predict([judged[i] for i in to_judge], with_rots)
            verdicts |= {i: replace(v, language_policy="judge") for i, v in zip(to_judge, found, strict=True)}
        out = []
        for i, (lang, turns) in enumerate(zip(languages, readings, strict=True)):
            encodings = [e for r in turns for e in r.encodings]
            verdict = replace(verdicts[i], language=lang.code, decoded="+".join(encodings) or None)
            if unreadable[i] and self.policy == "flag":
                verdict = flagged(verdict, with_rots)
            elif unreadable[i] and self.policy == "pass":
                verdict = replace(verdict, language_policy="pass")
            out.append(verdict)
        return out
