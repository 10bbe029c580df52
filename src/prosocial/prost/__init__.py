"""Prost: the prosocial response generator (paper §4.2)."""

from prosocial.prost.base import GENERATORS, Reply, ResponseGenerator, load_generator, register_generator

__all__ = ["GENERATORS", "Reply", "ResponseGenerator", "load_generator", "register_generator"]
