"""canary-judge: Canary-mini decides what it is sure of, the LLM judge the rest (and every flagged context); a judge
that fails leaves Canary-mini's verdict, counted; a named emergency is never lowered. (Its conformance run is in
tests/test_conformance.py.)"""

from __future__ import annotations

import json
import logging

import pytest

from prosocial.canary import load_detector
from prosocial.canary.mini import CanaryMini
from prosocial.data.danger import BY_NAME
from prosocial.data.labels import SafetyLabel
from prosocial.lm.base import UpstreamError
from tests.judge_fakes import ScriptedLM

CONTEXTS = [["I made dinner for my family tonight."], ["I stole money from my mom's purse to buy games."], ["ok"],
            ["My little brother just swallowed a dishwasher pod, what do I do?"],
            ["Women are just too emotional to be good leaders."]]
JUDGE_ROT = "It's wrong to take what isn't yours."
FAST = {"rot_writer": False}


def says(label: str, rots: list[str] | None = None) -> ScriptedLM:
    answer = json.dumps({"label": label, "danger": "none", "rots": rots or [], "rationale": "r"})
    return ScriptedLM(lambda messages: answer)


def cascade(lm: ScriptedLM, **settings):
    settings = {"intervention_band": 0.0} | settings
    return load_detector("canary-judge", judge={"lm": lm}, fast_settings=FAST, **settings)


@pytest.fixture(scope="module")
def fast() -> list:
    return CanaryMini(rot_writer=False).predict(CONTEXTS)


def test_with_no_band_and_no_flagged_contexts_sent_it_is_canary_mini(fast):
    lm = says("needs_intervention")
    detector = cascade(lm, band=0.0, send_flagged=False)
    assert [v.safety_label for v in detector.predict(CONTEXTS)] == [v.safety_label for v in fast]
    assert (detector.sent, detector.seen, lm.requests) == (0, len(CONTEXTS), [])


def test_flagged_contexts_go_to_the_judge_which_writes_their_rots(fast):
    lm = says("probably_needs_caution", [JUDGE_ROT])
    detector = cascade(lm, band=0.0)
    verdicts = detector.predict(CONTEXTS)
    flagged = [i for i, v in enumerate(fast) if not v.safety_label.is_casual]
    assert flagged and detector.sent == len(flagged) == len(lm.requests)
    for i, (mine, theirs) in enumerate(zip(verdicts, fast, strict=True)):
        if i not in flagged:
            assert mine.safety_label == theirs.safety_label
        elif theirs.safety_label is SafetyLabel.NEEDS_INTERVENTION and theirs.danger:  # a named emergency stands
            assert mine.safety_label is SafetyLabel.NEEDS_INTERVENTION
            assert mine.rots[0] == BY_NAME[theirs.danger].rot and mine.danger == theirs.danger
        else:
            assert mine.safety_label is SafetyLabel.PROBABLY_NEEDS_CAUTION and mine.rots == [JUDGE_ROT]
            assert mine.rationale == "r"
    assert fast[3].safety_label is SafetyLabel.NEEDS_INTERVENTION and verdicts[3].danger == "poisoning"


def test_the_judge_may_clear_a_false_alarm_but_not_a_named_emergency(fast):
    verdicts = cascade(says("casual"), band=0.0).predict(CONTEXTS)
    assert verdicts[3].safety_label is SafetyLabel.NEEDS_INTERVENTION
    assert all(v.safety_label.is_casual for i, v in enumerate(verdicts) if i != 3)
    kept = cascade(says("casual"), band=0.0, keep_emergencies=False).predict(CONTEXTS)
    assert kept[3].safety_label is SafetyLabel.CASUAL and kept[3].rots == []


def test_a_failing_judge_leaves_canary_minis_verdicts_counted_and_logged(fast, caplog):
    def down(messages):
        raise UpstreamError("http://10.0.0.7/v1 did not answer within 5 s")

    detector = cascade(ScriptedLM(down), band=1.0)  # every context goes to the judge
    with caplog.at_level(logging.WARNING, logger="prosocial.canary.judged"):
        verdicts = detector.predict(CONTEXTS)
    assert [v.safety_label for v in verdicts] == [v.safety_label for v in fast]
    assert all(v.rots for v in verdicts if not v.safety_label.is_casual)  # flagged ones keep a reason
    assert detector.fallbacks == detector.sent == len(CONTEXTS)
    assert "failed on 5 of 5" in caplog.text


def test_a_band_of_one_sends_everything():
    lm = says("casual")
    detector = cascade(lm, band=1.0, send_flagged=False)
    detector.predict(CONTEXTS)
    assert detector.sent == len(CONTEXTS) == len(lm.requests)
    with pytest.raises(ValueError, match="band"):
        cascade(lm, band=2.0).predict(CONTEXTS)
    with pytest.raises(ValueError, match="intervention_band"):
        cascade(lm, intervention_band=-1).predict(CONTEXTS)


def test_contexts_near_the_intervention_threshold_are_unsure():
    import numpy as np

    detector = cascade(says("casual"), band=0.0, intervention_band=0.05)
    threshold = detector._fast.config.intervention_threshold
    probs = np.array([[0.9, 0.1, 0.0], [0.5, 0.5 - threshold, threshold + 0.01], [0.0, 0.5, 0.5]])
    assert detector.unsure(probs).tolist() == [False, True, False]


def test_flat_settings_reach_the_judge():
    detector = load_detector("canary-judge", model="guard", base_url="http://127.0.0.1:9/v1", adapter="llama-guard",
                             timeout=1.5)
    judge = detector._judge
    assert (judge.model, judge.base_url, judge.adapter, judge.timeout) == ("guard", "http://127.0.0.1:9/v1",
                                                                           "llama-guard", 1.5)
