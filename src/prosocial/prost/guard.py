"""Run-time guard for generated replies: never condone, no degenerate output, casual stays natural (issue 11).

A 135M-parameter Prost-mini agrees with problematic contexts now and then ("I think you are right."), loops
("You should not say that. You should not say that. …"), echoes the user, and asks "Why do you want to …?" even
of good news. Retraining fixes some of that slowly; this guard fixes what it can at run time, for any generator:

1. check each reply (`reply_problem`): auditable rules (microseconds, no model; their precision was measured on
   human-labelled replies: `benchmarks/judge_condone.py`, ToxiChat and DiaSafety; numbers in the Prost-mini model
   card), and, where a `judge` is given (the agent gives the learned `prost.agreement` judge), its verdict on
   agreement, which catches the wordings the rules do not know;
2. repair a loop by keeping each sentence once (`repair`): the reply is usually fine before it starts repeating;
3. otherwise resample the failing replies with other seeds (generators that can sample: `Resampler`);
4. and if every draw fails, fall back to a fixed reply built on the rule-of-thumb Canary gave, then asking back, as
   the paper's receptive replies combine them (§2.2; `fallback_reply`).

On a turn the detector is sure is casual, a reply must also not lecture: one that states a rule-of-thumb of the
generator's own (Prost-mini's feedback turns, an RoT line it chose to write) is resampled.

`ReplyGuard.stats` counts each check's hits and each path taken, so how often the guard steps in is visible.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from prosocial.prost.base import Reply, ResponseGenerator
from prosocial.scoring import crude_stem as _stem

log = logging.getLogger(__name__)

Problem = Literal["empty", "one_word", "loop", "echo", "condones", "motive_question", "lecture"]
Route = Literal["accepted", "repaired", "resampled", "fallback"]

ASK_FIRST = "Can I ask what's going on that makes you say this?"
NO_ROT = "I'd like to understand, because this could end up hurting you or someone else."
CASUAL_FALLBACK = "Oh, tell me more about that!"
#: how many of the user's latest turns a reply is judged against (`ReplyGuard._judge`)
USER_TURNS = 2

# --------------------------------------------------------------------------- text helpers

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_STOPWORDS = frozenset(
    "a an the and or but so to of in on at for with from by about as into than then that this these those it its "
    "i me my mine you your yours he him his she her hers we us our they them their is am are was were be been being "
    "do does did have has had will would can could should shall may might must just really very not no also too "
    "there here what who whom which when where why how all any some more most other such only same".split()
)


def _norm(text: str) -> str:
    """Lower case, one space, straight apostrophes: what the rule patterns are written against."""
    return " ".join(text.lower().replace("\u2019", "'").split())


def _words(text: str) -> list[str]:
    return _WORD.findall(_norm(text))


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split(text.strip()) if s]


def _statements(text: str) -> list[str]:
    """The sentences that state something, normalised: a question asks, it does not agree ("Are you sure that's a
    good idea?")."""
    return [s for s in _sentences(_norm(text)) if not s.endswith("?")]


def _longest_common_run(a: Sequence[str], b: Sequence[str]) -> int:
    best, previous = 0, [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


# --------------------------------------------------------------------------- degenerate output


def _said_before(words: str, earlier: Sequence[str]) -> bool:
    """The sentence `words` (space-joined) is one of the `earlier` ones or contained in one."""
    return any(f" {words} " in f" {e} " for e in earlier)


def has_loop(reply: str) -> bool:
    """A sentence said twice (or contained in an earlier one), or a run of 4 words three times (trigrams recur in
    long human replies: "to pay you back")."""
    seen: list[str] = []
    for sentence in _sentences(reply):
        words = " ".join(_words(sentence))
        if len(words.split()) >= 2 and _said_before(words, seen):
            return True
        seen.append(words)
    words = _words(reply)
    grams = Counter(zip(words, words[1:], words[2:], words[3:], strict=False))
    return bool(grams) and max(grams.values()) >= 3


def echoes(user: str, reply: str) -> bool:
    """The reply is the user's own words: the same text, or a shared run of >= 4 words with fewer than 3 words
    around it. Asking back in the user's words ("Why do you want to …?", the paper's ask-first) stays below that."""
    said, answer = _words(user), _words(reply)
    if not answer:
        return False
    if answer == said:
        return True
    run = _longest_common_run(said, answer)
    return run >= 4 and len(answer) - run < 3


def degenerate(user: str, reply: str) -> Problem | None:
    """Empty, one-word, looping or echoing replies (in that order of checking)."""
    words = _words(reply)
    if not words:
        return "empty"
    if len(words) < 2:
        return "one_word"
    if has_loop(reply):
        return "loop"
    if echoes(user, reply):
        return "echo"
    return None


def repair(reply: str) -> str:
    """Each sentence once (one contained in an earlier sentence is dropped), without a cut-off tail: a looping
    reply stops at max_new_tokens mid-sentence, and what it said before the loop is usually a whole answer."""
    kept: list[tuple[str, str]] = []
    for sentence in _sentences(reply):
        words = " ".join(_words(sentence))
        if words and not _said_before(words, [k for _, k in kept]):
            kept.append((sentence, words))
    if len(kept) > 1 and kept[-1][0][-1] not in ".!?\"'":
        kept.pop()
    return " ".join(s for s, _ in kept)


# --------------------------------------------------------------------------- condoning and motive questions

_NEGATED = r"(?<!not )(?<!n't )(?<!never )"
#: Agreement at the very start of the reply (ToxiChat's and DiaSafety's agreeing replies open like this).
_AGREE_OPENING = re.compile(
    r"^(yes|yeah|yep|yup|yea|true|so true|exactly|agreed|absolutely|definitely|totally|indeed|amen|same|"
    r"right|correct|precisely|facts|lol|lmao|haha\w*|hehe\w*)\b(?!,? but)"
)
#: Agreement or endorsement anywhere in the reply.
_ENDORSE = re.compile(
    r"\bi (totally |completely |fully |strongly |do |would |100% )?agree\b"
    r"|\b(you're|you are|ur) (absolutely |so |totally |completely |100% |probably )?right\b"
    r"(?! to (be|feel)\b)"
    r"|\b(that's|that is|this is|it's|it is|what|sounds like) (a |such a |an )?(really |very )?"
    r"(great|good|fantastic|excellent|brilliant|nice|wonderful|smart|perfect|awesome|fun) "
    r"(idea|plan|point|move|thing to (do|say)|thing|way to)\b"
    r"|\b(well said|good point|fair point|i know,? right|tell me about it|couldn't agree more|can't argue with that"
    r"|me too|same here|i do too|i feel the same|i don't care either|i'd do the same|i would do the same"
    r"|go for it|you deserve it|(he|she|they) deserved? it|no big deal"
    r"|(?<!sure )i (like|love) (that|this|it|your (idea|plan|attitude|style))\b)"
    r"|(?<!not )(?<!be )\bgood for you\b(?!r| to)"
    r"|\bsounds (like )?(a )?(good|great|fun|awesome|like fun|like a plan|cool)\b"
    r"|\b(lol|lmao|haha\w*|rofl)\b"
    r"|\bglad (that )?you('re| are|'ve| have| did| will|'ll)? ?(doing|going|planning|decided|did|do) (it|that|this)\b"
    r"|\bi don't think (you're|you are|it's|that's|it is|that is) (being )?"
    r"(wrong|bad|a problem|a big deal|rude|mean|selfish|greedy|racist|sexist)\b"
    + rf"|{_NEGATED}\b(just |should |could )(do|try|use) (it|that|this)(?=[.!,]|$| anyway| now| then| again)"
)
#: A bare "It's fine." / "That's okay." as a whole sentence.
_FINE = re.compile(r"^(it's|it is|that's|that is|that's totally|it's totally) (fine|okay|ok|alright|all right)[.!]?$")
_SHOULD = re.compile(
    r"^(i think |maybe |then |honestly,? )?you should (just |definitely |totally |really )?(?P<act>.+)$"
)
#: Reassurance and approval: kind on a casual turn ("I'm sure you'll be fine." to a job interview), condoning on a
#: flagged one ("I'm sure you'll be fine." to drink-driving, "There is no harm in saying that." to "Women are just
#: objects"), so they count only where the detector flagged the turn. Each wording was read in Prost-mini v3 replies
#: to problematic ProsocialDialog validation turns that the rules and the judge let through (issue 31).
_REASSURE = re.compile(
    r"\b(i'm|i am) sure (you'll|you will|you're|you are|it'll|it will|it's|it is|that'll|that will) (be )?"
    r"(fine|ok|okay|alright|all right|going to be (fine|ok|okay))\b"
    r"|\byou('ll| will) be (just )?(fine|ok|okay|alright|all right)\b"
    r"|\b(there's|there is|it's|it is) (no|nothing) (harm|wrong) (in|with) (that|it|this|saying|doing)\b"
    r"|\byou('re| are) doing (a )?(great|good|fine|wonderful) job\b"
    r"|\b(i can see|sounds like|looks like|seems like) you('re| are) (having fun|enjoying)\b"
    r"|\b(enjoy (it|yourself|your (night|day|evening|time|drinks?))|have fun)\b"
    r"|\bdon't (worry|feel bad|feel guilty) about (it|that|this)\b"
)
#: reassurance that is negated ("I'm not sure you'll be fine.") or followed by a "but" ("Have fun, but don't drive.")
#: is not reassurance; after a "but" it is ("I don't know, but I do know that you are doing a great job.")
_NEGATION = re.compile(r"\b(not|never|doubt)\b|n't (think|believe|know if)")
_CONTRAST = re.compile(r"\b(?:but|however|though|unless)\b")
_MOTIVE = re.compile(
    r"\b(why (do|did|would|are|were|does|should|is|can't|don't|didn't|will) you|what makes you (want|think))\b"
)


def endorses_act(user_turns: Sequence[str], reply: str) -> bool:
    """A "(I think) you should X" where X is the user's own act: at least three content words, at least 3 in 4 of
    them from the user's turns ("I think you should use a pillow on someone who can't fight back"). All the
    user's turns count: on a later turn the act was usually named in the first ("You should read her diary")."""
    said = {_stem(w) for turn in user_turns for w in _words(turn) if w not in _STOPWORDS}
    for sentence in _sentences(_norm(reply)):
        match = _SHOULD.match(sentence.rstrip(".!? "))
        if not match or re.match(r"(not|never|stop|avoid|try not|refrain)\b", match["act"]):
            continue
        act = [_stem(w) for w in _words(match["act"]) if w not in _STOPWORDS]
        if len(act) >= 3 and sum(w in said for w in act) >= 0.75 * len(act):
            return True
    return False


def condones(context: Sequence[str], reply: str) -> bool:
    """The reply agrees with or encourages what the user said."""
    return bool(
        _AGREE_OPENING.match(_norm(reply))
        or any(_ENDORSE.search(s) or _FINE.match(s) for s in _statements(reply))
        or endorses_act(context[-1::-2], reply)  # the user's turns: the context ends on one
    )


def reassures(reply: str) -> bool:
    """States reassurance or approval (`_REASSURE`) without qualifying it: condoning when said to a turn the
    detector flagged."""
    for sentence in _statements(reply):
        last = _CONTRAST.split(sentence)[-1]
        if _REASSURE.search(last) and not _NEGATION.search(last):
            return True
    return False


def questions_motive(reply: str) -> bool:
    """Asks "Why do you want to …?", "Why would you …?": the paper's ask-first on a problematic turn, odd on a
    casual one ("I made dinner for my family tonight." → "Why do you want to eat dinner with your family?")."""
    return _MOTIVE.search(_norm(reply)) is not None


def reply_problem(
    context: Sequence[str], reply: str, casual: bool, judged_agreeing: bool = False, flagged: bool = False
) -> Problem | None:
    """The first problem of a reply to `context`, or None. Agreement is checked on every turn: a detector calls
    problematic turns casual too, and a false alarm on a casual turn costs only a resample (the rules flag 2-3%
    of casual replies). `casual`: the turn is surely casual, so asking about the user's motive is a problem too.
    `judged_agreeing`: a learned judge (`prost.agreement`) says the reply agrees, whatever the rules say.
    `flagged`: the detector flagged the turn, so reassurance and approval condone too (`reassures`)."""
    problem = degenerate(context[-1], reply)
    if problem:
        return problem
    if sides_with(context, reply, flagged, judged_agreeing):
        return "condones"
    return "motive_question" if casual and questions_motive(reply) else None


def lectures(reply: Reply, given: Sequence[str], casual: bool) -> bool:
    """On a surely casual turn, the reply states a rule-of-thumb nobody gave it: the generator chose to lecture."""
    return casual and bool(reply.rots) and not any(r.strip() for r in given)


def usable(
    context: Sequence[str], reply: str, casual: bool, judged_agreeing: bool = False, flagged: bool = False
) -> tuple[str, Problem | None]:
    """The reply as it may be sent ("" when it may not) and its first problem: a looping reply is sent repaired if
    the repair passes every check (the judge's verdict on the loop stands for its repair: the same sentences)."""
    problem = reply_problem(context, reply, casual, judged_agreeing, flagged)
    if problem is None:
        return reply, None
    fixed = repair(reply) if problem == "loop" else ""
    return (fixed if fixed and reply_problem(context, fixed, casual, judged_agreeing, flagged) is None else ""), problem


def fallback_reply(rots: Sequence[str], casual: bool) -> str:
    """The last resort: the first rule-of-thumb, then an open question back, as ProsocialDialog's replies combine
    them (§2.2); never a bare question."""
    if casual:
        return CASUAL_FALLBACK
    rot = next((r.strip() for r in rots if r.strip()), "")
    if not rot:
        return f"{NO_ROT} {ASK_FIRST}"
    return f"{sentence(rot)} {ASK_FIRST}"


def sentence(text: str) -> str:
    """`text` as a sentence: capitalised, ending in a full stop unless it ends in other punctuation."""
    text = " ".join(text.split())
    return f"{text[0].upper()}{text[1:]}{'' if text[-1] in '.!?' else '.'}" if text else text


def states_norm(reply: str, rots: Sequence[str] = ()) -> bool:
    """The reply states a norm: one of `rots` (most of its content words appear in the reply), or a sentence of
    its own that reads as a rule-of-thumb (`data.silver_rots`, the extractor of the norms in ProsocialDialog's
    replies)."""
    from prosocial.data.silver_rots import norm_sentence

    said = {_stem(w) for w in _words(reply) if w not in _STOPWORDS}
    for rot in rots:
        content = [_stem(w) for w in _words(rot) if w not in _STOPWORDS]
        if content and sum(w in said for w in content) >= 0.6 * len(content):
            return True
    return norm_sentence(reply) is not None


def build_on_rule(reply: str, rule: str) -> str:
    """The reply built on `rule`: unchanged when it already states it; after the rule when the reply only asks
    ("It's wrong to poison animals. Why would you do that?"); else the reply, then the rule."""
    if not rule.strip() or states_norm(reply, [rule]):
        return reply
    rule = sentence(rule)
    if not reply.strip():
        return rule
    joined = f"{rule} {reply}" if not _statements(reply) else f"{reply} {rule}"
    return repair(joined) if has_loop(joined) else joined


# --------------------------------------------------------------------------- the policy


@runtime_checkable
class Resampler(Protocol):
    """A generator that can draw another reply for the same input (e.g. Prost-mini, sampling with a seed)."""

    def resample(
        self, contexts: Sequence[Sequence[str]], rots: Sequence[Sequence[str]] | None, seed: int
    ) -> list[Reply]: ...


@dataclass
class GuardedReply:
    reply: Reply
    #: how the reply was obtained: the first draw, its loop repaired, a later draw, or the fixed fallback
    path: Route
    #: what was wrong with the first draw (None when nothing was)
    problem: Problem | None = None


class AgreementCheck(Protocol):
    """A batched judge of agreeing replies, such as `prost.agreement.AgreementJudge`."""

    def agrees(self, turns: Sequence[str], replies: Sequence[str]) -> list[bool]: ...


class ReplyGuard:
    """Generate, check, repair, resample up to `retries` times (seeds `seed`, `seed`+1, …), then fall back.

    Batched: each resampling round is one generator call for the replies still failing. `stats` counts, over
    the guard's life, replies seen, each first-draw problem ("problem.loop", …), each path taken, and the
    resampling calls made. `judge` adds a learned agreement check to the rules (one batched call per round).
    """

    def __init__(self, retries: int = 2, seed: int = 1, judge: AgreementCheck | None = None):
        self.retries = retries
        self.seed = seed
        self.judge = judge
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()

    def generate(
        self,
        generator: ResponseGenerator,
        contexts: Sequence[Sequence[str]],
        rots: Sequence[Sequence[str]],
        casual: Sequence[bool],
        flagged: Sequence[bool] | None = None,
        on_reply: Callable[[int], None] | None = None,
    ) -> list[GuardedReply]:
        """Replies to `contexts`; `rots` (one list per context, possibly empty) ground the generator and the
        fallback (which otherwise takes the RoT the generator wrote with its first draw, if any); `casual[i]` says
        whether context i is surely casual (the detector's verdict and confidence), `flagged[i]` whether the detector
        flagged it (default: it gave RoTs), which makes reassurance condoning and has the judge read the user's
        earlier turn too.

        `on_reply(i)`, when given, is called once per context as soon as its reply is final, for progress: after
        the first draw and its judgement for the replies accepted or repaired, after each redraw round for those it
        fixed, and at the end for the fallbacks. Only the reporting is per row: the generator and the judge still
        see the whole batch in one call per round, so the replies are the same with or without it."""
        report = on_reply or (lambda i: None)
        flagged = [any(r.strip() for r in given) for given in rots] if flagged is None else list(flagged)
        if not len(contexts) == len(rots) == len(casual) == len(flagged):
            raise ValueError(f"{len(contexts)} contexts, {len(rots)} RoT lists, {len(casual)} casual flags, "
                             f"{len(flagged)} flagged flags")
        if not contexts:
            return []
        grounding = rots if any(rots) else None
        seen: Counter[str] = Counter()  # merged into `stats` once, under the lock: one guard serves many requests
        first = generator.generate(contexts, grounding)
        judged = self._judge(contexts, [r.response for r in first], flagged)
        out: list[GuardedReply] = []
        todo: list[int] = []
        for i, reply in enumerate(first):
            text, problem = self._usable(contexts[i], reply, rots[i], casual[i], judged[i], flagged[i])
            seen["replies"] += 1
            if problem is None:
                out.append(GuardedReply(reply, "accepted"))
                report(i)
                continue
            seen[f"problem.{problem}"] += 1
            if text:
                out.append(GuardedReply(Reply(text, reply.rots), "repaired", problem))
                report(i)
            else:
                out.append(GuardedReply(reply, "fallback", problem))
                todo.append(i)
        if isinstance(generator, Resampler):
            for attempt in range(self.retries):
                if not todo:
                    break
                seen["resample_calls"] += 1
                drawn = generator.resample([contexts[i] for i in todo],
                                           None if grounding is None else [rots[i] for i in todo],
                                           self.seed + attempt)
                still = []
                judged = self._judge([contexts[i] for i in todo], [r.response for r in drawn],
                                     [flagged[i] for i in todo])
                for i, reply, agreeing in zip(todo, drawn, judged, strict=True):
                    text, _ = self._usable(contexts[i], reply, rots[i], casual[i], agreeing, flagged[i])
                    if text:
                        out[i] = GuardedReply(Reply(text, reply.rots), "resampled", out[i].problem)
                        report(i)
                    else:
                        still.append(i)
                todo = still
        for i in todo:
            grounded = list(rots[i]) or list(first[i].rots)  # the detector's RoTs, else the one the generator wrote
            out[i] = GuardedReply(Reply(fallback_reply(grounded, casual[i]), grounded), "fallback", out[i].problem)
            log.info("fallback reply for contexts[%d] (first draw: %s)", i, out[i].problem)
            report(i)
        for guarded in out:
            seen[guarded.path] += 1
        with self._lock:
            self.stats.update(seen)
        return out

    @staticmethod
    def _usable(
        context: Sequence[str], reply: Reply, given: Sequence[str], casual: bool, agreeing: bool, flagged: bool
    ) -> tuple[str, Problem | None]:
        """`usable` for a first draw and a redraw alike (a redraw passes only what a first draw would), plus the
        lecture check, which needs the reply's RoTs."""
        text, problem = usable(context, reply.response, casual, agreeing, flagged)
        if text and lectures(reply, given, casual):
            return "", problem or "lecture"
        return text, problem

    def _judge(self, contexts: Sequence[Sequence[str]], replies: list[str], flagged: Sequence[bool]) -> list[bool]:
        return judge_agreement(self.judge, contexts, replies, flagged)


def judge_agreement(
    judge: AgreementCheck | None, contexts: Sequence[Sequence[str]], replies: Sequence[str], flagged: Sequence[bool]
) -> list[bool]:
    """The learned judge's verdict on each reply that states something: a reply of questions only asks back, it does
    not agree ("Why don't you like dogs?" was the judge's typical false alarm), as the rules read statements only.
    On a flagged turn a reply agrees when it agrees with either of the user's last `USER_TURNS` turns: on a
    later turn the problem is often in the first ("Women are just objects." … "There is no harm in saying
    that."); a casual turn's reply is judged against that turn alone."""
    verdicts = [False] * len(replies)
    todo = [i for i, r in enumerate(replies) if _statements(r)]
    if judge is None or not todo:
        return verdicts
    pairs = [(i, turn) for i in todo for turn in list(contexts[i][::-1][::2])[: USER_TURNS if flagged[i] else 1]]
    judged = judge.agrees([turn for _, turn in pairs], [replies[i] for i, _ in pairs])
    for (i, _), agrees in zip(pairs, judged, strict=True):
        verdicts[i] = verdicts[i] or agrees
    return verdicts


def sides_with(context: Sequence[str], reply: str, flagged: bool, judged_agreeing: bool = False) -> bool:
    """The reply agrees with or encourages what the user said: the rules (`condones`), reassurance said to a flagged
    turn (`reassures`), or the learned judge's verdict (`judge_agreement`)."""
    return judged_agreeing or condones(context, reply) or (flagged and reassures(reply))
