"""Dialogue systems under test, built by name, so an evaluation protocol only ever sees contexts in, replies out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prosocial.errors import DataError

System = Callable[[list[list[str]]], list[str]]
"""A dialogue system under test: contexts in (utterances, oldest first), one reply per context out."""


def build_system(name: str, settings: Mapping[str, Any]) -> System:
    """A registered generator by name, ``agent`` (the `ProsocialAgent`: detector + generator + hand-over), or
    ``replies`` (saved replies, ``path=`` a JSONL of id / context / response rows: systems run elsewhere, such as
    an API model, or replies to re-score with other evaluators).

    Settings go to the generator, except ``rots=DETECTOR`` (ground every reply in that detector's RoTs: the
    paper's Pr prompt when the generator is "steered") and, for ``agent``, ``detector=`` and ``generator=``.
    """
    from prosocial.canary import load_detector
    from prosocial.prost import load_generator

    settings = dict(settings)
    if name == "replies":
        from prosocial.eval.human_eval.tasks import read_outputs

        saved = {tuple(context): reply for context, reply in read_outputs(settings["path"]).values()}

        def lookup(contexts: list[list[str]]) -> list[str]:
            if missing := [c for c in contexts if tuple(c) not in saved]:
                raise DataError.at(settings["path"], f"no reply for {len(missing)} contexts, e.g. {missing[0]!r}")
            return [saved[tuple(c)] for c in contexts]

        return lookup
    if name == "agent":
        import prosocial.steer  # noqa: F401  (registers "steered")
        from prosocial.steer.agent import ProsocialAgent

        agent = ProsocialAgent(load_detector(settings.pop("detector", "canary-mini")),
                               load_generator(settings.pop("generator", "prost-mini"), **settings))
        return lambda contexts: [t.response for t in agent.respond_batch(contexts)]
    if name == "steered":
        import prosocial.steer  # noqa: F401  (registers "steered")
    detector = load_detector(settings.pop("rots")) if "rots" in settings else None
    generator = load_generator(name, **settings)

    def reply(contexts: list[list[str]]) -> list[str]:
        rots = [v.rots for v in detector.predict(contexts)] if detector else None
        return [r.response for r in generator.generate(contexts, rots)]

    return reply
