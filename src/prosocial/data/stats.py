"""Dataset statistics: the paper's Table 1 columns, label distribution and dynamics (Figure 4), RoT diversity (A.5)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prosocial.data.labels import LABELS, SafetyLabel
from prosocial.data.schema import Dialogue, Example


def _words(text: str) -> list[str]:
    return text.split()


def _ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


@dataclass
class RotStats:
    total: int = 0
    unique: int = 0
    unique_ratio: float = 0.0
    unique_3gram_ratio: float = 0.0
    avg_length: float = 0.0

    @classmethod
    def of(cls, rots: list[str]) -> RotStats:
        if not rots:
            return cls()
        trigrams = [g for r in rots for g in _ngrams(_words(r.lower()), 3)]
        return cls(
            total=len(rots),
            unique=len(set(rots)),
            unique_ratio=len(set(rots)) / len(rots),
            unique_3gram_ratio=len(set(trigrams)) / len(trigrams) if trigrams else 0.0,
            avg_length=sum(len(_words(r)) for r in rots) / len(rots),
        )


@dataclass
class Stats:
    """Table 1 columns plus the label and RoT statistics of A.5 and Figure 4."""

    name: str
    dialogues: int
    utterances: int
    avg_turns: float
    avg_utterance_length: float
    labelled_contexts: int
    label_distribution: dict[str, int]
    coarse_distribution: dict[str, int]
    rots: RotStats
    rots_per_dialogue: float
    #: turn index (0-based) → label → count: how labels change as dialogues go on (Figure 4).
    label_dynamics: dict[int, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _label_counts(labels: Iterable) -> tuple[dict[str, int], dict[str, int]]:
    labels = [label for label in labels if label is not None]
    fine = Counter(label.value for label in labels)
    coarse = Counter(label.coarse.value for label in labels)
    return {label.value: fine[label.value] for label in LABELS}, dict(coarse)


def _assemble(
    name: str,
    units: int,
    utterances: list[str],
    judged: list[tuple[int, SafetyLabel]],
    rot_lists: list[list[str]],
) -> Stats:
    """The columns from a list of units (dialogues or examples), their utterances, (turn, label) judgements
    and the RoTs of each unit."""
    fine, coarse = _label_counts(label for _, label in judged)
    dynamics: dict[int, Counter] = {}
    for turn, label in judged:
        dynamics.setdefault(turn, Counter())[label.value] += 1
    return Stats(
        name=name,
        dialogues=units,
        utterances=len(utterances),
        avg_turns=len(utterances) / units if units else 0.0,
        avg_utterance_length=sum(len(_words(u)) for u in utterances) / len(utterances) if utterances else 0.0,
        labelled_contexts=sum(fine.values()),
        label_distribution=fine,
        coarse_distribution=coarse,
        rots=RotStats.of([r for rots in rot_lists for r in rots]),
        rots_per_dialogue=sum(len(set(rots)) for rots in rot_lists) / units if units else 0.0,
        label_dynamics={i: dict(c) for i, c in sorted(dynamics.items())},
    )


def dialogue_stats(dialogues: list[Dialogue], name: str = "") -> Stats:
    """Statistics of ProsocialDialog-style dialogues (an utterance is each non-empty context and response)."""
    return _assemble(
        name,
        len(dialogues),
        [u for d in dialogues for t in d.turns for u in (t.context, t.response) if u.strip()],
        [(i, t.safety_label) for d in dialogues for i, t in enumerate(d.turns) if t.safety_label is not None],
        [[r for t in d.turns for r in t.rots] for d in dialogues],
    )


def example_stats(examples: list[Example], name: str = "") -> Stats:
    """The same columns for benchmark examples, where each example is one judged context.

    An example's context is a whole dialogue prefix, so a "dialogue" here is one example and its utterances
    are its context (plus the response when there is one); label dynamics index the context length in turns.
    """
    return _assemble(
        name,
        len(examples),
        [u for e in examples for u in [*e.context, e.response or ""] if u.strip()],
        [((len(e.context) - 1) // 2, e.safety_label) for e in examples if e.safety_label is not None],
        [e.rots for e in examples],
    )


def plot_label_dynamics(stats: Stats, path: str | Path) -> None:
    """Figure 4's view: the share of each safety label at each turn, as a stacked bar chart PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from prosocial.io import atomic_write

    turns = sorted(stats.label_dynamics)
    colors = ["#4caf50", "#cddc39", "#ffc107", "#ff7043", "#d32f2f"]
    fig, ax = plt.subplots(figsize=(7, 4))
    bottoms = [0.0] * len(turns)
    for label, color in zip(LABELS, colors, strict=True):
        shares = []
        for turn in turns:
            counts = stats.label_dynamics[turn]
            total = sum(counts.values()) or 1
            shares.append(counts.get(label.value, 0) / total)
        ax.bar([t + 1 for t in turns], shares, bottom=bottoms, color=color, label=label.value.strip("_"))
        bottoms = [b + s for b, s in zip(bottoms, shares, strict=True)]
    ax.set_xlabel("turn")
    ax.set_ylabel("share of contexts")
    ax.set_title(f"Safety labels by turn — {stats.name}" if stats.name else "Safety labels by turn")
    ax.set_xticks([t + 1 for t in turns])
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)
