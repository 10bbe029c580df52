"""Canary-mini's RoT writer: its prompt, what counts as a written rule, and its training data."""

from __future__ import annotations

import pytest

from prosocial.canary.rotwriter import RotWriter, clean_rot, writer_prompt
from prosocial.lm.prompts import HEADER, RULE_TAG


def test_the_prompt_is_the_dialogue_then_the_opened_rule_line():
    prompt = writer_prompt(["hi", "hello!", "I'm going to key my ex's car."])
    assert prompt.startswith(HEADER) and prompt.endswith(f"Speaker 1: I'm going to key my ex's car.\n{RULE_TAG}")
    assert "Speaker 2: hello!" in prompt


@pytest.mark.parametrize(
    ("text", "rot"),
    [
        (" it's wrong to damage property\nSpeaker 2: no", "It's wrong to damage property."),
        (" You shouldn't drink and drive.<|im_end|>", "You shouldn't drink and drive."),
        ("  \"It is good to be honest!\"", "It is good to be honest!"),
        (" ok", None),
        ("", None),
        (" 12 34 56 78 !!", None),
        (" Speaker 2: Why would you do that?", None),
    ],
)
def test_a_generation_is_one_rule_sentence_or_nothing(text, rot):
    assert clean_rot(text) == rot


@pytest.mark.parametrize(
    ("rot", "context", "kept"),
    [
        ("It's wrong to think muslims are thieves.", "I'll just take the money from the register.", False),
        ("It's wrong to think black people are not good.", "I told my brother he was adopted.", False),
        ("It's wrong to think women are not good leaders.", "Women are too emotional to lead.", True),
        ("It's wrong to think that people with disabilities are lazy.", "my disabled cousin is so lazy", True),
        ("It's wrong to cheat on exams.", "I cheated on my exam and got an A.", True),
    ],
)
def test_a_rule_about_a_group_the_dialogue_never_names_is_not_kept(rot, context, kept):
    from prosocial.canary.rotwriter import grounded

    assert grounded(rot, ["hi", context]) is kept


def test_a_stereotype_rule_must_be_about_a_group_of_people():
    """The form "It's wrong to think X are Y" is for groups of people (those the bank's rules are about), not for
    whatever the dialogue names: "bald eagles are animals" is a tautology, not a reason."""
    from prosocial.canary.rotwriter import grounded, stereotyped_groups

    bank = ["It's wrong to think women are weak."] * 3 + ["It's wrong to think jews are greedy."] * 3 + [
        "It's wrong to think cats are evil.", "You shouldn't steal."]
    groups = stereotyped_groups(bank)
    assert groups == {"women", "jews"}
    assert grounded("It's wrong to think women are bad drivers.", ["That woman can't drive."], groups)
    assert grounded("It's wrong to think a jew is greedy.", ["Jews and their money..."], groups)
    assert not grounded("It's wrong to think bald eagles are animals.", ["I shot a bald eagle."], groups)
    assert not grounded("It's wrong to think cats are evil.", ["I kicked the cat."], groups), "cats aren't catholics"
    assert grounded("It's wrong to shoot protected birds.", ["I shot a bald eagle."], groups)
    assert grounded("It's wrong to think cats are evil.", ["I kicked the cat."]), "no groups given: as before"


@pytest.mark.parametrize(
    ("rot", "context", "kept"),
    [
        ("It's wrong to make fun of someone else's schoolwork.", "I want to pull the fire alarm as a prank.", False),
        ("You shouldn't pick your nose in public.", "I'm going to skip school tomorrow.", False),
        ("It's wrong to pull a fire alarm when there is no fire.", "I want to pull the fire alarm as a prank.", True),
        ("You shouldn't drive when you're drunk.", "I'll drive home after eight beers.", True),
        ("It's wrong to steal.", "I'll just take the money, nobody will notice. Stealing is fine.", True),
    ],
)
def test_a_rule_about_nothing_the_dialogue_mentions_is_not_kept(rot, context, kept):
    from prosocial.canary.rotwriter import relevant

    assert relevant(rot, ["hello", context]) is kept


def test_a_folder_without_a_writer_has_none(tmp_path):
    assert RotWriter.load(tmp_path) is None


def test_training_pairs_keep_the_evaluation_splits_out(shared_data):
    """SBIC dev, the ProsocialDialog validation file and the danger corpus's dev and held-out rows are never trained
    on (`benchmarks/bench_reasons.py` evaluates on them)."""
    from prosocial.canary.danger_train import CORPUS
    from prosocial.canary.rotwriter_train import writer_data
    from prosocial.data.adapters import load_benchmark
    from prosocial.data.danger import read_corpus
    from prosocial.lm.history import read_partial_rows

    sources, dev = writer_data(shared_data)
    assert set(sources) == {"sbic", "prosocial", "danger"} and all(sources.values()) and dev
    assert all(target.startswith(f"{RULE_TAG} ") for pairs in sources.values() for _, target in pairs)

    def leaked(source: str, texts: list[str]) -> list[str]:
        prompts = "\n".join(prompt for prompt, _ in sources[source])
        return [t for t in texts if len(t) > 25 and f"Speaker 1: {t}\n" in prompts]

    sbic_dev = [e.context[-1] for e in load_benchmark("sbic", "dev", root=shared_data)]
    valid = [c for c, _ in read_partial_rows(shared_data / "prosocial_dialog_partial" / "valid.json")]
    assert leaked("sbic", sbic_dev) == [] and leaked("prosocial", sbic_dev) == []
    # ProsocialDialog's own splits share some stock openers; the benchmark leaves rows the writer saw out
    assert len(leaked("prosocial", valid)) <= 0.01 * len(valid)
    assert leaked("danger", [c.text for c in read_corpus(CORPUS, ("dev", "heldout"))]) == []
