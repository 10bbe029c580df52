"""Silver rules-of-thumb: the norm sentence a ProsocialDialog crowdworker wrote into a reply.

The partial ProsocialDialog release has no RoT field, but its replies were written to explain an RoT (paper §3.2)
and usually state it: "Having hate for people regardless of disability is wrong.", "It is okay to be hungry
while shopping but you should wait to pay before eating anything.", "People should be considerate when getting
pets". `norm_sentence` picks that sentence, or returns None when the reply only asks ("Why would you do that?") or
advises without a norm. Rules, strongest first (the first that matches a sentence wins; among sentences, the
strongest rule wins, then the earliest sentence, then the shortest clause):

1. a judgement of an act, stated first: "It's / It is / That's [not] <judgement> to|for|when|if|that ...";
2. any "It's / It is <a few words> to ..." ("It is advisable to let someone pass", "It's awful to think ...");
3. a judgement of an act, stated last: "... is|are [not] <judgement> [and <judgement>].";
4. a norm for people in general: "People / Everyone / Nobody / One / Parents ... should|must|need to ...";
5. a norm addressed to the speaker: "You should|shouldn't|must|need to|ought to ...";
6. an imperative: "Don't / Do not / Never / Always ...".

A norm may open a later clause ("That depends on the age difference, but it's not normal to ..."): the clause
is taken from there. Questions and bare reactions ("That is fine.") are never norms. A leading "But", "And",
"So", "Also", "I think (that)" is dropped and the first letter capitalised, so the sentence reads as an RoT.
Sentences longer than `MAX_WORDS` are skipped (they are advice paragraphs, not rules). Measured precision and
coverage are in the Prost-mini model card.
"""

from __future__ import annotations

import re

MAX_WORDS = 30
JUDGEMENTS = (
    "wrong|right|bad|good|okay|ok|fine|important|rude|mean|unkind|kind|nice|normal|acceptable|unacceptable|"
    "appropriate|inappropriate|illegal|dangerous|polite|impolite|hurtful|cruel|unfair|fair|reasonable|healthy|"
    "unhealthy|selfish|irresponsible|responsible|respectful|disrespectful|harmful|offensive|racist|sexist|"
    "immoral|unethical|ethical|cool|safe|unsafe|risky|best|better|wise|unwise|smart|great|understandable|"
    "natural|common|courteous|considerate|inconsiderate|thoughtful|hateful|insensitive|abusive|creepy|"
    "disgusting|gross|petty|childish|toxic|manipulative|a good idea|a bad idea|never okay|never ok|never right|"
    "alright|all right|not cool|not your place|your right|a crime|against the law"
)
_JUDGED_ACT = re.compile(
    rf"^(it'?s|it is|that'?s|that is|it can be|it would be|it was)\s+(\w+\s+)?(not\s+)?(an?\s+)?(very\s+|really\s+|"
    rf"always\s+|never\s+|so\s+)?({JUDGEMENTS})\b.*\b(to|for|when|if|that)\b", re.IGNORECASE)
_IT_IS_TO = re.compile(r"^(it'?s|it is|it can be|it would be|it was)\s+([\w']+\s+){1,4}?(to|for \w+ to)\s",
                       re.IGNORECASE)
_ADVERB = r"(very\s+|really\s+|never\s+|always\s+|so\s+|just\s+|quite\s+|extremely\s+)?"
_ACT_JUDGED = re.compile(
    rf"\b(is|are|isn't|aren't)\s+(not\s+)?{_ADVERB}({JUDGEMENTS})(\s+(and|or)\s+{_ADVERB}({JUDGEMENTS}))?[.!]?$",
    re.IGNORECASE)
_GENERAL_NORM = re.compile(
    r"^(people|everyone|everybody|no one|nobody|one|we|parents|friends|kids|children|adults|others|someone|"
    r"a person|a good friend|employees|partners|couples)\b[\w\s']{0,30}?\b(should|shouldn't|should not|must|"
    r"mustn't|ought to|need to|needs to|have to|has to|are expected to|deserves?|can't|cannot)\b", re.IGNORECASE)
_SPEAKER_NORM = re.compile(
    r"^you\s+(really\s+|definitely\s+|probably\s+)?(should|shouldn't|should not|must|mustn't|ought to|need to|"
    r"have to|can't|cannot|have no right to|don't have the right to)\b", re.IGNORECASE)
_IMPERATIVE = re.compile(r"^(don'?t|do not|never|always|please don'?t)\s", re.IGNORECASE)
_LEAD = re.compile(r"^(but|and|so|also|however|still|honestly|well|i think( that)?|i feel( like)?|i believe)[,\s]+",
                   re.IGNORECASE)
_SENTENCES = re.compile(r"(?<=[.!?])\s+(?=[A-Za-z\"'])")
_CLAUSE = re.compile(r"(?:,|;|\bbut\b)\s+")
_REACTION = re.compile(r"^(that|this|it|which)('s|\s+is|\s+was)\s+\S+[.!]?$", re.IGNORECASE)
RULES = (_JUDGED_ACT, _IT_IS_TO, _ACT_JUDGED, _GENERAL_NORM, _SPEAKER_NORM, _IMPERATIVE)


def sentences(text: str) -> list[str]:
    """The reply split after ., ! and ? (each kept with its punctuation)."""
    return [s.strip() for s in _SENTENCES.split(" ".join(text.split())) if s.strip()]


def _as_rot(sentence: str) -> str:
    previous = None
    while previous != sentence:
        previous, sentence = sentence, _LEAD.sub("", sentence).strip()
    return sentence[:1].upper() + sentence[1:]


def norm_sentences(reply: str) -> list[str]:
    """Every norm the reply states as an RoT, one per sentence, best first (see the module docstring)."""
    found: list[tuple[int, int, int, str]] = []
    for position, raw in enumerate(sentences(reply)):
        if raw.endswith("?") or len(raw.split()) > MAX_WORDS:
            continue
        best = min(((strength, position, len(c), c) for c in _clauses(raw)
                    for strength, rule in enumerate(RULES) if rule.search(c)), default=None)
        if best:
            found.append(best)
    return [rot for *_, rot in sorted(found)]


def norm_sentence(reply: str) -> str | None:
    """The reply's best norm sentence as an RoT, or None when it states none."""
    found = norm_sentences(reply)
    return found[0] if found else None


def _clauses(sentence: str) -> list[str]:
    """The sentence, then what follows each comma, semicolon or "but" in it ("No matter why, it is okay to ...")."""
    tails = [sentence[m.end():] for m in _CLAUSE.finditer(sentence)]
    rots = (_as_rot(c) for c in [sentence, *tails])
    return [r for r in rots if len(r.split()) >= 4 and not _REACTION.match(r)]
