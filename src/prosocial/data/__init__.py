"""ProsocialDialog data: the safety schema, dialogues, both published formats, statistics and mixtures."""

from prosocial.data.context import build_context
from prosocial.data.formats import FORMATS, check_file, read_dialogues, read_hub, write_dialogues
from prosocial.data.labels import COARSE_LABELS, LABELS, Coarse, SafetyLabel, aggregate_votes, parse_vote
from prosocial.data.mixture import CANARY_WEIGHTS, PROST_WEIGHTS, MixtureSampler
from prosocial.data.schema import Dialogue, Example, Turn
from prosocial.data.stats import Stats, dialogue_stats, example_stats, plot_label_dynamics

__all__ = [
    "CANARY_WEIGHTS",
    "COARSE_LABELS",
    "FORMATS",
    "LABELS",
    "PROST_WEIGHTS",
    "Coarse",
    "Dialogue",
    "Example",
    "MixtureSampler",
    "SafetyLabel",
    "Stats",
    "Turn",
    "aggregate_votes",
    "build_context",
    "check_file",
    "dialogue_stats",
    "example_stats",
    "parse_vote",
    "plot_label_dynamics",
    "read_dialogues",
    "read_hub",
    "write_dialogues",
]
