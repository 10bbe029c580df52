"""ParlAI-exact text scores (BLEU-4, unigram F1, perplexity) and the RoT scores built on them: plain arithmetic at
the bottom of the package, so training (`lm.finetune`) and the models' own evaluation can use it without importing
`prosocial.eval`.

ProsocialDialog reports ParlAI's numbers (Tables 2, 3 and 8), so these follow ``parlai/core/metrics.py``: the same
normalisation, NLTK's sentence BLEU with epsilon smoothing, max-over-references unigram F1, and token-weighted
perplexity, in the 0–1 range (the paper prints BLEU-4 and F1 multiplied by 100). `prosocial.eval.metrics` wraps
them as loadable metrics.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

# ParlAI's two regexes, character for character: ",-." inside the class is the range , - . (three chars).
_RE_ARTICLES = re.compile(r"\b(a|an|the)\b")
_RE_PUNCTUATION = re.compile(r"[!\"#$%&()*+,-./:;<=>?@\[\]\\^`{|}~_\']")

Answers = str | Sequence[str]


def normalize_answer(text: str) -> str:
    """Lower-case, turn punctuation into spaces, drop a/an/the, collapse whitespace (ParlAI's order)."""
    text = _RE_PUNCTUATION.sub(" ", text.lower())
    text = _RE_ARTICLES.sub(" ", text)
    return " ".join(text.split())


def crude_stem(word: str) -> str:
    """A crude stem, enough to match "owned" with "own" and "slaves" with "slave": no suffix, first 5 letters (for
    word-overlap checks on replies and rules-of-thumb, not for metrics)."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)][:5]
    return word[:5]


def _answer_list(answers: Answers) -> list[str]:
    """One reference or several; a bare string is one reference, not a sequence of characters."""
    answers = [answers] if isinstance(answers, str) else list(answers)
    if not answers or not all(isinstance(a, str) for a in answers):
        raise ValueError(f"references must be a string or a non-empty list of strings, got {answers!r}")
    return answers


def bleu4(guess: str, answers: Answers) -> float:
    """Sentence BLEU-4 of ``guess`` against all ``answers`` at once (NLTK clips n-grams over references).

    Tokens come from ``split(" ")`` as in ParlAI, so an empty normalised text is one empty token.
    Guesses shorter than four tokens score about 1e-6 or less even when exact: that is ParlAI's number.
    """
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu  # 1 s to import: only where scored

    return float(
        sentence_bleu(
            [normalize_answer(a).split(" ") for a in _answer_list(answers)],
            normalize_answer(guess).split(" "),
            weights=(0.25, 0.25, 0.25, 0.25),
            smoothing_function=SmoothingFunction(epsilon=1e-12).method1,
        )
    )


def precision_recall_f1(pred_tokens: Sequence[str], gold_tokens: Sequence[str]) -> tuple[float, float, float]:
    """Bag-of-tokens overlap (a Counter intersection, so repeats count); all zero without overlap."""
    overlap = sum((Counter(gold_tokens) & Counter(pred_tokens)).values())
    if overlap == 0:
        return 0.0, 0.0, 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return precision, recall, 2 * precision * recall / (precision + recall)


def unigram_f1(guess: str, answers: Answers) -> float:
    """Unigram F1 on normalised tokens against the best-matching reference (ParlAI takes the max)."""
    guess_tokens = normalize_answer(guess).split()
    return max(
        precision_recall_f1(guess_tokens, normalize_answer(a).split())[2] for a in _answer_list(answers)
    )


def consensus(candidates: Sequence[str], references: Sequence[str] | None = None) -> int:
    """Index of the candidate with the highest total unigram F1 against `references` (default: the other
    candidates), the first on a tie: minimum-Bayes-risk selection under F1, i.e. the reply the others agree with
    most, and a medoid when the references are the candidates themselves."""
    if not candidates:
        raise ValueError("consensus needs at least one candidate")
    tokens = [normalize_answer(c).split() for c in candidates]
    refs = tokens if references is None else [normalize_answer(r).split() for r in references]
    own = references is None

    def total(i: int) -> float:
        return math.fsum(precision_recall_f1(tokens[i], ref)[2] for j, ref in enumerate(refs) if not (own and i == j))

    return max(range(len(candidates)), key=total)


def perplexity(token_nlls: Sequence[Sequence[float]]) -> float:
    """exp(total NLL / total tokens) over the corpus, the way ParlAI sums its ppl numerators and denominators.

    Each inner sequence holds one example's per-token negative log-likelihoods in nats (-log p >= 0).
    This weights examples by length; the mean of per-example perplexities would be a different, larger number.
    """
    nlls = [float(x) for example in token_nlls for x in example]
    if not nlls:
        raise ValueError("perplexity needs at least one token")
    if not all(x >= 0 for x in nlls):  # also rejects NaN
        raise ValueError("token NLLs must be >= 0 (pass -log p, not log-likelihoods)")
    return math.exp(math.fsum(nlls) / len(nlls))


def rot_scores(predicted: Sequence[Sequence[str]], gold: Sequence[Sequence[str]],
               alternatives: bool = False) -> dict[str, float | None]:
    """BLEU-4 and F1 (fractions) of each example's predicted RoTs, joined by spaces, on the examples with gold RoTs.

    The gold RoTs are one reference, joined alike, for Table 2, where they are all the RoTs Canary should write;
    with `alternatives` each is a reference of its own (the best counts), for gold RoTs that are several phrasings
    of which any one is right (SBIC's implied statements, a reply's norms). Also: F1 over the examples given some
    RoT (None when none was), and the share given one (``rot_coverage``) or none (``rot_abstention``).
    """
    pairs = [(" ".join(p), list(g) if alternatives else " ".join(g))
             for p, g in zip(predicted, gold, strict=True) if any(r.strip() for r in g)]
    if not pairs:
        return {"rot_n": 0}
    f1 = [unigram_f1(guess, refs) for guess, refs in pairs]
    given = [score for score, (guess, _) in zip(f1, pairs, strict=True) if guess]
    return {
        "rot_n": len(pairs),
        "rot_bleu4": math.fsum(bleu4(guess, refs) for guess, refs in pairs) / len(pairs),
        "rot_f1": math.fsum(f1) / len(f1),
        "rot_f1_given": math.fsum(given) / len(given) if given else None,
        "rot_coverage": len(given) / len(pairs),
        "rot_abstention": 1 - len(given) / len(pairs),
    }
