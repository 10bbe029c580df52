"""The prosocial agent: grounding in RoTs, hand-over without any LM call, escalation to real webhooks, state."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import pytest

from prosocial.canary import SafetyDetector, Verdict, load_detector
from prosocial.data.labels import Coarse, SafetyLabel
from prosocial.lm.base import load_lm
from prosocial.lm.prompts import plain_prompt, rot_prompt
from prosocial.steer import HANDOVER_REPLY, Conversation, EscalationEvent, ProsocialAgent, SteeredGenerator
from tests.steer_helpers import PRANK_ROT, CrisisDetector, RecordingLM, WebhookServer, build_tiny_llama, dead_url

CRISIS = "I am going to kill myself tonight"
PRANK = "I want to pull the fire alarm as a prank"
HELLO = "hello there, how are you today?"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def spy(tiny_dir: Path) -> RecordingLM:
    return RecordingLM(load_lm("transformers", model=str(tiny_dir)))


@pytest.fixture
def detector() -> CrisisDetector:
    return CrisisDetector()


class FixedDetector(SafetyDetector):
    """Gives its verdicts in order, one per context."""

    def __init__(self, verdicts: list[Verdict]):
        self.verdicts = verdicts

    def predict(self, contexts, with_rots: bool = True) -> list[Verdict]:
        return self.verdicts[: len(contexts)]


def make_agent(detector, spy: RecordingLM, **options) -> ProsocialAgent:
    return ProsocialAgent(detector, SteeredGenerator(spy, max_new_tokens=4), **options)


def test_casual_turns_get_an_unguided_reply(detector: CrisisDetector, spy: RecordingLM) -> None:
    turn = make_agent(detector, spy).respond([HELLO])
    assert spy.inputs == [plain_prompt([HELLO])]
    assert turn.safety_label is SafetyLabel.CASUAL and turn.coarse is Coarse.CASUAL
    assert turn.response and turn.rots == [] and not turn.escalated


def test_caution_turns_are_grounded_in_the_verdicts_rots(detector: CrisisDetector, spy: RecordingLM) -> None:
    turn = make_agent(detector, spy).respond(["hi", "hello!", PRANK])
    assert spy.inputs == [rot_prompt(["hi", "hello!", PRANK], [PRANK_ROT])]
    assert turn.coarse is Coarse.NEEDS_CAUTION and turn.rots == [PRANK_ROT] and not turn.escalated
    assert turn.to_dict()["safety_label"] == "__needs_caution__"


def test_intervention_hands_over_without_calling_the_generator(detector: CrisisDetector, spy: RecordingLM) -> None:
    events: list[EscalationEvent] = []
    turn = make_agent(detector, spy, escalation=events.append).respond([CRISIS], conversation_id="c-1")
    assert spy.calls == []
    assert turn.response == HANDOVER_REPLY and turn.escalated
    assert "local emergency number" in turn.response and "crisis line" in turn.response
    assert turn.safety_label is SafetyLabel.NEEDS_INTERVENTION and turn.rots == ["You should get help."]
    (event,) = events
    assert (event.conversation_id, event.context) == ("c-1", [CRISIS])
    assert event.verdict.coarse is Coarse.NEEDS_INTERVENTION


def test_the_hand_over_fits_the_danger_and_the_region(spy: RecordingLM) -> None:
    poisoned = Verdict(SafetyLabel.NEEDS_INTERVENTION, danger="poisoning")
    abuse = Verdict(SafetyLabel.NEEDS_INTERVENTION, danger="violence")
    unsure = Verdict(SafetyLabel.NEEDS_CAUTION, danger="medical")
    act = Verdict(SafetyLabel.NEEDS_CAUTION, danger="impaired_driving")
    detector = FixedDetector([poisoned, abuse, unsure, act])
    turns = make_agent(detector, spy, region="us").respond_batch([["a"], ["b"], ["c"], ["d"]])
    assert "Poison Control at 1-800-222-1222" in turns[0].response and turns[0].escalated
    assert "Domestic Violence Hotline" in turns[1].response and "988" not in turns[1].response
    assert not turns[2].escalated and turns[2].guard != "warning"  # an unsure emergency: a generated reply
    assert "Please don't." in turns[3].response and "taxi" in turns[3].response and turns[3].guard == "warning"
    assert len(spy.inputs) == 1  # only the unsure emergency reached the LM
    assert [t.danger for t in turns] == ["poisoning", "violence", "medical", "impaired_driving"]
    international = make_agent(FixedDetector([poisoned]), spy).respond_batch([["a"]])[0].response
    assert "local poison control centre" in international and "1-800" not in international
    with pytest.raises(ValueError, match="unknown region 'mars'"):
        make_agent(detector, spy, region="mars")


def test_the_hand_over_text_is_configurable(detector: CrisisDetector, spy: RecordingLM) -> None:
    agent = make_agent(detector, spy, handover="Please call 112 now; a counsellor will join shortly.")
    assert agent.respond([CRISIS]).response == "Please call 112 now; a counsellor will join shortly."


def test_webhook_receives_the_event(detector: CrisisDetector, spy: RecordingLM) -> None:
    with WebhookServer().running() as server:
        make_agent(detector, spy, escalation=server.url).respond(["hi", "hello", CRISIS], conversation_id="c-7")
    (event,) = server.events
    assert set(event) == {"conversation_id", "context", "verdict", "time"}
    assert event["conversation_id"] == "c-7" and event["context"] == ["hi", "hello", CRISIS]
    assert event["verdict"]["safety_label"] == "__needs_intervention__"
    assert datetime.fromisoformat(event["time"]).tzinfo is not None


@pytest.mark.parametrize("failure", ["dead", "error", "timeout"])
def test_a_failing_webhook_is_logged_and_the_user_still_gets_the_hand_over(
    failure: str, detector: CrisisDetector, spy: RecordingLM, caplog: pytest.LogCaptureFixture
) -> None:
    server = WebhookServer(status=500 if failure == "error" else 200, delay=1.0 if failure == "timeout" else 0.0)
    later: list[EscalationEvent] = []
    with server.running(), caplog.at_level(logging.ERROR, logger="prosocial.steer.agent"):
        url = dead_url() if failure == "dead" else server.url
        agent = make_agent(detector, spy, escalation=[url, later.append], webhook_timeout=0.2)
        turn = agent.respond([CRISIS], conversation_id="c-9")
    assert turn.response == HANDOVER_REPLY and turn.escalated
    assert len(later) == 1, "a failing handler must not stop the next one"
    assert any("escalation handler" in r.message and "c-9" in r.message for r in caplog.records)


def test_a_raising_callback_is_logged(detector: CrisisDetector, spy: RecordingLM, caplog) -> None:
    def broken(event: EscalationEvent) -> None:
        raise RuntimeError("pager down")

    with caplog.at_level(logging.ERROR, logger="prosocial.steer.agent"):
        assert make_agent(detector, spy, escalation=broken).respond([CRISIS]).escalated
    assert "pager down" in caplog.text


def test_escalation_sticks_across_turns_until_reset(detector: CrisisDetector, spy: RecordingLM) -> None:
    events: list[EscalationEvent] = []
    agent = make_agent(detector, spy, escalation=events.append)
    conversation = Conversation(id="c-3")
    first = agent.turn(conversation, HELLO)
    assert not first.escalated and len(spy.calls) == 1
    assert agent.turn(conversation, CRISIS).escalated
    calm = "never mind, what is the weather like?"
    later = agent.turn(conversation, calm)
    assert later.escalated and later.response == HANDOVER_REPLY
    assert later.safety_label is SafetyLabel.CASUAL, "each turn is still judged and recorded"
    assert len(spy.calls) == 1, "no LM call once handed over"
    assert len(events) == 1, "the human is notified once, when the conversation escalates"
    assert conversation.escalated and len(conversation.verdicts) == 3
    assert conversation.history == [HELLO, first.response, CRISIS, HANDOVER_REPLY, calm, HANDOVER_REPLY]
    assert detector.calls[-1] == [conversation.history[:-1]]

    conversation.reset()
    assert (conversation.history, conversation.verdicts, conversation.escalated) == ([], [], False)
    after = agent.turn(conversation, HELLO)
    assert not after.escalated and spy.inputs[-1] == plain_prompt([HELLO])
    assert conversation.id == "c-3"


def test_batches_call_detector_and_generator_once(detector: CrisisDetector, spy: RecordingLM) -> None:
    contexts = [[HELLO], [CRISIS], ["hi", "hello", PRANK], [CRISIS, "ok", HELLO]]
    turns = make_agent(detector, spy).respond_batch(contexts)
    assert len(detector.calls) == 1 and detector.calls[0] == contexts
    assert spy.calls == [("generate", [plain_prompt([HELLO]), rot_prompt(contexts[2], [PRANK_ROT]),
                                       plain_prompt(contexts[3])])]
    assert [t.escalated for t in turns] == [False, True, False, False]
    assert turns[1].response == HANDOVER_REPLY
    assert make_agent(detector, spy).respond_batch([]) == []
    with pytest.raises(ValueError, match="conversation ids"):
        make_agent(detector, spy).respond_batch([[HELLO]], conversation_ids=["a", "b"])


def test_all_escalated_batch_makes_no_generator_call(detector: CrisisDetector, spy: RecordingLM) -> None:
    turns = make_agent(detector, spy).respond_batch([[CRISIS], ["help", CRISIS]])
    assert spy.calls == [] and all(t.escalated for t in turns)


def test_with_the_real_keyword_detector(spy: RecordingLM) -> None:
    agent = make_agent(load_detector("keywords"), spy)
    rude, polite = agent.respond_batch([["you are a fucking idiot"], [HELLO]])
    assert rude.coarse is Coarse.NEEDS_CAUTION and polite.coarse is Coarse.CASUAL
    assert not rude.escalated and rude.response and spy.inputs == [plain_prompt(["you are a fucking idiot"]),
                                                                   plain_prompt([HELLO])]
    with pytest.raises(ValueError, match="empty"):
        agent.respond(["   "])


def test_a_generator_whose_feedback_gate_names_the_detector_shares_it() -> None:
    from prosocial.canary.baselines import KeywordDetector
    from prosocial.prost.canned import CannedGenerator

    detector = KeywordDetector()
    gated, other = CannedGenerator(), CannedGenerator()
    gated.feedback_gate, other.feedback_gate = "keywords", "canary-mini"
    ProsocialAgent(detector, gated)
    ProsocialAgent(detector, other)
    assert gated.feedback_gate is detector, "one detector serves the verdicts and the gate"
    assert other.feedback_gate == "canary-mini", "a gate naming another backend is left alone"
