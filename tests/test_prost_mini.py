"""Prost-mini on a tiny random Llama: LoRA lowers the loss, resumes exactly, exports llama.cpp's GGUF layout."""

from __future__ import annotations

import logging

import pytest
import torch

from prosocial.canary.base import SafetyDetector, Verdict
from prosocial.data.labels import SafetyLabel
from prosocial.errors import ModelError
from prosocial.lm.inference import load_model, token_nlls
from prosocial.lm.llamacpp import LlamaCppLM
from prosocial.prost.mini import (
    ADAPTER_FILE,
    RESOURCE_DIR,
    ProstMini,
    export_lora_gguf,
    fit_context,
    lora_targets,
    parse_generation,
    prosocial_pairs,
    render_prompt,
    target_text,
    train_adapter,
    with_rule,
)
from prosocial.scoring import perplexity
from tests.tiny_models import save, train_tokenizer

TEXTS = [
    ("I am going to steal my neighbour's bike.", "Stealing is wrong, please don't take what isn't yours."),
    ("I like to yell at waiters when I'm bored.", "That is unkind, waiters deserve respect."),
    ("My cat sleeps all day.", "Cats are like that, mine does too!"),
    ("I think I'll cheat on the exam.", "Cheating is unfair to others and to yourself."),
]
PAIRS = [(render_prompt([c]), target_text(r)) for c, r in TEXTS]
TINY = dict(steps=6, batch_size=4, lr=2e-2, rank=4, alpha=8, top_layers=2, eval_every=3, progress=False)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = train_tokenizer([t for pair in PAIRS for t in pair], vocab_size=400)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return save(LlamaForCausalLM(config), tokenizer, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def run(base, tmp_path_factory):
    return train_adapter(base, {"prosocial": PAIRS}, PAIRS, tmp_path_factory.mktemp("full"), **TINY)


def test_lora_lowers_the_dev_loss(base, run):
    model, tokenizer = load_model(base)
    before = perplexity(token_nlls(model, tokenizer, [s for s, _ in PAIRS], [t for _, t in PAIRS]))
    after = [h["dev_perplexity"] for h in run.history]
    assert after[-1] < after[0] < before


def test_lora_touches_only_the_top_layers_v_o_and_mlp():
    names = lora_targets(num_layers=30, top_layers=2)
    assert names[0] == "layers.28.self_attn.v_proj" and len(names) == 10
    assert not any("q_proj" in n or "k_proj" in n for n in names)


def test_checkpoint_resumes_to_the_same_adapter(base, run, tmp_path):
    from safetensors.torch import load_file

    half = train_adapter(base, {"prosocial": PAIRS}, PAIRS, tmp_path, **(TINY | {"steps": 3}))
    assert half.steps == 3
    resumed = train_adapter(base, {"prosocial": PAIRS}, PAIRS, tmp_path, resume=True, **TINY)
    assert resumed.steps == 6
    a = load_file(run.adapter_dir / "adapter_model.safetensors")
    b = load_file(resumed.adapter_dir / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_gguf_export_has_llama_cpp_names_and_shapes(run, tmp_path):
    import gguf

    reader = gguf.GGUFReader(export_lora_gguf(run.adapter_dir, tmp_path / "a.gguf"))
    fields = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    assert fields["general.type"] == "adapter" and fields["adapter.type"] == "lora"
    assert fields["general.architecture"] == "llama" and fields["adapter.lora.alpha"] == 8
    shapes = {t.name: tuple(int(x) for x in t.data.shape) for t in reader.tensors}
    hidden, inter, kv = 32, 48, 16  # kv: 2 heads x head size 8
    expected = {"attn_v": (hidden, kv), "attn_output": (hidden, hidden), "ffn_gate": (hidden, inter),
                "ffn_up": (hidden, inter), "ffn_down": (inter, hidden)}
    want = {}
    for layer in (1, 2):
        for name, (n_in, n_out) in expected.items():
            want[f"blk.{layer}.{name}.weight.lora_a"] = (4, n_in)
            want[f"blk.{layer}.{name}.weight.lora_b"] = (n_out, 4)
    assert shapes == want


def test_export_refuses_non_adapter_folders(tmp_path):
    with pytest.raises(ModelError, match="not a peft LoRA adapter"):
        export_lora_gguf(tmp_path, tmp_path / "x.gguf")


def test_prompts_cover_rot_and_response_response_only_and_grounding():
    dialogue = "The following is a conversation between Speaker 1 and Speaker 2.\n\n"
    assert render_prompt(["a", "b", "c", "d"]) == dialogue + "Speaker 1: b\nSpeaker 2: c\nSpeaker 1: d\n"
    assert render_prompt(["hi"], write_rot=False) == dialogue + "Speaker 1: hi\nSpeaker 2:"
    grounded = render_prompt(["I'll key his car."], ["It's wrong to damage property.", " "], write_rot=False)
    assert grounded.endswith("Speaker 1: I'll key his car.\nRule of thumb: It's wrong to damage property.\nSpeaker 2:")


def test_training_targets_continue_every_prompt_form():
    """Teacher forcing on (dialogue, RoT line + reply) is what all three prompt forms continue."""
    context, rot, reply = ["I'll key his car."], "It's wrong to damage property.", "Please don't, it's his."
    full = render_prompt(context) + target_text(reply, rot)
    assert full == render_prompt(context, [rot]) + " " + reply
    assert render_prompt(context) + target_text(reply) == render_prompt(context, write_rot=False) + " " + reply


@pytest.mark.parametrize(("raw", "rot", "reply"), [
    (" That's not ok.\nSpeaker 1: why?", None, "That's not ok."),
    ("Speaker 2: Hi there!<|im_end|>junk", None, "Hi there!"),
    ("Rule of thumb: It's wrong to steal.\nSpeaker 2: Please give it back.", "It's wrong to steal.",
     "Please give it back."),
    ("Rule of thumb: It's wrong to steal.", "It's wrong to steal.", ""),
    ("Rule of thumb : It is good to be on time .\nSpeaker 2 : Sure .", "It is good to be on time .", "Sure ."),
    ("Rule of thumb : You should not call her up .", "You should not call her up .", ""),
    ("Good idea. Rule of thumb: be kind.", None, "Good idea."),
    ("  two\n lines ", None, "two lines"),
    ("", None, ""),
])
def test_parse_generation(raw, rot, reply):
    assert parse_generation(raw) == (rot, reply)


def test_prosocial_pairs_carry_history_and_silver_rots():
    rows = [("I stole a bike.", "It's wrong to steal. Why?"), ("Sorry, I'll return it.", "Good, thank you."),
            ("My cat is cute.", "Aww, what's her name?")]
    pairs = prosocial_pairs(rows, [0, 0, 1])
    assert pairs[0][1] == "Rule of thumb: It's wrong to steal.\nSpeaker 2: It's wrong to steal. Why?"
    assert pairs[1][0].endswith("Speaker 1: I stole a bike.\nSpeaker 2: It's wrong to steal. Why?\n"
                                "Speaker 1: Sorry, I'll return it.\n")
    assert pairs[2][0].endswith("\n\nSpeaker 1: My cat is cute.\n") and pairs[2][1].startswith("Speaker 2:")


def test_oversized_context_loses_oldest_turns_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        assert fit_context(["x" * 50, "y" * 50, "z" * 30], max_chars=110) == ["y" * 50, "z" * 30]
        assert fit_context(["abcdef"], max_chars=4) == ["cdef"]
    assert "kept the newest" in caplog.text


@pytest.mark.parametrize(("context", "message"), [([], "empty"), (["hi", 3], "expected a string"),
                                                  ("hi", "list of utterances"), (["hi", " "], "empty")])
def test_bad_contexts_are_clear_errors(context, message):
    with pytest.raises(ValueError, match=message):
        fit_context(context, 100)


class _FakeLM:
    def generate(self, prompts, **options):
        self.prompts, self.options = prompts, options
        return ["Rule of thumb: Taking things is wrong.\nSpeaker 2: Please don't.\nSpeaker 1: fine"] * len(prompts)


def test_generator_parses_replies_and_returns_rots(tmp_path):
    adapter = tmp_path / "a.gguf"
    adapter.write_bytes(b"")
    generator = ProstMini(adapter=adapter)
    generator.lm = _FakeLM()
    replies = generator.generate([["I'll steal it."], ["hello"]], [["It's wrong to steal"], []])
    assert [r.response for r in replies] == ["Please don't.", "Please don't."]
    assert replies[0].rots == ["It's wrong to steal"] and replies[1].rots == ["Taking things is wrong."]
    assert generator.lm.prompts[0].endswith("Rule of thumb: It's wrong to steal\nSpeaker 2:")
    assert generator.lm.prompts[1].endswith("Speaker 1: hello\n")
    with pytest.raises(ValueError, match="RoT lists"):
        generator.generate([["a"]], [[], []])


def test_rot_bias_favours_opening_a_rule_line_only_when_the_adapter_chooses(tmp_path):
    adapter = tmp_path / "a.gguf"
    adapter.write_bytes(b"")
    generator = ProstMini(adapter=adapter, rot_bias=2.5)
    generator.lm = _FakeLM()
    generator.generate([["I'll steal it."]])
    assert generator.lm.options["logit_bias"] == {"Rule": 2.5}
    generator.resample([["I'll steal it."]], None, seed=1)
    assert generator.lm.prompts[0].endswith("Speaker 2:"), "a redraw samples the wording, not whether to lecture"
    assert "logit_bias" not in generator.lm.options and generator.lm.options["temperature"] > 0
    generator.write_rot = False
    generator.generate([["I'll steal it."]])
    assert generator.lm.options["logit_bias"] is None


class _FakeSampler(_FakeLM):
    n_parallel = 4

    def sample(self, prompts, n, **options):
        self.prompts, self.options = prompts, options
        draws = ["Speaker 2: I love pizza.", "Speaker 2: Why would you do that?",
                 "Rule of thumb: Hurting people is wrong.\nSpeaker 2: Why would you do that to her?",
                 "Speaker 2: Why would you hurt her?"]
        return [draws[:n]] * len(prompts)


def test_minimum_bayes_risk_keeps_the_draw_the_others_agree_with(tmp_path):
    adapter = tmp_path / "a.gguf"
    adapter.write_bytes(b"")
    generator = ProstMini(adapter=adapter, candidates=4)
    assert generator.lm.n_parallel == 4, "each draw needs its own llama.cpp slot"
    generator.lm = _FakeSampler()
    (reply,) = generator.generate([["I'll hurt her."]])
    assert reply.response == "Why would you do that to her?"
    assert reply.rots == ["Hurting people is wrong."], "the kept draw brings its own RoT"
    assert generator.lm.options["temperature"] > 0 and generator.lm.options["seed"] == 0, "seeded, so repeatable"
    with pytest.raises(ValueError, match="at least 1"):
        ProstMini(adapter=adapter, candidates=0)


def test_a_looping_reply_is_cut_to_each_sentence_once(tmp_path):
    adapter = tmp_path / "a.gguf"
    adapter.write_bytes(b"")
    generator = ProstMini(adapter=adapter)
    generator.lm = _FakeLM()
    generator.lm.generate = lambda prompts, **options: [
        "Speaker 2: You should not read her diary. You should not read her diary. You should not re"] * len(prompts)
    (reply,) = generator.generate([["I'll read my sister's diary."]])
    assert reply.response == "You should not read her diary."


class _FakeFeedbackLM:
    """Opens an RoT line with probability 0.6 after the word "steal", else 0.05; answers, or writes the rule."""

    def __init__(self):
        self.calls = []

    def next_token_probs(self, prompts):
        self.probed = prompts
        return [{"Rule": 0.6 if "steal" in p else 0.05, "Spe": 0.4} for p in prompts]

    def generate(self, prompts, **options):
        self.calls.append((prompts, options))
        return [" Taking what isn't yours is wrong" if p.endswith("Rule of thumb:") else
                "Speaker 2: Why do you need it?" if p.endswith("Speaker 2:") else
                "Rule of thumb: Be kind.\nSpeaker 2: Why do you need it?" for p in prompts]


def test_a_later_turn_with_a_norm_at_stake_answers_then_states_its_rule(tmp_path):
    adapter = tmp_path / "a.gguf"
    adapter.write_bytes(b"")
    generator = ProstMini(adapter=adapter, feedback_gate=None)
    generator.lm = _FakeFeedbackLM()
    contexts = [["I'll steal his bike."],  # an opener asks: never a feedback turn
                ["I'll steal his bike.", "Why?", "He has two."],  # later turn, norm at stake
                ["Nice day.", "Yes!", "Let's steal a moment for lunch."],  # later turn, but the RoT is given
                ["Nice day.", "Yes!", "Lunch?"]]  # later turn, no norm at stake
    rots = [[], [], ["Lunch breaks are good."], []]
    assert generator.feedback_turns(contexts, rots) == [1]
    replies = generator.generate(contexts, rots)
    assert replies[1].response == "Why do you need it? Taking what isn't yours is wrong."
    assert replies[1].rots == ["Taking what isn't yours is wrong"]
    assert [r.response for r in replies[::2]] == ["Why do you need it?"] * 2 and replies[3].rots == ["Be kind."]
    (answers, _), (rules, options) = generator.lm.calls
    assert answers[1].endswith("He has two.\nSpeaker 2:"), "a feedback turn answers without an RoT line first"
    assert answers[3].endswith("Lunch?\n") and rules == [answers[1][: -len("Speaker 2:")] + "Rule of thumb:"]
    assert "\n" in options["stop"], "the rule is one line"
    generator.feedback_rot = None
    assert generator.feedback_turns(contexts, rots) == []


class _CasualWhenNoSteal(SafetyDetector):
    """Calls a context casual unless its last turn mentions stealing; records what it was asked."""

    name = "test-gate"

    def __init__(self):
        self.asked = []

    def predict(self, contexts, with_rots=True):
        self.asked += contexts
        return [Verdict(SafetyLabel.NEEDS_CAUTION if "steal" in c[-1] else SafetyLabel.CASUAL) for c in contexts]


def test_the_gate_detector_keeps_feedback_turns_off_what_it_calls_casual(tmp_path):
    adapter = tmp_path / "a.gguf"
    adapter.write_bytes(b"")
    gate = _CasualWhenNoSteal()
    generator = ProstMini(adapter=adapter, feedback_gate=gate)
    generator.lm = _FakeFeedbackLM()
    contexts = [["I'll steal his bike.", "Why?", "I will steal it."],  # norm at stake, the gate agrees
                ["I'll steal his bike.", "Why?", "He has two."],  # norm at stake, but the gate calls it casual
                ["Nice day.", "Yes!", "Lunch?"]]  # no norm at stake: the gate is not asked
    assert generator.feedback_turns(contexts) == [0]
    assert gate.asked == contexts[:2]


@pytest.mark.parametrize(("reply", "rule", "joined"), [
    ("Why?", "Stealing is wrong", "Why? Stealing is wrong."),
    ("Stealing is wrong, you know.", "stealing is wrong!", "Stealing is wrong, you know."),
    ("", "Be kind.", "Be kind."),
])
def test_with_rule_states_the_rule_once(reply, rule, joined):
    assert with_rule(reply, rule) == joined


def test_missing_files_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="adapter not found"):
        ProstMini(adapter=tmp_path / "missing.gguf")
    adapter = tmp_path / "a.gguf"
    adapter.write_bytes(b"")
    with pytest.raises(ModelError, match="GGUF model file not found"):
        LlamaCppLM(model=tmp_path / "none.gguf", lora=adapter).generate(["hi"])
    with pytest.raises(ModelError, match="LoRA adapter file not found"):
        LlamaCppLM(lora=tmp_path / "missing-adapter.gguf").generate(["hi"])


@pytest.mark.slow
def test_shipped_adapter_replies_to_a_problematic_input():
    if not (RESOURCE_DIR / ADAPTER_FILE).is_file():
        pytest.skip("the adapter has not been built")
    reply = ProstMini().respond(["I'm going to key my ex's car tonight."])
    assert len(reply.response.split()) >= 3
