"""Canary: the dialogue safety detector with rules-of-thumb (paper §4.1)."""

import prosocial.canary.generative  # noqa: F401  (registers "generative", the paper's Canary)
from prosocial.canary import baselines  # noqa: F401  (registers the peer detectors)
from prosocial.canary.base import DETECTORS, SafetyDetector, Verdict, load_detector, register_detector

__all__ = ["DETECTORS", "SafetyDetector", "Verdict", "load_detector", "register_detector"]
