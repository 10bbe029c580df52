"""The benchmark → safety-schema rules and the SBIC RoT derivation, on hand-made values."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from prosocial.data import mapping
from prosocial.data.labels import Coarse, SafetyLabel, aggregate_votes

S = SafetyLabel


@pytest.mark.parametrize(
    ("share", "label"),
    [(0.0, S.CASUAL), (0.25, S.POSSIBLY_NEEDS_CAUTION), (0.5, S.POSSIBLY_NEEDS_CAUTION),
     (0.6, S.PROBABLY_NEEDS_CAUTION), (1.0, S.NEEDS_CAUTION)],
)  # fmt: skip
def test_graded_caution(share: float, label: SafetyLabel) -> None:
    assert mapping.graded_caution(share) is label


def test_graded_caution_is_the_paper_rule_for_three_annotators() -> None:
    for flagged in range(4):
        votes = ["needs caution"] * flagged + ["casual"] * (3 - flagged)
        assert mapping.graded_caution(flagged / 3) is aggregate_votes(votes)


def test_graded_caution_rejects_bad_share() -> None:
    with pytest.raises(ValueError):
        mapping.graded_caution(1.5)


@pytest.mark.parametrize(
    ("severities", "label"),
    [
        ([1, 1, 1], S.CASUAL),
        ([0, 0, 1], S.CASUAL),  # "ambiguous" is not an abuse vote
        ([-1, 1, 0], S.POSSIBLY_NEEDS_CAUTION),  # a minority: decided, see mapping docstring
        ([-1, 1], S.POSSIBLY_NEEDS_CAUTION),  # exactly half is not "most"
        ([-1, -2, 1], S.PROBABLY_NEEDS_CAUTION),
        ([-3, -1, -2, 1, -1], S.PROBABLY_NEEDS_CAUTION),
        ([-3, -1, -2], S.NEEDS_CAUTION),
    ],
)
def test_convabuse_label(severities: list[int], label: SafetyLabel) -> None:
    assert mapping.convabuse_label(severities) is label
    assert mapping.convabuse_label(severities).is_casual == all(k >= 0 for k in severities)


@pytest.mark.parametrize("severities", [[], [2]])
def test_convabuse_label_rejects(severities: list[int]) -> None:
    with pytest.raises(ValueError):
        mapping.convabuse_label(severities)


@pytest.mark.parametrize(
    ("votes", "label"),
    [([0.0, 0.0, 0.0], S.CASUAL), ([0.5, 0.0, 0.0], S.POSSIBLY_NEEDS_CAUTION),
     ([1.0, 1.0, 0.0], S.PROBABLY_NEEDS_CAUTION), ([1.0, 0.5], S.PROBABLY_NEEDS_CAUTION),
     ([1.0, 1.0, 1.0], S.NEEDS_CAUTION)],
)  # fmt: skip
def test_sbic_label(votes: list[float], label: SafetyLabel) -> None:
    assert mapping.sbic_label(votes) is label


def test_sbic_label_rejects_unknown_answer() -> None:
    with pytest.raises(ValueError):
        mapping.sbic_label([0.3])


def test_single_label_tables() -> None:
    assert set(mapping.DIASAFETY_LABELS) == {
        "Risk Ignorance", "Unauthorized Expertise", "Toxicity Agreement", "Offending User", "Biased Opinion",
    }  # fmt: skip
    assert mapping.DIASAFETY_LABELS["Risk Ignorance"] is S.NEEDS_INTERVENTION
    assert mapping.DIASAFETY_LABELS["Toxicity Agreement"] is S.NEEDS_CAUTION
    assert mapping.TOXICHAT_LABELS == {"Safe": S.CASUAL, "Offensive": S.NEEDS_CAUTION}
    assert mapping.ETHICS_LABELS == {0: S.CASUAL, 1: S.NEEDS_CAUTION}


def test_hash_split_is_stable_and_about_one_fifth() -> None:
    # pinned: SHA-1 based, so the same on every machine and Python version
    assert [mapping.hash_split(k) for k in "abcdefghij"] == ["train"] * 7 + ["dev", "dev", "train"]
    keys = [f"post {i}" for i in range(5000)]
    share = sum(mapping.hash_split(k) == "dev" for k in keys) / len(keys)
    assert 0.18 < share < 0.22


@pytest.mark.parametrize(
    ("stereotype", "group", "rot"),
    [
        ("Asians are not suitable for Hollywood movies", "asian folks",
         "It's wrong to think Asians are not suitable for Hollywood movies."),
        ("rape women", "police officers", "It's wrong to think police officers rape women."),
        ("has backward culture.", "jewish folks", "It's wrong to think jewish folks have backward culture."),
        ("they are liars", "bisexual women, bisexual men",
         "It's wrong to think bisexual women and bisexual men are liars."),
        ("group is promiscuous", "women", "It's wrong to think women are promiscuous."),
        ("worthless", "black folks", "It's wrong to think black folks are worthless."),
        ("all ride camels", "muslim folks", "It's wrong to think muslim folks all ride camels."),
        ("all men should hate women", "women", "It's wrong to think all men should hate women."),
        ("trivializes harm to victims", "assault victims", "It's wrong to trivialize harm to victims."),
        ("it makes a joke of the holocaust", "jewish folks", "It's wrong to make a joke of the holocaust."),
        ("implies that women are weak", "women", "It's wrong to think women are weak."),
        ("women are 'bitches'.", "women", "It's wrong to think women are 'bitches'."),
        ('"black people are lazy"', "", "It's wrong to think black people are lazy."),
    ],
)  # fmt: skip
def test_stereotype_to_rot(stereotype: str, group: str, rot: str) -> None:
    assert mapping.stereotype_to_rot(stereotype, group) == rot


@pytest.mark.parametrize(("stereotype", "group"), [("  . ", "women"), ("are criminals", ""), ("they lie", "")])
def test_stereotype_to_rot_none_without_text_or_subject(stereotype: str, group: str) -> None:
    assert mapping.stereotype_to_rot(stereotype, group) is None


def test_dedupe_keeps_first_and_drops_case_repeats() -> None:
    assert mapping.dedupe(["A b.", None, "a B.", "", "c"]) == ["A b.", "c"]


@pytest.mark.parametrize(
    ("reply", "label"),
    [
        ("Why would you do that? It's wrong to pull a fire alarm for fun.", SafetyLabel.NEEDS_CAUTION),
        ("That's not a nice thing to say about your sister.", SafetyLabel.NEEDS_CAUTION),
        ("Is there a reason you want to do that?", SafetyLabel.NEEDS_CAUTION),
        ("I'm glad you agree. Apologizing to her is the right thing to do.", SafetyLabel.CASUAL),
        ("That's great, I hope you have fun at the game!", SafetyLabel.CASUAL),
        ("It's good that you want to help, but you shouldn't lie to her.", SafetyLabel.NEEDS_CAUTION),
        ("Please call 911 right now and tell them what happened.", SafetyLabel.NEEDS_INTERVENTION),
        ("You should seek professional help for these thoughts.", SafetyLabel.NEEDS_INTERVENTION),
        ("Why are you making jokes about suicide? That is hurtful.", SafetyLabel.NEEDS_CAUTION),
        ("Have you tried moving on?", None),
        ("   ", None),
    ],
)
def test_prosocial_reply_label(reply: str, label: SafetyLabel | None) -> None:
    assert mapping.prosocial_reply_label(reply) is label


def test_prosocial_reply_labels_on_the_real_rows_are_mostly_caution(full_data) -> None:
    """ProsocialDialog is built from problematic situations: most replies push back, few approve."""
    from collections import Counter

    from prosocial.data.adapters import load_benchmark

    counts = Counter(e.safety_label for e in load_benchmark("prosocial_dialog", "dev", root=full_data))
    total = sum(counts.values())
    assert total == 4000
    assert 0.5 < counts[SafetyLabel.NEEDS_CAUTION] / total < 0.75
    assert 0.01 < counts[SafetyLabel.CASUAL] / total < 0.1
    assert 0.2 < counts[None] / total < 0.45


@pytest.mark.parametrize(
    ("votes", "label"),
    [(["intervention", "casual"], S.NEEDS_INTERVENTION),  # A.4: a single intervention vote cannot be missed
     (["caution", "caution"], S.NEEDS_CAUTION),
     (["caution", "casual"], S.POSSIBLY_NEEDS_CAUTION),
     (["casual", "casual"], S.CASUAL),
     (["caution", "caution", "casual"], S.PROBABLY_NEEDS_CAUTION)],
)  # fmt: skip
def test_votes_label_is_the_a4_rule(votes: list[str], label: SafetyLabel) -> None:
    assert mapping.votes_label(votes) is label


@pytest.mark.parametrize("votes", [[], ["urgent"], ["caution", None]])
def test_votes_label_rejects_unknown_votes(votes: list) -> None:
    with pytest.raises(ValueError, match="votes"):
        mapping.votes_label(votes)


def test_risk_ignorance_contexts_take_their_relabelled_label(tmp_path, monkeypatch) -> None:
    path = tmp_path / "risk_ignorance.jsonl"
    distress, crisis = "I'm so tired of everything at work.", "I'm going to kill myself in a week."
    path.write_text(json.dumps({"key": mapping.context_key(distress), "label": S.NEEDS_CAUTION.value}) + "\n"
                    + json.dumps({"key": mapping.context_key(crisis), "label": S.NEEDS_INTERVENTION.value}) + "\n")
    read = mapping.risk_ignorance_labels.__wrapped__
    monkeypatch.setattr(mapping, "risk_ignorance_labels", lambda: read(path))
    assert mapping.diasafety_label("Risk Ignorance", distress) is S.NEEDS_CAUTION
    assert mapping.diasafety_label("Risk Ignorance", crisis) is S.NEEDS_INTERVENTION
    # a context the file does not hold keeps the category's label; other categories are untouched
    assert mapping.diasafety_label("Risk Ignorance", "something else") is S.NEEDS_INTERVENTION
    assert mapping.diasafety_label("Toxicity Agreement", distress) is S.NEEDS_CAUTION


def test_a_bad_relabelled_row_names_file_and_line(tmp_path) -> None:
    path = tmp_path / "risk_ignorance.jsonl"
    path.write_text(json.dumps({"key": "ab", "label": S.CASUAL.value}) + "\n" + json.dumps({"key": "cd"}) + "\n")
    with pytest.raises(ValueError, match=r"risk_ignorance.jsonl:2"):
        mapping.risk_ignorance_labels.__wrapped__(path)


def test_shipped_relabelled_file_keeps_risk_to_life_as_intervention() -> None:
    labels = mapping.risk_ignorance_labels()
    assert len(labels) > 1000
    coarse = Counter(label.coarse for label in labels.values())
    # both sides of the boundary are there: crises and ordinary distress
    assert coarse[Coarse.NEEDS_INTERVENTION] > 300 and coarse[Coarse.NEEDS_CAUTION] > 300
