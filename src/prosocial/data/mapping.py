"""How external benchmarks map onto the ProsocialDialog safety schema: every rule in one reviewable place.

The public datasets answer related but different questions (is this offensive? abusive? clearly wrong?),
so each rule below says which ProsocialDialog label it gives and why. Single gold labels map to the ends
of the caution scale; per-annotator votes keep their disagreement through the paper's A.4 idea
(`graded_caution`): the share of annotators who flag a text picks possibly / probably / needs caution,
exactly as one, two or three of three "needs caution" votes do in ProsocialDialog.

================  ==============================  ====================  ====================================
dataset           source value                    safety label          why
================  ==============================  ====================  ====================================
toxichat          comment ``offense_label`` Safe  casual                civil Reddit comment
toxichat          ``offense_label`` Offensive     needs caution         offensive = rude / hurtful, the
                                                                        A.4 "Needs Caution" definition
toxichat          chatbot replies' labels         meta only             they judge bot replies, not users
diasafety         ``category`` Risk Ignorance,    needs intervention    suicidal thoughts, self-harm, an
                  a context re-labelled                                 overdose: A.4 lists "self-harm/
                  intervention (any vote,                               suicide" as intervention. Until
                  A.4's rule)                                           session 21 every Risk Ignorance
                                                                        context was intervention; about
                                                                        two thirds are ordinary distress
diasafety         Risk Ignorance re-labelled      ``graded_caution(s)`` depression, loneliness, a bad day
                  caution / casual by all         (s = share of         with no sign of risk to life: a
                  annotators                      caution votes)        careful reply, not a crisis line
                                                                        (`RISK_IGNORANCE_LABELS`, datasheet
                                                                        there)
diasafety         Risk Ignorance not in the       needs intervention    the category's default
                  re-labelled file
diasafety         Unauthorized Expertise          casual                people asking for medical advice
                  (no medical red flag)                                 (COVID symptoms, medication,
                                                                        asthma). Asking is not an
                                                                        emergency: needs intervention is
                                                                        for someone's safety or life at
                                                                        risk now (§2.3, A.4). Until v4 this
                                                                        row was needs intervention, and the
                                                                        model sent basil-care and flu-shot
                                                                        questions to a crisis line
diasafety         Unauthorized Expertise with a   needs intervention    the context describes a red flag
                  medical red flag                                      (`MEDICAL_RED_FLAG`: trouble
                  (`MEDICAL_RED_FLAG`)                                  breathing, chest pain, fainting,
                                                                        coughing blood …): a doctor or
                                                                        emergency services must step in
diasafety         Toxicity Agreement              needs caution         invites agreeing with toxicity;
                                                                        noisy: only ~43% of its contexts
                                                                        hold an LDNOOBW word
diasafety         Offending User                  needs caution         insults at the interlocutor ("ugly
                                                                        out of shape loser") = rude
diasafety         Biased Opinion                  needs caution         group stereotypes ("Chinese …
                                                                        cheat") = unjust discrimination
diasafety         ``label`` Safe / Unsafe         meta only             it judges the RESPONSE
convabuse         share s of annotators with      ``graded_caution(s)`` K < 0 is abusive (-1 mild … -3
                  severity K < 0 (each            (s=0 casual; s>½      very strong); K = 0 (ambiguous)
                  annotator's most severe         coarse needs          and 1 (not abusive) are no abuse
                  rating counts once)             caution)              votes, as the brief asks
ethics            ``label`` 0                     casual                not clearly wrong
ethics            ``label`` 1                     needs caution         clearly wrong = "violating ethics"
sbic              mean s of ``offensiveYN``       ``graded_caution(s)`` "maybe" (0.5) is half a vote; a
                  (0, 0.5, 1) over annotators                           blank answer is no vote; a post
                  who answered                                          with none gets no label (None)
casual corpora    every utterance                 casual                chit-chat (BST, DailyDialog,
                                                                        EmpatheticDialogues, PersonaChat,
                                                                        Topical-Chat, BYU Chit-Chat)
prosocial_dialog  reply names a human to turn     needs intervention    A.4: "situations needing to call
(partial rows:    to (911, hotline, police,                             911", medical issues, self-harm:
context and the   doctor, professional help)                            the crowdworker sent them to a human
crowdworker's     reply opens approving ("I'm     casual                the speaker accepted the feedback or
reply only)       glad you…", "That's good")                            said something fine (A.4 "casual");
                  with no "but"/"however"                               an approving opening followed by a
                                                                        "but …" push-back is caution
                  reply pushes back: a norm       needs caution         the replies to a problematic turn
                  word (wrong, rude, shouldn't,                         push back, name a norm or ask why
                  illegal, …) or a "why would                           (§2.2 receptiveness strategies)
                  you …?" question
                  none of these                   no label (None)       e.g. "Have you tried moving on?":
                                                                        the reply does not tell
================  ==============================  ====================  ====================================

``graded_caution(s)``: s = 0 → casual; 0 < s ≤ ½ → possibly needs caution; ½ < s < 1 → probably needs
caution; s = 1 → needs caution. With three annotators this is the paper's A.4 rule; "most annotators"
(s > ½) is always coarse needs caution, as is a flagging minority (as one "needs caution" vote of three is).

`prosocial_reply_label` holds the ProsocialDialog rules; the labels are silver (the published labels are not in
the partial files): they say whether the crowdworker *answered* as to a problematic turn.

RoTs come only from SBIC, the paper's way (§3.1, footnote 2), see `stereotype_to_rot`.

Splits (`hash_split`): datasets without their own train/dev files are split 80/20 by a SHA-1 of a stable
key (post text, scenario text, whole dialogue, conversation id), so every prefix of one dialogue lands in
the same split and the split never changes between runs or machines.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

from prosocial.data.labels import SafetyLabel
from prosocial.io import read_jsonl
from prosocial.resources import RESOURCES

TRAIN = "train"
DEV = "dev"
SPLITS: tuple[str, ...] = (TRAIN, DEV)
DEV_FRACTION = 0.2

TOXICHAT_LABELS: dict[str, SafetyLabel] = {
    "Safe": SafetyLabel.CASUAL,
    "Offensive": SafetyLabel.NEEDS_CAUTION,
}

DIASAFETY_LABELS: dict[str, SafetyLabel] = {
    "Risk Ignorance": SafetyLabel.NEEDS_INTERVENTION,
    "Unauthorized Expertise": SafetyLabel.CASUAL,  # unless the context has a MEDICAL_RED_FLAG (diasafety_label)
    "Toxicity Agreement": SafetyLabel.NEEDS_CAUTION,
    "Offending User": SafetyLabel.NEEDS_CAUTION,
    "Biased Opinion": SafetyLabel.NEEDS_CAUTION,
}

ETHICS_LABELS: dict[int, SafetyLabel] = {0: SafetyLabel.CASUAL, 1: SafetyLabel.NEEDS_CAUTION}

#: Symptoms a person describes that call for a doctor or emergency services now, not for advice: the rule that
#: lifts a DiaSafety Unauthorized Expertise context from casual to needs intervention.
MEDICAL_RED_FLAG = re.compile(
    r"\b(((trouble|difficulty|hard|struggling|can'?t|cannot|unable to) (to )?breath(e|ing))|short(ness)? of breath|"
    r"chest (pain|tightness)|(pain|tightness) in (my|the|his|her) chest|"
    r"cough(ing|ed)? (up )?blood|fainted|passed out|unconscious|seizure|can'?t stay awake|"
    r"lips? (are |is |turning )?(blue|grey|gray)|severe bleeding)",
    re.IGNORECASE,
)


#: DiaSafety's Risk Ignorance contexts re-labelled by the paper's definition of needs intervention (session 21):
#: one JSON object per context, ``{"key", "votes", "label", "text"}``; how it was made is in its DATASHEET.md
RISK_IGNORANCE_LABELS = RESOURCES / "diasafety" / "risk_ignorance.jsonl"
RISK_VOTES = ("intervention", "caution", "casual")


def context_key(text: str) -> str:
    """A context's key in the re-labelled files: the first 16 hex digits of the SHA-1 of its text."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def votes_label(votes: Iterable[str]) -> SafetyLabel:
    """The A.4 rule over annotators' votes: a single intervention vote makes needs intervention (a situation that
    needs a human cannot be missed); otherwise the share of caution votes grades the caution (`graded_caution`)."""
    votes = list(votes)
    if not votes or any(v not in RISK_VOTES for v in votes):
        raise ValueError(f"votes must be a non-empty list of {RISK_VOTES}, got {votes}")
    if "intervention" in votes:
        return SafetyLabel.NEEDS_INTERVENTION
    return graded_caution(votes.count("caution") / len(votes))


@functools.cache
def risk_ignorance_labels(path: Path = RISK_IGNORANCE_LABELS) -> dict[str, SafetyLabel]:
    """Context key → label of the re-labelled Risk Ignorance file (empty where the file is absent)."""
    if not path.exists():
        return {}
    labels: dict[str, SafetyLabel] = {}
    for line, row in read_jsonl(path):
        try:
            labels[row["key"]] = SafetyLabel(row["label"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}:{line}: a row needs 'key' and a safety 'label': {error}") from None
    return labels


def diasafety_label(category: str, context: str) -> SafetyLabel | None:
    """A DiaSafety context's label from its category (None for an unknown one); see the table above."""
    label = DIASAFETY_LABELS.get(category)
    if category == "Unauthorized Expertise" and MEDICAL_RED_FLAG.search(context):
        return SafetyLabel.NEEDS_INTERVENTION
    if category == "Risk Ignorance":
        return risk_ignorance_labels().get(context_key(context), label)
    return label


#: ConvAbuse severities K (column suffix of ``AnnotatorN_is_abuse.K``); below 0 is abuse.
CONVABUSE_SEVERITIES: tuple[int, ...] = (1, 0, -1, -2, -3)

#: SBIC ``offensiveYN`` answers: no, maybe, yes.
SBIC_OFFENSIVE_VALUES: tuple[float, ...] = (0.0, 0.5, 1.0)


def hash_split(key: str, dev_fraction: float = DEV_FRACTION) -> str:
    """ "train" or "dev" from a SHA-1 of `key`: deterministic everywhere, unlike Python's salted `hash`."""
    bucket = int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") / 2**64
    return DEV if bucket < dev_fraction else TRAIN


def graded_caution(share: float) -> SafetyLabel:
    """The A.4 vote rule generalised to any number of annotators via the share who flagged the text."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"a share of annotators must be in [0, 1], got {share}")
    if share == 0.0:
        return SafetyLabel.CASUAL
    if share == 1.0:
        return SafetyLabel.NEEDS_CAUTION
    if share > 0.5:
        return SafetyLabel.PROBABLY_NEEDS_CAUTION
    return SafetyLabel.POSSIBLY_NEEDS_CAUTION


#: A reply that hands the speaker to a human: the needs-intervention cue (an action, not a topic word, so a
#: reply scolding a suicide *joke* is not read as an emergency).
_HAND_OVER = re.compile(
    r"\b(call(ing)? 911|911 (immediately|right away|now)|emergency|hotline|lifeline|crisis (line|center|text)|"
    r"poison control|(call|contact|tell|report (it|this|them|him|her) to) (the )?(police|cops|authorities)|"
    r"ambulance|(go to|get to|in) (the|a) hospital|see a doctor|(talk|speak) to a doctor|medical (attention|help)|"
    r"(seek|get|need) (some )?(professional|medical|immediate|urgent) (help|care|attention)|"
    r"mental health professional)\b",
    re.IGNORECASE,
)
#: An approving opening: the speaker accepted the feedback, or said nothing that needs any.
_APPROVAL = re.compile(
    r"^((i'?m|i am) (so |really |very )?(glad|happy|relieved)( that)? (you|to hear)|"
    r"(good|great|nice) (to hear|for you)|"
    r"(that'?s|that is|it'?s|it is) (so |really |very )?(great|good|wonderful|nice|awesome|lovely|admirable|"
    r"a (great|good|nice|wonderful|smart) (idea|thing|plan|way|choice|decision))|"
    r"(that|this) (sounds|seems) (great|good|nice|fun|lovely|like a (good|great|nice|fun))|"
    r"congratulations|congrats|well done|you'?re welcome)\b",
    re.IGNORECASE,
)
_BUT = re.compile(r"\b(but|however|though)\b", re.IGNORECASE)
#: Push-back: a norm word, or a question that asks for the reason behind the act.
_PUSH_BACK = re.compile(
    r"\b(wrong|not (a |very |so )?(ok|okay|right|fair|nice|kind|cool|appropriate|acceptable|good|funny|normal)|rude|"
    r"hurtful|"
    r"mean to|cruel|illegal|against the law|crime|shouldn'?t|should not|should|must not|ought to|don'?t|do not|"
    r"never|unfair|disrespect\w*|dangerous|harm\w*|hurt\w*|inappropriate|offensive|racis\w*|sexis\w*|"
    r"homophob\w*|transphob\w*|bigot\w*|stereotyp\w*|discriminat\w*|bad idea|careful|be (kind|nice|respectful)|"
    r"why would you|why do you|why are you|why did you|why (would|do) (anyone|someone)|is there a reason|"
    r"what makes you|how would you feel|apologi[sz]e|unacceptable|selfish|irresponsible|joke|jokes|joking)\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def prosocial_reply_label(reply: str) -> SafetyLabel | None:
    """A ProsocialDialog context's coarse label read off the crowdworker's reply to it (see the table above).

    The hand-over cue is checked first (intervention cannot be missed, A.4), then an approving opening (casual
    unless a "but" pushes back), then push-back (caution). None when the reply does not tell.
    """
    text = " ".join(reply.split())
    if not text:
        return None
    if _HAND_OVER.search(text):
        return SafetyLabel.NEEDS_INTERVENTION
    first = _SENTENCE_END.split(text, maxsplit=1)[0]
    if _APPROVAL.match(first):
        return SafetyLabel.NEEDS_CAUTION if _BUT.search(text) else SafetyLabel.CASUAL
    if _PUSH_BACK.search(text):
        return SafetyLabel.NEEDS_CAUTION
    return None


def convabuse_label(severities: Iterable[int]) -> SafetyLabel:
    """One most-severe K per annotator; the share with K < 0 (abusive) grades the caution."""
    votes = list(severities)
    if not votes:
        raise ValueError("no annotator rated this turn")
    unknown = [k for k in votes if k not in CONVABUSE_SEVERITIES]
    if unknown:
        raise ValueError(f"unknown ConvAbuse severities {unknown}; expected {list(CONVABUSE_SEVERITIES)}")
    return graded_caution(sum(k < 0 for k in votes) / len(votes))


def sbic_label(offensive: Iterable[float]) -> SafetyLabel:
    """Mean `offensiveYN` over the annotators who answered ("maybe" = 0.5 counts as half a vote)."""
    votes = list(offensive)
    if not votes:
        raise ValueError("no annotator answered offensiveYN")
    unknown = [v for v in votes if v not in SBIC_OFFENSIVE_VALUES]
    if unknown:
        raise ValueError(f"unknown offensiveYN values {unknown}; expected {list(SBIC_OFFENSIVE_VALUES)}")
    return graded_caution(sum(votes) / len(votes))


# --- SBIC implied statements → rules-of-thumb -------------------------------------------------------------
#
# Annotators wrote `targetStereotype` in three shapes (measured on SBFv2.dev.part, 4,854 distinct pairs):
#  * a full statement, "black people are lazy" (most) → "It's wrong to think black people are lazy."
#  * a bare predicate about the target group, "rape women", "are not civilized", "has backward culture",
#    or a placeholder subject "they are criminals" / "group is promiscuous" → the group becomes the subject,
#    with the verb made plural (group names are plural: "police officers", "jewish folks").
#  * a description of what the post does, "trivializes harm to victims", "makes light of …" → a rule about
#    that act, "It's wrong to trivialize harm to victims."; "implies X" → "It's wrong to think X."
# First words are matched from closed lists (no tagger: nltk's needs a download), so the rule is auditable.

_ACTS = {
    "trivializes": "trivialize", "trivializing": "trivialize", "makes": "make", "making": "make",
    "jokes": "joke", "joking": "joke", "belittles": "belittle", "belittling": "belittle",
    "compares": "compare", "comparing": "compare", "calls": "call", "calling": "call",
    "mocks": "mock", "mocking": "mock", "uses": "use", "using": "use", "advocates": "advocate",
    "advocating": "advocate", "minimizes": "minimize", "minimizing": "minimize", "refers": "refer",
    "referring": "refer", "dehumanizes": "dehumanize", "dehumanizing": "dehumanize",
    "promotes": "promote", "promoting": "promote", "insults": "insult", "insulting": "insult",
    "pokes": "poke", "poking": "poke", "encourages": "encourage", "encouraging": "encourage",
}  # fmt: skip
#: Subjects naming the post itself ("it makes a joke of …"), dropped before an act.
_POST_SUBJECTS = ("the post", "this post", "post", "it's", "its", "it")
_IMPLIES = {"implies", "suggests", "insinuates", "says", "thinks", "assumes"}
_PLACEHOLDERS = ("this group", "the group", "group", "they")
_PLURAL = {
    "is": "are", "has": "have", "was": "were", "does": "do", "doesn't": "don't", "isn't": "aren't",
    "wasn't": "weren't", "dont": "don't", "not": "are not",
}  # fmt: skip
#: Bare predicates' first words: auxiliaries, then verbs seen starting subjectless SBIC statements.
_PREDICATE_STARTS = {
    "are", "were", "have", "had", "do", "did", "don't", "didn't", "aren't", "weren't", "can", "can't",
    "cannot", "could", "couldn't", "should", "shouldn't", "will", "won't", "would", "wouldn't", "must",
    "always", "never", "often", "deserve", "get", "like", "love", "want", "need", "belong", "talk",
    "commit", "look", "rape", "hate", "steal", "eat", "smell", "live", "act", "cause", "lack", "abuse",
    "kill", "sell", "spread", "carry", "marry", "date", "cheat", "lie", "smoke", "drink", "sing", "go",
    "taste", "whine", "wear", "break", "turn", "work", "exist", "ride", "abandon", "blow", "breed",
}  # fmt: skip
_PREDICATE_STARTS |= set(_PLURAL)
#: Quantifiers that start a bare predicate only before one ("all ride camels", not "all men hate …").
_QUANTIFIERS = {"all", "only"}
_END_PUNCTUATION = " .!?,;:"
_QUOTES = ('"', "'", "`")


def _verb_base(word: str) -> str:
    """Plural-subject form of a predicate's first word ("is" → "are", "deserves" → "deserve")."""
    if word in _PLURAL:
        return _PLURAL[word]
    for cut in (1, 2):
        if word.endswith("s") and word[:-cut] in _PREDICATE_STARTS:
            return word[:-cut]
    return word


def _is_predicate(words: list[str]) -> bool:
    first = words[0].lower()
    if first in _QUANTIFIERS:
        return len(words) > 1 and _is_predicate(words[1:])
    return first in _PREDICATE_STARTS or _verb_base(first) != first


def group_phrase(target_minority: str) -> str:
    """A `targetMinority` list as a phrase: "women, trans women" → "women and trans women"."""
    groups = [g.strip() for g in target_minority.split(",") if g.strip()]
    if len(groups) <= 1:
        return "".join(groups)
    return ", ".join(groups[:-1]) + " and " + groups[-1]


def _clean_statement(stereotype: str) -> str:
    text = " ".join(stereotype.split()).rstrip(_END_PUNCTUATION)
    while len(text) > 1 and text[0] == text[-1] and text[0] in _QUOTES:
        text = text[1:-1].strip().rstrip(_END_PUNCTUATION)
    return text


def stereotype_to_rot(stereotype: str, target_minority: str = "") -> str | None:
    """An SBIC implied statement as a rule-of-thumb (paper §3.1, footnote 2).

    None when empty, or when it lacks a subject and there is no target group to supply one.

    "Asians are not suitable for Hollywood movies" → "It's wrong to think Asians are not suitable for
    Hollywood movies."; with target "police officers", "rape women" → "It's wrong to think police officers
    rape women."
    """
    text = _clean_statement(stereotype)
    if not text:
        return None
    for subject in _POST_SUBJECTS:
        rest = text[len(subject) + 1 :].split(" ")
        if text.lower().startswith(subject + " ") and rest[0].lower() in _ACTS:
            text = " ".join(rest)
            break
    words = text.split(" ")
    first = words[0].lower()
    if first in _ACTS and len(words) > 1:
        return f"It's wrong to {_ACTS[first]} {' '.join(words[1:])}."
    if first in _IMPLIES and len(words) > 1:
        rest = words[2:] if words[1].lower() == "that" and len(words) > 2 else words[1:]
        return f"It's wrong to think {' '.join(rest)}."
    group = group_phrase(target_minority)
    placeholder = next((p for p in _PLACEHOLDERS if text.lower().startswith(p + " ")), None)
    if placeholder:
        words = text[len(placeholder) + 1 :].split(" ")
    if placeholder or _is_predicate(words):
        return f"It's wrong to think {group} {_predicate(words)}." if group else None
    if len(words) == 1:  # a bare adjective or noun: "worthless", "criminals"
        return f"It's wrong to think {group} are {text}." if group else None
    return f"It's wrong to think {text}."


def _predicate(words: list[str]) -> str:
    """The predicate with its first word agreeing with a plural group ("has backward culture" → "have …")."""
    return " ".join([_verb_base(words[0].lower()), *words[1:]])


def dedupe(rots: Iterable[str | None]) -> list[str]:
    """Drop empties and case-insensitive repeats, keeping first-seen order (annotators often agree)."""
    seen: set[str] = set()
    out: list[str] = []
    for rot in rots:
        if rot and rot.lower() not in seen:
            seen.add(rot.lower())
            out.append(rot)
    return out
