"""Conversation history for ProsocialDialog row files whose dialogue boundaries are unmarked.

The partial release (`prosocial_dialog_partial/`) is (context, response) rows in dialogue order without ids: a row
either opens a new dialogue or is Speaker 1's answer to the previous row's reply. Which one is scored by pointwise
mutual information under a causal LM: how much more likely the row's context is after the previous row than on
its own, `log p(context | previous context, previous reply) - log p(context)`, in nats summed over the context's
tokens. An answer ("You're right, it isn't funny.") gains many nats from the reply it answers; an opener ("Did I
tell you how I used to ...") gains almost none.

The start rate the threshold is set to is a published statistic, not a guess: ProsocialDialog has 58,137
dialogues over 331,362 utterances (paper Table 1), i.e. 165,681 context/response rows, so 35.1% of rows open a
dialogue. The threshold is fit on the train file and shipped with its links (`resources/dialogue-links/`); other
rows (the validation file) are linked with that threshold. Checked against the 12 links whose truth is known
(DialogStudio's copies of dialogues 0-4 are the first rows of the train file): all 12 are recovered
(`tests/test_history.py` keeps that true of the shipped links).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prosocial.errors import DataError
from prosocial.lm.prompts import HEADER

#: Share of ProsocialDialog rows that open a dialogue: 58,137 dialogues / (331,362 utterances / 2).
START_RATE = 58_137 / (331_362 / 2)
LINKS_DIR = Path(__file__).resolve().parents[1] / "resources" / "dialogue-links"


def read_partial_rows(path: str | Path) -> list[tuple[str, str]]:
    """(context, response) rows of a `prosocial_dialog_partial` file, in file order."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataError.at(path, f"cannot read ProsocialDialog rows: {err}") from err
    rows = []
    for i, row in enumerate(data if isinstance(data, list) else []):
        if not (isinstance(row, dict) and isinstance(row.get("context"), str) and isinstance(row.get("response"), str)):
            raise DataError.at(path, "expected an object with string 'context' and 'response'", field=f"[{i}]")
        rows.append((row["context"], row["response"]))
    if not rows:
        raise DataError.at(path, "expected a non-empty JSON list of {context, response} rows")
    return rows


def link_scores(
    rows: Sequence[tuple[str, str]],
    model: Any,
    tokenizer: Any,
    indices: Sequence[int] | None = None,
    batch_size: int = 32,
    max_source_len: int = 128,
) -> list[float]:
    """PMI (nats) of row i's context with row i-1, for each i of `indices` (default: every row); row 0 has none (NaN).

    Both passes go through `lm.inference.token_nlls`, longest first so batches pad little.
    """
    from prosocial.lm.inference import token_nlls

    wanted = list(range(len(rows)) if indices is None else indices)
    linked = [i for i in wanted if i > 0]
    targets = [" " + rows[i][0] for i in linked]
    alone = [f"{HEADER}\n\nSpeaker 1:"] * len(linked)
    after = [f"{HEADER}\n\nSpeaker 1: {rows[i - 1][0]}\nSpeaker 2: {rows[i - 1][1]}\nSpeaker 1:" for i in linked]
    order = sorted(range(len(linked)), key=lambda j: -len(after[j]) - len(targets[j]))

    def total_nll(sources: list[str]) -> list[float]:
        nlls = token_nlls(model, tokenizer, [sources[j] for j in order], [targets[j] for j in order],
                          batch_size, max_source_len, max_target_len=96)
        out = [0.0] * len(order)
        for j, row in zip(order, nlls, strict=True):
            out[j] = sum(row)
        return out

    gained = dict(zip(linked, (a - b for a, b in zip(total_nll(alone), total_nll(after), strict=True)), strict=True))
    return [gained.get(i, math.nan) for i in wanted]


def rate_threshold(scores: Sequence[float], rate: float = START_RATE) -> float:
    """The score below which the lowest `rate` share of links fall (those rows are taken as dialogue starts)."""
    ranked = sorted(s for s in scores if not math.isnan(s))
    if not ranked:
        raise ValueError("no link scores")
    return ranked[min(len(ranked) - 1, int(rate * len(ranked)))]


def dialogue_ids(scores: Sequence[float], threshold: float) -> list[int]:
    """A dialogue number per row: a new one at the first row and wherever the link score is below `threshold`."""
    ids, current = [], -1
    for i, score in enumerate(scores):
        if i == 0 or math.isnan(score) or score < threshold:
            current += 1
        ids.append(current)
    return ids


def _dialogue_until(
    rows: Sequence[tuple[str, str]], i: int, continues: Callable[[int], bool], max_turns: int
) -> list[str]:
    """Row i's context after its dialogue's earlier utterances (at most `max_turns`); `continues(j)` says whether
    row j continues row j-1."""
    turns, j = [rows[i][0]], i
    while j > 0 and len(turns) < max_turns and continues(j):
        turns[:0] = [rows[j - 1][0], rows[j - 1][1]]
        j -= 1
    return turns[-max_turns:]


def with_history(rows: Sequence[tuple[str, str]], ids: Sequence[int], max_turns: int) -> list[list[str]]:
    """Each row's context as a dialogue: its dialogue's earlier utterances, then its own (at most `max_turns`)."""
    if len(ids) != len(rows):
        raise ValueError(f"{len(ids)} dialogue ids for {len(rows)} rows")
    return [_dialogue_until(rows, i, lambda j: ids[j] == ids[j - 1], max_turns) for i in range(len(rows))]


def linked_contexts(
    rows: Sequence[tuple[str, str]],
    indices: Sequence[int],
    model: Any,
    tokenizer: Any,
    threshold: float,
    max_turns: int,
) -> list[list[str]]:
    """`with_history` for some rows of a file that has no shipped links: only the links those contexts need are
    scored (row i's, then i-1's, ... while `max_turns` has room), and cut at `threshold` (the train file's)."""
    needed = sorted({i - k for i in indices for k in range(max_turns // 2) if i - k > 0})
    score = dict(zip(needed, link_scores(rows, model, tokenizer, indices=needed), strict=True))
    return [_dialogue_until(rows, i, lambda j: score[j] >= threshold, max_turns) for i in indices]


def read_links(name: str = "train", folder: Path = LINKS_DIR) -> dict[str, Any]:
    """The shipped link record of a partial file (`scripts/link_dialogues.py`): scores, threshold, dialogue ids."""
    path = folder / f"{name}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataError.at(path, f"cannot read dialogue links ({err}); rebuild: scripts/link_dialogues.py") from err
    if not isinstance(data, dict) or not isinstance(data.get("dialogue_ids"), list):
        raise DataError.at(path, "expected an object with a 'dialogue_ids' list", field="dialogue_ids")
    return data


def load_links(name: str, rows: int, folder: Path = LINKS_DIR) -> list[int]:
    """The shipped dialogue ids of a partial file, checked to cover exactly `rows` rows."""
    ids = read_links(name, folder)["dialogue_ids"]
    if len(ids) != rows:
        raise DataError.at(folder / f"{name}.json", f"the links are for {len(ids)} rows, expected {rows} "
                           "(rebuild: scripts/link_dialogues.py)", field="dialogue_ids")
    return ids
