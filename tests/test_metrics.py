"""ParlAI-equivalent text metrics and the classification metrics, checked against hand-worked values."""

from __future__ import annotations

import math

import pytest

from prosocial.data.labels import SafetyLabel
from prosocial.errors import ModelError
from prosocial.eval.metrics import binary_rates, confusion_matrix, load_metric
from prosocial.scoring import bleu4, consensus, normalize_answer, perplexity, rot_scores, unigram_f1


def test_normalize_punctuation_becomes_space_and_articles_go() -> None:
    # lower:        "the cat's hat, an a-okay thing!"
    # punct -> " ": "the cat s hat  an a okay thing "   (the apostrophe splits "cat's"; not deleted)
    # articles:     the / an / a dropped; "hat" and "okay" keep their letters
    assert normalize_answer("The cat's hat, an A-okay thing!") == "cat s hat okay thing"


def test_normalize_articles_only_as_whole_words() -> None:
    # "anthem", "theater", "area" contain article letters but are not articles
    assert normalize_answer("An anthem at THE theater area") == "anthem at theater area"
    assert normalize_answer("  a\tthe\nan  ") == ""


def test_unigram_f1_hand_example() -> None:
    # "the cat sat" -> [cat, sat]; "a cat sat down" -> [cat, sat, down]
    # overlap 2: P = 2/2 = 1, R = 2/3, F1 = 2*1*(2/3) / (1 + 2/3) = (4/3)/(5/3) = 0.8
    assert unigram_f1("the cat sat", "a cat sat down") == pytest.approx(0.8)


def test_unigram_f1_counts_repeats_and_is_zero_without_overlap() -> None:
    # guess [yes, yes, yes] vs gold [yes, no]: Counter overlap min(3,1) = 1 -> P = 1/3, R = 1/2, F1 = 0.4
    assert unigram_f1("yes yes yes", "yes no") == pytest.approx(0.4)
    assert unigram_f1("apples", "oranges") == 0.0


def test_consensus_picks_the_candidate_the_others_agree_with() -> None:
    # vs each other: "you should not steal" shares 3-4 words with both others; the off-topic one shares none
    candidates = ["I love pizza", "you should not steal", "you should not steal from her",
                  "stealing is wrong you should not"]
    assert consensus(candidates) == 1
    assert consensus(["dog", "cat"], references=["cat", "cat dog"]) == 1  # against given references instead
    assert consensus(["same", "same"]) == 0  # ties go to the first
    with pytest.raises(ValueError, match="at least one"):
        consensus([])


def test_unigram_f1_takes_best_reference() -> None:
    # vs "dog ran": 0;  vs "a cat sat down": 0.8 (above);  vs "cat": P = 1/2, R = 1, F1 = 2/3  -> max = 0.8
    assert unigram_f1("the cat sat", ["dog ran", "a cat sat down", "cat"]) == pytest.approx(0.8)


def test_bleu4_exact_match_is_one() -> None:
    assert bleu4("It's wrong to hurt animals.", "it's wrong to hurt animals") == pytest.approx(1.0)


def test_bleu4_no_smoothing_needed() -> None:
    # guess [i really like green pears] vs ref [i really like green apples], equal length so BP = 1
    # p1 = 4/5, p2 = 3/4, p3 = 2/3, p4 = 1/2 -> product 1/5 -> BLEU = (1/5) ** (1/4) = 0.668740...
    assert bleu4("I really like green pears", "i really like green apples") == pytest.approx(0.2**0.25)


def test_bleu4_epsilon_smoothing_and_brevity_penalty() -> None:
    # guess [i like green apples] (c = 4) vs ref [i really like green apples] (r = 5)
    # p1 = 4/4; p2: {i like, like green, green apples} ∩ ref = 2/3; p3: {like green apples} = 1/2;
    # p4: 0/1 -> method1 gives epsilon / 1 = 1e-12.  BP = exp(1 - 5/4) = exp(-0.25)
    # BLEU = exp(-0.25) * (1 * 2/3 * 1/2 * 1e-12) ** 0.25 = 0.778801 * 0.759836 * 1e-3 = 5.9176e-4
    expected = math.exp(-0.25) * (1 / 3 * 1e-12) ** 0.25
    assert bleu4("I like green apples", "i really like green apples") == pytest.approx(expected, rel=1e-9)


def test_bleu4_short_exact_match_is_tiny_like_parlai() -> None:
    # two tokens: p1 = p2 = 1, p3 = p4 = 0/1 -> 1e-12 each -> (1e-24) ** 0.25 = 1e-6
    assert bleu4("cat sat", "cat sat") == pytest.approx(1e-6)


def test_bleu4_multi_reference_clips_over_all_references() -> None:
    # refs [i really like green apples] (5) and [i like green apples very much] (6):
    # every n-gram of [i like green apples] occurs in the second ref -> all p_n = 1;
    # NLTK's BP uses the closest reference length, 5 -> exp(1 - 5/4) = exp(-0.25) = 0.7788.
    # (The best single reference would give only exp(1 - 6/4) = 0.6065: this is not a max.)
    refs = ["i really like green apples", "i like green apples very much"]
    assert bleu4("i like green apples", refs) == pytest.approx(math.exp(-0.25))


def test_corpus_bleu4_and_f1_are_means_of_examples() -> None:
    preds = ["i really like green pears", "the cat sat"]
    refs = ["i really like green apples", ["a cat sat down"]]
    scores = load_metric("bleu4").compute(preds, refs) | load_metric("f1").compute(preds, refs)
    # F1: example 1 shares 4 of 5 tokens, P = R = F1 = 0.8; example 2 is 0.8 (above) -> mean 0.8
    assert scores["f1"] == pytest.approx(0.8)
    # BLEU: example 2 is [cat sat] vs [cat sat down]: p1 = p2 = 1, p3 = p4 = 1e-12, BP = exp(1 - 3/2)
    second = math.exp(-0.5) * 1e-6
    assert scores["bleu4"] == pytest.approx((0.2**0.25 + second) / 2)


def test_perplexity_is_token_weighted() -> None:
    # NLLs 1 + 2 + 3 = 6 over 3 tokens -> exp(2) = 7.389; the mean of per-example ppl would be
    # (exp(1.5) + exp(3)) / 2 = 12.28, which ParlAI does not report.
    nlls = [[1.0, 2.0], [3.0]]
    assert perplexity(nlls) == pytest.approx(math.exp(2.0))
    assert load_metric("perplexity").compute(nlls) == {"perplexity": pytest.approx(math.exp(2.0))}
    # uniform over a 4-word vocabulary: NLL ln 4 per token -> perplexity 4
    assert perplexity([[math.log(4)] * 7]) == pytest.approx(4.0)


def test_perplexity_rejects_log_likelihoods_and_no_tokens() -> None:
    with pytest.raises(ValueError, match="-log p"):
        perplexity([[-0.5, -1.0]])
    with pytest.raises(ValueError, match="at least one token"):
        perplexity([[], []])
    with pytest.raises(ValueError, match="takes no references"):
        load_metric("perplexity").compute([[1.0]], [[1.0]])


def test_classification_hand_example() -> None:
    # true:  a a b c      rows = true, cols = pred, order a b c d
    # pred:  a b b c      a: [1 1 0 0]  b: [0 1 0 0]  c: [0 0 1 0]  d: [0 0 0 0]
    result = load_metric("classification").compute(
        ["a", "b", "b", "c"], ["a", "a", "b", "c"], labels=["a", "b", "c", "d"]
    )
    assert result["confusion_matrix"] == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert result["accuracy"] == pytest.approx(3 / 4)
    # recall a = 1/2, b = 1, c = 1; d never occurs -> balanced accuracy (1/2 + 1 + 1) / 3 = 5/6
    assert result["balanced_accuracy"] == pytest.approx(5 / 6)
    # precision a = 1, b = 1/2, c = 1; F1 a = b = 2/3, c = 1, d = 0 -> macro over 4 labels = 7/12
    assert result["per_class"]["b"] == {
        "precision": 0.5,
        "recall": 1.0,
        "f1": pytest.approx(2 / 3),
        "support": 1,
    }
    assert result["macro_f1"] == pytest.approx(7 / 12)


def test_classification_matches_scikit_learn() -> None:
    from sklearn import metrics as sk

    true = ["x", "y", "z", "z", "y", "x", "x", "z", "y", "y"]
    pred = ["x", "z", "z", "y", "y", "x", "y", "z", "y", "x"]
    ours = load_metric("classification").compute(pred, true)
    assert ours["labels"] == ["x", "y", "z"]
    assert ours["confusion_matrix"] == sk.confusion_matrix(true, pred, labels=["x", "y", "z"]).tolist()
    assert ours["macro_f1"] == pytest.approx(sk.f1_score(true, pred, average="macro"))
    assert ours["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(true, pred))


def test_confusion_matrix_rejects_labels_outside_the_order() -> None:
    with pytest.raises(ValueError, match="not in the label order"):
        confusion_matrix(["a", "q"], ["a", "a"], labels=["a", "b"])


def test_binary_rates_casual_vs_not_casual() -> None:
    casual, caution, urgent = SafetyLabel.CASUAL, SafetyLabel.NEEDS_CAUTION, SafetyLabel.NEEDS_INTERVENTION
    true = [casual, casual, casual, caution, caution, urgent]
    pred = [
        casual,
        caution,
        casual,
        casual,
        urgent,
        caution,
    ]  # unsafe-vs-unsafe confusions still count as hits
    # positives (not casual): 3, flagged 2 -> recall 2/3.  negatives (casual): 3, one flagged ->
    # specificity 2/3, false alarm 1/3.  flagged 3, of which 2 truly unsafe -> precision 2/3.
    rates = load_metric("binary").compute(pred, true, negative="__casual__")
    assert rates == pytest.approx(
        {"recall": 2 / 3, "specificity": 2 / 3, "false_alarm_rate": 1 / 3, "precision": 2 / 3}
    )
    assert binary_rates(pred, true, negative=casual) == rates


def test_accuracy() -> None:
    assert load_metric("accuracy").compute([1, 2, 3, 4], [1, 2, 0, 0]) == {"accuracy": 0.5}


@pytest.mark.parametrize("name", ["bleu4", "f1", "accuracy", "classification", "binary"])
def test_mismatched_lengths_raise(name: str) -> None:
    with pytest.raises(ValueError, match="2 predictions but 3 references"):
        load_metric(name).compute(["a", "b"], ["a", "b", "c"])


def test_bad_input_is_reported() -> None:
    with pytest.raises(ModelError, match="unknown metric backend .bleu."):
        load_metric("bleu")
    with pytest.raises(ValueError, match="no predictions"):
        load_metric("f1").compute([], [])
    with pytest.raises(ValueError, match="references are required"):
        load_metric("f1").compute(["a"])
    with pytest.raises(ValueError, match="not a single string"):
        load_metric("f1").compute("abc", "abc")
    with pytest.raises(ValueError, match="non-empty list"):
        load_metric("f1").compute(["a"], [[]])
    with pytest.raises(TypeError):  # a misspelt keyword must not be ignored silently
        load_metric("classification").compute(["a"], ["a"], label=["a"])


def test_rot_scores_join_the_gold_rots_or_take_the_best_alternative() -> None:
    predicted = [["It is wrong to lie."], [], ["Be kind to others."]]
    gold = [["It is wrong to lie.", "Honesty matters."], ["Be kind."], [" "]]  # the third has no gold RoT
    joined = rot_scores(predicted, gold)
    f1 = unigram_f1("It is wrong to lie.", "It is wrong to lie. Honesty matters.")
    assert joined["rot_n"] == 2 and joined["rot_f1"] == pytest.approx(f1 / 2) and joined["rot_f1_given"] == f1
    assert joined["rot_bleu4"] == pytest.approx(bleu4("It is wrong to lie.", "It is wrong to lie. Honesty matters.") / 2
                                                + bleu4("", "Be kind.") / 2)
    assert joined["rot_coverage"] == 0.5 and joined["rot_abstention"] == 0.5
    best = rot_scores(predicted, gold, alternatives=True)  # the exact alternative is found: F1 1 on the first
    assert best["rot_f1"] == 0.5 and best["rot_f1_given"] == 1.0
    assert rot_scores([[]], [[]]) == {"rot_n": 0} and rot_scores([[]], [["Be kind."]])["rot_f1_given"] is None
