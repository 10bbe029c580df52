"""Canary: the dialogue safety detector with rules-of-thumb (paper §4.1)."""

from prosocial.canary.base import DETECTORS, SafetyDetector, Verdict, load_detector, register_detector

__all__ = ["DETECTORS", "SafetyDetector", "Verdict", "load_detector", "register_detector"]
