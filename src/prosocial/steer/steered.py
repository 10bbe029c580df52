"""Canary-steered prompting of any language model (paper §6.2, Appendix D.2), as a `ResponseGenerator`.

The paper steers GPT-3 zero-shot by putting Canary's RoTs into the prompt (Pr) and compares with the plain
prompt (P0). `SteeredGenerator` does the same for any registered LM backend, so a local SmolLM2 or an
OpenAI-compatible endpoint becomes a drop-in replacement for Prost wherever a generator is expected.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from prosocial.data.context import USER_TAG, check_context
from prosocial.lm.base import LanguageModel, load_lm, truncate_at_stop
from prosocial.lm.prompts import RESPONSE_TAG, chat_messages, plain_prompt, rot_prompt
from prosocial.prost.base import Reply, ResponseGenerator, register_generator

log = logging.getLogger(__name__)

PromptStyle = Literal["paper", "chat"]
PROMPT_STYLES: tuple[str, ...] = ("paper", "chat")
#: A base LM continuing the transcript writes the next turns too; the reply ends where any turn starts.
TURN_STOPS: tuple[str, ...] = (USER_TAG, RESPONSE_TAG)
FALLBACK_REPLY = "I'm not sure what to say to that. Could you tell me a bit more?"
FALLBACK_WITH_ROT = "I'm not sure what to say, but one thing worth keeping in mind: {rot}"


def clean_reply(text: str, one_line: bool = False) -> str:
    """The LM's own turn only: cut where it starts writing another speaker's turn, then strip.

    `one_line` also ends the turn at a line break: in the paper's transcript format a turn is one line, so a
    base LM's next line is already something else (often the next turn, untagged).
    """
    text = truncate_at_stop(text, TURN_STOPS).strip()
    return text.split("\n", 1)[0].strip() if one_line else text


@register_generator("steered")
class SteeredGenerator(ResponseGenerator):
    """Replies from any `LanguageModel`, guided by RoTs when given (Pr), unguided otherwise (P0).

    `lm` is a backend name for `load_lm` (built with `model` and `lm_settings`) or a ready `LanguageModel`
    (to share one loaded model between components). `prompt_style="paper"` feeds the paper's raw-text
    prompts to `generate`; "chat" sends `chat_messages` (RoTs as a system message) for instruction-tuned
    models. Greedy decoding by default, so replies are reproducible.
    """

    def __init__(
        self,
        lm: str | LanguageModel = "llamacpp",
        model: str | None = None,
        lm_settings: Mapping[str, Any] | None = None,
        prompt_style: PromptStyle = "paper",
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        max_turns: int | None = None,
        fallback: str = FALLBACK_REPLY,
    ):
        if prompt_style not in PROMPT_STYLES:
            raise ValueError(f"unknown prompt_style {prompt_style!r}; expected one of {list(PROMPT_STYLES)}")
        if isinstance(lm, LanguageModel):
            if model is not None or lm_settings:
                raise ValueError("model and lm_settings configure a backend by name; this LM is already built")
            self.lm = lm
        else:
            settings = dict(lm_settings or {})
            if model is not None:
                settings["model"] = model
            self.lm = load_lm(lm, **settings)  # cheap: backends load weights on first use
        self.prompt_style = prompt_style
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.max_turns = max_turns
        self.fallback = fallback

    def prompts(self, contexts: Sequence[Sequence[str]], rots: Sequence[Sequence[str]] | None = None) -> list[Any]:
        """What the LM receives per context: Pr / P0 text ("paper") or chat messages ("chat")."""
        checked = [check_context(c, where=f"contexts[{i}]") for i, c in enumerate(contexts)]
        if rots is not None and len(rots) != len(checked):
            raise ValueError(f"{len(rots)} RoT lists for {len(checked)} contexts; give one list per context")
        given = [_clean_rots(r) for r in rots] if rots is not None else [[] for _ in checked]
        if self.prompt_style == "chat":
            return [chat_messages(c, r or None, self.max_turns) for c, r in zip(checked, given, strict=True)]
        return [
            rot_prompt(c, r, self.max_turns) if r else plain_prompt(c, self.max_turns)
            for c, r in zip(checked, given, strict=True)
        ]

    def generate(
        self, contexts: Sequence[Sequence[str]], rots: Sequence[Sequence[str]] | None = None
    ) -> list[Reply]:
        prompts = self.prompts(contexts, rots)
        if not prompts:
            return []
        options = {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": list(TURN_STOPS),
            "seed": self.seed,
        }
        complete = self.lm.chat if self.prompt_style == "chat" else self.lm.generate
        texts = complete(prompts, **options)
        given = [_clean_rots(r) for r in rots] if rots is not None else [[] for _ in prompts]
        return [Reply(self._finish(text, r), r) for text, r in zip(texts, given, strict=True)]

    def _finish(self, text: str, rots: list[str]) -> str:
        """A usable reply: an empty one (the LM stopped at once or only wrote the next turn) is replaced, loudly."""
        reply = clean_reply(text, one_line=self.prompt_style == "paper")
        if reply:
            return reply
        fallback = FALLBACK_WITH_ROT.format(rot=rots[0]) if rots else self.fallback
        log.warning("the %s LM returned an empty reply (raw output %r); using a fallback reply", self.lm.name, text)
        return fallback


def _clean_rots(rots: Sequence[str] | str) -> list[str]:
    items = [rots] if isinstance(rots, str) else rots
    return [r.strip() for r in items if r and r.strip()]
