"""What the guard judges of a chat request: everything the model will read, as the model will read it.

The paper's view of a request is the dialogue up to the last user turn, and that stays the main judgement (its
RoTs guide the LLM). But a model also reads the system and developer prompts a client sends, tool results,
message names, every content part, a trailing assistant "prefill" and the arguments of earlier tool calls; a
harmful turn followed by harmless ones falls out of the detector's 96-token window; and tricks such as
fullwidth letters or "k1ll" hide words from the detector but not from an LLM. So besides the dialogue view,
each text the model sees is judged on its own, in sentence-aligned windows when it is long. Everything is judged
as the model reads it, `normalize`d: the disguised original only confuses a detector (fullwidth letters read as
unknown tokens made harmless questions look problematic). The most severe verdict decides; the dialogue view wins
ties, so its RoTs guide whenever it is as severe as anything else.

Cost: one detector context per text and window (label only), plus one with RoTs where a text that is not the
dialogue view decides. A chat client resends its history with every turn, so verdicts of single texts are kept
in a bounded LRU cache and an earlier turn is judged once.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from prosocial.canary.base import Verdict
from prosocial.data.context import windows
from prosocial.data.labels import Coarse, SafetyLabel
from prosocial.data.normalize import normalize
from prosocial.serve.proxy import ProxyError, dialogue_context

Predict = Callable[[list[list[str]], bool], Awaitable[list[Verdict]]]


@dataclass(frozen=True)
class Text:
    """One text the model will read, and where it is in the request ("messages[2].content[1].text")."""

    where: str
    text: str
    index: int = 0
    role: str = "user"


@dataclass
class InputJudgement:
    """The deciding verdict, the dialogue view it was judged in, and every other text that was flagged."""

    verdict: Verdict
    context: list[str]
    decided_by: str = "dialogue"
    flagged: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"decided_by": self.decided_by, "flagged": self.flagged}


def message_texts(messages: Sequence[dict[str, Any]], judge_system: bool = True) -> Iterator[Text]:
    """Every text in the messages that a model reads, with where it is: content strings and every part's text
    (whatever the part's type), names, and tool-call arguments. System and developer messages only with
    `judge_system` (an application whose clients cannot set them may trust its own prompt)."""
    for i, message in enumerate(messages):
        if message.get("role") in ("system", "developer") and not judge_system:
            continue
        role = str(message.get("role"))
        content = message.get("content")
        if isinstance(content, str):
            yield Text(f"messages[{i}].content", content, i, role)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    yield Text(f"messages[{i}].content[{j}].text", part["text"], i, role)
        if isinstance(message.get("name"), str):
            yield Text(f"messages[{i}].name", message["name"], i, role)
        calls = message.get("tool_calls")
        functions = [(f"tool_calls[{j}].function", c.get("function")) for j, c in
                     enumerate(calls if isinstance(calls, list) else []) if isinstance(c, dict)]
        functions.append(("function_call", message.get("function_call")))  # the legacy single call
        for where, function in functions:
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                yield Text(f"messages[{i}].{where}.arguments", _argument_text(function["arguments"]), i, role)


def _argument_text(arguments: str) -> str:
    """Tool-call arguments are JSON; their string values are what carries meaning ("query": "how to …")."""
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError):
        return arguments
    strings: list[str] = []

    def walk(node: Any, depth: int = 0) -> None:
        if depth > 32:
            return
        if isinstance(node, str):
            strings.append(node)
        elif isinstance(node, dict):
            for item in node.values():
                walk(item, depth + 1)
        elif isinstance(node, list):
            for item in node:
                walk(item, depth + 1)

    walk(value)
    return "\n".join(s for s in strings if s.strip()) or arguments


class VerdictCache:
    """Label-only verdicts of single texts, least recently used dropped first."""

    def __init__(self, size: int = 4096):
        self.size = size
        self._items: OrderedDict[str, Verdict] = OrderedDict()

    def get(self, text: str) -> Verdict | None:
        verdict = self._items.get(text)
        if verdict is not None:
            self._items.move_to_end(text)
        return verdict

    def put(self, text: str, verdict: Verdict) -> None:
        self._items[text] = verdict
        self._items.move_to_end(text)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


def _more_severe(a: Verdict, b: Verdict) -> bool:
    return b.safety_label > a.safety_label


async def judge_messages(
    messages: Sequence[dict[str, Any]],
    predict: Predict,
    cache: VerdictCache | None = None,
    judge_system: bool = True,
    max_texts: int = 512,
) -> InputJudgement:
    """Judge a chat request (see the module docstring). `predict(contexts, with_rots)` is the detector."""
    context = dialogue_context(list(messages))
    view = [normalize(turn) for turn in context]  # the dialogue as the model reads it
    last_user = max(i for i, m in enumerate(messages) if m.get("role") == "user")
    pieces: list[tuple[Text, str]] = []  # (a text, one window of it as the model reads it)
    for item in message_texts(messages, judge_system):
        if item.text.strip():
            pieces += [(item, window) for window in windows(normalize(item.text))]
    if len(pieces) > max_texts:
        raise ProxyError(
            413, f"the request holds more text than the guard judges ({len(pieces)} windows > {max_texts}); "
            "send less text or raise max_judged_windows", "request_too_large",
        )
    singles: dict[str, Verdict] = {}  # each window's verdict, judged alone
    if cache is not None:
        singles = {text: known for _, text in pieces if (known := cache.get(text)) is not None}
    todo = sorted({text for _, text in pieces if text not in singles and [text] != view})
    if todo:
        (verdict,), found = await asyncio.gather(predict([view], True), predict([[t] for t in todo], False))
        singles |= dict(zip(todo, found, strict=True))
        if cache is not None:
            for text, single in zip(todo, found, strict=True):
                cache.put(text, single)
    else:
        (verdict,) = await predict([view], True)
    if len(view) == 1:
        singles[view[0]] = verdict
    judgement = InputJudgement(verdict, context)

    worst: tuple[str, str, Verdict] | None = None
    seen: set[tuple[str, str]] = set()
    for item, text in pieces:
        single = singles[text]
        earlier_reply = item.role == "assistant" and item.index < last_user and ".content" in item.where
        if earlier_reply and single.coarse is Coarse.NEEDS_INTERVENTION:
            # An earlier reply (often our own hand-over) can steer, never hand over again; its tool calls can.
            single = replace(single, safety_label=SafetyLabel.NEEDS_CAUTION)
        if single.safety_label.is_casual or (item.where, single.safety_label.value) in seen:
            continue
        seen.add((item.where, single.safety_label.value))
        judgement.flagged.append({"where": item.where, "safety_label": single.safety_label.value,
                                  "coarse": single.coarse.value, "danger": single.danger})
        if worst is None or _more_severe(worst[2], single):
            worst = (item.where, text, single)
    if worst is not None and _more_severe(verdict, worst[2]):
        where, text, single = worst
        with_rots = (await predict([[text]], True))[0]  # its RoTs, to guide or hand over
        judgement.verdict = replace(with_rots, safety_label=single.safety_label)
        judgement.decided_by = where
    return judgement
