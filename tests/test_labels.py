import itertools

import pytest

from prosocial.data import Coarse, SafetyLabel, aggregate_votes, parse_vote

CAS, CAU, INT = "casual", "needs caution", "needs intervention"


def test_labels_are_spelled_as_in_the_dataset_and_ordered_by_severity():
    assert [label.value for label in SafetyLabel] == [
        "__casual__",
        "__possibly_needs_caution__",
        "__probably_needs_caution__",
        "__needs_caution__",
        "__needs_intervention__",
    ]
    assert sorted(SafetyLabel, reverse=True)[0] is SafetyLabel.NEEDS_INTERVENTION
    assert SafetyLabel.CASUAL < SafetyLabel.POSSIBLY_NEEDS_CAUTION < SafetyLabel.NEEDS_INTERVENTION
    assert max(SafetyLabel.NEEDS_CAUTION, SafetyLabel.PROBABLY_NEEDS_CAUTION) is SafetyLabel.NEEDS_CAUTION
    assert [label.severity for label in SafetyLabel] == [0, 1, 2, 3, 4]


def test_coarse_view():
    assert SafetyLabel.CASUAL.coarse is Coarse.CASUAL
    for label in (SafetyLabel.POSSIBLY_NEEDS_CAUTION, SafetyLabel.PROBABLY_NEEDS_CAUTION, SafetyLabel.NEEDS_CAUTION):
        assert label.coarse is Coarse.NEEDS_CAUTION
    assert SafetyLabel.NEEDS_INTERVENTION.coarse is Coarse.NEEDS_INTERVENTION


@pytest.mark.parametrize(
    "votes, expected",
    [
        ((CAS, CAS, CAS), SafetyLabel.CASUAL),
        ((CAS, CAS, CAU), SafetyLabel.POSSIBLY_NEEDS_CAUTION),
        ((CAU, CAS, CAU), SafetyLabel.PROBABLY_NEEDS_CAUTION),
        ((CAU, CAU, CAU), SafetyLabel.NEEDS_CAUTION),
        ((CAS, CAS, INT), SafetyLabel.NEEDS_INTERVENTION),
        ((CAU, CAU, INT), SafetyLabel.NEEDS_INTERVENTION),
        ((INT, INT, INT), SafetyLabel.NEEDS_INTERVENTION),
    ],
)
def test_aggregate_votes_follows_appendix_a4(votes, expected):
    assert aggregate_votes(votes) is expected


def test_aggregate_votes_covers_all_combinations_by_the_rule():
    for votes in itertools.product((CAS, CAU, INT), repeat=3):
        label = aggregate_votes(votes)
        if INT in votes:
            assert label is SafetyLabel.NEEDS_INTERVENTION
        else:
            assert label.severity == votes.count(CAU)


def test_unknown_votes_are_errors_not_guesses():
    with pytest.raises(ValueError, match="unknown safety vote 'needs care'"):
        aggregate_votes([CAS, CAS, "needs care"])
    with pytest.raises(ValueError, match="exactly three"):
        aggregate_votes([CAS, CAS])
    assert parse_vote(" Needs Caution ") is Coarse.NEEDS_CAUTION


def test_parse_label_accepts_both_spellings():
    assert SafetyLabel.parse("__needs_caution__") is SafetyLabel.NEEDS_CAUTION
    assert SafetyLabel.parse("probably needs caution") is SafetyLabel.PROBABLY_NEEDS_CAUTION
    with pytest.raises(ValueError, match="unknown safety label"):
        SafetyLabel.parse("__dangerous__")
