"""Silver RoTs: the norm sentence of a ProsocialDialog reply, or none."""

from __future__ import annotations

import json

import pytest

from prosocial.data.silver_rots import norm_sentence, norm_sentences


@pytest.mark.parametrize(("reply", "rot"), [
    ("How would you feel if people discriminated against you? Having hate for people regardless of disability is "
     "wrong.", "Having hate for people regardless of disability is wrong."),
    ("It is okay to be hungry while shopping but you should wait to pay. It is stealing.",
     "It is okay to be hungry while shopping but you should wait to pay."),
    ("That really depends on the age difference, but it's not normal to be attracted to your sibling. You should "
     "find help.", "It's not normal to be attracted to your sibling."),
    ("You should not have to listen to a barking dog all day. People should be considerate when getting pets.",
     "People should be considerate when getting pets."),
    ("But you shouldn't force yourself to like something.", "You shouldn't force yourself to like something."),
    ("Canceling at the last minute is rude and irresponsible. Let them know early.",
     "Canceling at the last minute is rude and irresponsible."),
])
def test_norm_sentences_are_found_and_read_as_rots(reply, rot):
    assert norm_sentence(reply) == rot


@pytest.mark.parametrize("reply", [
    "Why would you do that?",
    "Is it wrong to be honest with him?",
    "That sounds so sad, is she evil or something?",
    "How did you start an argument between them?",
    "",
])
def test_questions_and_reactions_have_no_norm(reply):
    assert norm_sentence(reply) is None


def test_a_third_or_more_of_real_replies_state_a_norm(shared_data):
    rows = json.loads((shared_data / "prosocial_dialog_partial" / "train.json").read_text())[:1000]
    found = [norm_sentence(r["response"]) for r in rows]
    rate = sum(f is not None for f in found) / len(found)
    assert 0.3 <= rate <= 0.5
    assert all(f[0].isupper() and len(f.split()) >= 4 for f in found if f)


def test_every_norm_of_a_reply_comes_best_first():
    reply = "Why would you do that? Don't do it again. It's wrong to pull a fire alarm for fun. I hope you reconsider."
    assert norm_sentences(reply) == ["It's wrong to pull a fire alarm for fun.", "Don't do it again."]
    assert norm_sentences("You should stop. Never.") == []  # too short to be rules
