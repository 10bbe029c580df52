"""Every built-in backend passes the shared conformance checks of `prosocial.testing` (tiny or fake settings;
the shipped defaults as they are). A built-in backend without an entry here fails the coverage test; test doubles
that other test modules register are left out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from prosocial.canary.base import DETECTORS, load_detector
from prosocial.canary.baselines import KeywordDetector
from prosocial.canary.generative import CANARY_TOKENS, GenerativeCanary
from prosocial.canary.mini import DEFAULT_DIR
from prosocial.canary.norms import Norm, NormedDetector
from prosocial.lm.base import LMS, load_lm
from prosocial.lm.inference import add_special_tokens
from prosocial.prost.base import GENERATORS, Reply, ResponseGenerator, load_generator
from prosocial.testing import check_detector, check_generator, check_lm
from tests.judge_fakes import ScriptedLM
from tests.steer_helpers import build_tiny_llama
from tests.test_lm import _client, server_url  # noqa: F401 (the fake OpenAI-compatible server fixture)
from tests.tiny_models import save, tiny_gpt2, train_tokenizer

TEXTS = ["hello there how are you", "it is wrong to pull a fire alarm", "you should be kind to people"] * 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Tiny random models built from configs: a word-level Llama, a GPT-2 (as Prost) and one with Canary's tokens."""
    root = tmp_path_factory.mktemp("conformance")
    tokenizer = train_tokenizer(TEXTS)
    canary_tokenizer = train_tokenizer(TEXTS)
    canary_model = tiny_gpt2(canary_tokenizer, seed=3)
    add_special_tokens(canary_model, canary_tokenizer, CANARY_TOKENS)
    return {
        "llama": build_tiny_llama(root / "llama"),
        "prost": save(tiny_gpt2(tokenizer), tokenizer, root / "prost"),
        "canary": (canary_model, canary_tokenizer),
    }


def detector_factories(tiny: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    return {
        "canary-mini": lambda: load_detector("canary-mini"),
        "canary-cascade": lambda: load_detector("canary-cascade", model_dir=DEFAULT_DIR, band=0.5),
        "canary-judge": lambda: load_detector("canary-judge", judge={"lm": ScriptedLM()}, band=0.5,
                                              fast_settings={"rot_writer": False}),
        "llm-judge": lambda: load_detector("llm-judge", lm=ScriptedLM()),
        "generative": lambda: GenerativeCanary.from_model(*tiny["canary"], max_new_tokens=6),
        "keywords": KeywordDetector,
        "profanity-check": lambda: load_detector("profanity-check"),
    }


def generator_factories(tiny: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    return {
        "canned": lambda: load_generator("canned"),
        "prost": lambda: load_generator("prost", model=str(tiny["prost"]), variant="response", max_new_tokens=6),
        "prost-mini": lambda: load_generator("prost-mini"),
        "steered": lambda: load_generator("steered", lm="transformers", model=str(tiny["llama"]),
                                          max_new_tokens=6),
    }


def lm_factories(tiny: dict[str, Any], url: str) -> dict[str, Callable[[], Any]]:
    return {
        "transformers": lambda: load_lm("transformers", model=str(tiny["llama"])),
        "llamacpp": lambda: load_lm("llamacpp", n_ctx=512),
        "openai": lambda: _client(url, "ok"),
    }


def test_every_registered_backend_has_a_conformance_entry(tiny, server_url):  # noqa: F811
    assert set(detector_factories(tiny)) == set(DETECTORS.builtin)
    assert set(generator_factories(tiny)) == set(GENERATORS.builtin)
    assert set(lm_factories(tiny, server_url)) == set(LMS.builtin)


@pytest.mark.parametrize("name", sorted(DETECTORS.builtin))
def test_detectors_conform(name, tiny):
    check_detector(detector_factories(tiny)[name])


def test_the_norms_wrapper_conforms():
    norm = Norm("prank", "It's wrong to pull a fire alarm as a prank.", "caution", ("pulling the fire alarm for fun",))
    check_detector(lambda: NormedDetector(KeywordDetector(), [norm]))


@pytest.mark.parametrize("name", sorted(GENERATORS.builtin))
def test_generators_conform(name, tiny):
    check_generator(generator_factories(tiny)[name])


@pytest.mark.parametrize("name", sorted(LMS.builtin))
def test_language_models_conform(name, tiny, server_url):  # noqa: F811
    check_lm(lm_factories(tiny, server_url)[name])


def test_the_checks_catch_a_broken_detector():
    class TwoScores(KeywordDetector):
        def predict(self, contexts, with_rots=True):
            verdicts = super().predict(contexts, with_rots)
            for v in verdicts:
                v.scores = {"__casual__": 0.5, "__needs_caution__": 0.5}
            return verdicts

    with pytest.raises(AssertionError, match="five labels"):
        check_detector(TwoScores)


class BatchShuffler(ResponseGenerator):
    """Not batch invariant, and broken: a batch's replies come back rotated by one."""

    batch_invariant = False

    def generate(self, contexts, rots=None):
        replies = [Reply(f"You said: {c[-1]}") for c in contexts] if contexts else []
        return replies[1:] + replies[:1]


def test_the_generator_check_still_catches_misplaced_replies_where_near_ties_may_flip():
    with pytest.raises(AssertionError, match="batched reply 0 is closer to another context's reply"):
        check_generator(BatchShuffler)
