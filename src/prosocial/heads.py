"""Small classifier heads over frozen sentence embeddings: trained in torch, run in numpy.

Shared by the ToxiChat evaluators (`eval.toxichat_evaluators`) and the reply-agreement judge
(`prost.agreement`), so it sits at the bottom of the package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def pair_features(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sentence-pair features for a frozen bi-encoder (InferSent / SBERT style)."""
    return np.concatenate([u, v, u * v, np.abs(u - v)], axis=1)


class Head:
    """A linear or one-hidden-layer softmax classifier over fixed features, in numpy at inference time."""

    def __init__(self, weights: Mapping[str, np.ndarray]):
        self.weights = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        h = x.astype(np.float32)
        if "w1" in self.weights:
            h = np.maximum(h @ self.weights["w1"] + self.weights["b1"], 0.0)
        logits = h @ self.weights["w"] + self.weights["b"]
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    @classmethod
    def train(cls, x: np.ndarray, y: Sequence[int], classes: int, hidden: int = 0, balance: float = 0.0,
              weight_decay: float = 1e-3, steps: int = 400, lr: float = 1e-2, seed: int = 0) -> Head:
        """Full-batch AdamW on cross-entropy with class weights ∝ count^-`balance`.

        0 keeps the data's priors (rare classes, such as a disagreeing reply, are then rarely predicted); 1 is
        fully balanced (they are over-predicted); in between trades rate bias against recall.
        """
        import torch

        torch.manual_seed(seed)
        layers: list[torch.nn.Module] = []
        width = x.shape[1]
        if hidden:
            layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
            width = hidden
        layers.append(torch.nn.Linear(width, classes))
        model = torch.nn.Sequential(*layers)
        features, targets = torch.from_numpy(x.astype(np.float32)), torch.tensor(list(y))
        counts = torch.bincount(targets, minlength=classes).clamp(min=1).float()
        weight = counts.pow(-balance)
        weight = weight * classes / weight.sum()
        optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        for _ in range(steps):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(features), targets, weight=weight).backward()
            optimiser.step()
        linear = [m for m in model if isinstance(m, torch.nn.Linear)]
        weights = {"w": linear[-1].weight.detach().T.numpy(), "b": linear[-1].bias.detach().numpy()}
        if hidden:
            weights |= {"w1": linear[0].weight.detach().T.numpy(), "b1": linear[0].bias.detach().numpy()}
        return cls(weights)
