"""Prost: the prosocial response generator (paper §4.2)."""

import prosocial.prost.mini  # noqa: F401  (registers "prost-mini", the offline default)
from prosocial.prost import seq2seq  # noqa: F401  (registers "prost", the paper's Prost)
from prosocial.prost.base import GENERATORS, Reply, ResponseGenerator, load_generator, register_generator

__all__ = ["GENERATORS", "Reply", "ResponseGenerator", "load_generator", "register_generator"]
