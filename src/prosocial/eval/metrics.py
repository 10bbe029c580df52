"""The paper's automatic metrics, computed exactly as ParlAI computes them (the text scores' arithmetic lives in
`prosocial.scoring`, below every model, which uses it too).

The classification metrics serve the safety tables (Canary accuracy, §5.1) and the binary
"casual vs not casual" view used when judging a safety detector.

Metrics follow the Hugging Face ``evaluate`` shape: ``load_metric(name).compute(predictions=...,
references=...)`` validates the input and returns a dict of scores.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from prosocial.registry import Registry
from prosocial.scoring import Answers, bleu4, perplexity, unigram_f1


def confusion_matrix(
    predictions: Sequence[Hashable], references: Sequence[Hashable], labels: Sequence[Hashable]
) -> np.ndarray:
    """Counts with rows = true label, columns = predicted label, both in the order of ``labels``."""
    index = {label: i for i, label in enumerate(labels)}
    if len(index) != len(labels):
        raise ValueError(f"labels must be distinct, got {list(labels)!r}")
    unknown = {y for y in (*predictions, *references) if y not in index}
    if unknown:
        raise ValueError(f"labels {sorted(map(repr, unknown))} are not in the label order {list(labels)!r}")
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for pred, ref in zip(predictions, references, strict=True):
        matrix[index[ref], index[pred]] += 1
    return matrix


def _ratio(numerator: float, denominator: float) -> float:
    """0.0 on an empty denominator, as scikit-learn's zero_division default reports it."""
    return float(numerator / denominator) if denominator else 0.0


def binary_rates(
    predictions: Sequence[Hashable], references: Sequence[Hashable], negative: Hashable
) -> dict[str, float]:
    """Detector rates with every label except ``negative`` counted as positive.

    For safety, ``negative=SafetyLabel.CASUAL`` gives recall = share of unsafe contexts flagged,
    specificity = share of casual ones let through, false_alarm_rate = share of casual ones flagged.
    """
    pred = np.array([p != negative for p in predictions])
    true = np.array([r != negative for r in references])
    tp, fn = int((pred & true).sum()), int((~pred & true).sum())
    tn, fp = int((~pred & ~true).sum()), int((pred & ~true).sum())
    return {
        "recall": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "false_alarm_rate": _ratio(fp, fp + tn),
        "precision": _ratio(tp, tp + fp),
    }


class Metric(ABC):
    """A named metric: ``compute`` checks the input, ``_compute`` does the arithmetic."""

    name: str
    needs_references: bool = True

    def compute(
        self, predictions: Sequence[Any], references: Sequence[Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        """Reject empty or misaligned input up front, where the mistake is, rather than as a wrong score."""
        if isinstance(predictions, str) or isinstance(references, str):
            raise ValueError(
                f"{self.name}: predictions and references must be sequences, not a single string"
            )
        if len(predictions) == 0:
            raise ValueError(f"{self.name}: no predictions given")
        if self.needs_references:
            if references is None:
                raise ValueError(f"{self.name}: references are required")
            if len(predictions) != len(references):
                raise ValueError(
                    f"{self.name}: {len(predictions)} predictions but {len(references)} references; "
                    "they must pair up one to one"
                )
        elif references is not None:
            raise ValueError(f"{self.name}: takes no references")
        return self._compute(predictions, references, **kw)

    @abstractmethod
    def _compute(
        self, predictions: Sequence[Any], references: Sequence[Any] | None, **kw: Any
    ) -> dict[str, Any]:
        """Scores for validated input; subclasses declare only the keywords they take, so typos raise."""


METRICS: Registry[Metric] = Registry("metric")
#: class decorator making a metric loadable by ``name``
register = METRICS.register


def load_metric(name: str) -> Metric:
    """A fresh instance of the metric registered as ``name``."""
    return METRICS.create(name)


def _check_texts(predictions: Sequence[Any]) -> None:
    if not all(isinstance(p, str) for p in predictions):
        raise ValueError("predictions must be strings")


@register("bleu4")
class Bleu4(Metric):
    """Mean sentence BLEU-4 over examples (ParlAI's ``bleu-4``); each reference may be a list of strings."""

    def _compute(self, predictions: Sequence[str], references: Sequence[Answers]) -> dict[str, float]:
        _check_texts(predictions)
        return {"bleu4": float(np.mean([bleu4(p, r) for p, r in zip(predictions, references, strict=True)]))}


@register("f1")
class UnigramF1(Metric):
    """Mean unigram F1 over examples (ParlAI's ``f1``), best reference per example."""

    def _compute(self, predictions: Sequence[str], references: Sequence[Answers]) -> dict[str, float]:
        _check_texts(predictions)
        return {
            "f1": float(np.mean([unigram_f1(p, r) for p, r in zip(predictions, references, strict=True)]))
        }


@register("perplexity")
class Perplexity(Metric):
    """Corpus perplexity; ``predictions`` are per-example sequences of token NLLs, there are no references."""

    needs_references = False

    def _compute(self, predictions: Sequence[Sequence[float]], references: None) -> dict[str, float]:
        return {"perplexity": perplexity(predictions)}


@register("accuracy")
class Accuracy(Metric):
    """Share of exact label matches."""

    def _compute(self, predictions: Sequence[Hashable], references: Sequence[Hashable]) -> dict[str, float]:
        return {"accuracy": float(np.mean([p == r for p, r in zip(predictions, references, strict=True)]))}


@register("classification")
class Classification(Metric):
    """Accuracy, macro F1, balanced accuracy, per-class P/R/F1/support and the confusion matrix.

    Pass ``labels=`` to fix the row/column order (and to count classes absent from this sample);
    otherwise the sorted union of seen labels is used. Macro F1 averages over all ``labels`` as
    scikit-learn does; balanced accuracy averages recall over labels that occur in the references.
    """

    def _compute(
        self,
        predictions: Sequence[Hashable],
        references: Sequence[Hashable],
        labels: Sequence[Hashable] | None = None,
    ) -> dict[str, Any]:
        order = list(labels) if labels is not None else sorted({*predictions, *references})
        matrix = confusion_matrix(predictions, references, order)
        hits, support, predicted = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
        per_class: dict[Hashable, dict[str, float]] = {}
        for i, label in enumerate(order):
            precision, recall = _ratio(hits[i], predicted[i]), _ratio(hits[i], support[i])
            per_class[label] = {
                "precision": precision,
                "recall": recall,
                "f1": _ratio(2 * precision * recall, precision + recall),
                "support": int(support[i]),
            }
        present = [per_class[label]["recall"] for i, label in enumerate(order) if support[i] > 0]
        return {
            "accuracy": float(hits.sum() / matrix.sum()),
            "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])),
            "balanced_accuracy": float(np.mean(present)),
            "per_class": per_class,
            "labels": order,
            "confusion_matrix": matrix.tolist(),
        }


@register("binary")
class Binary(Metric):
    """`binary_rates` as a metric; requires ``negative=`` (e.g. the casual label)."""

    def _compute(
        self,
        predictions: Sequence[Hashable],
        references: Sequence[Hashable],
        *,
        negative: Hashable,
    ) -> dict[str, float]:
        return binary_rates(predictions, references, negative)
