"""The canned evasive reply (Xu et al. 2021, quoted in the paper's §1) as a generator: the baseline that
avoids unsafe content by changing the subject, whatever was said."""

from __future__ import annotations

from collections.abc import Sequence

from prosocial.data.context import check_context
from prosocial.prost.base import Reply, ResponseGenerator, register_generator

CANNED_REPLY = "Do you want to talk about something else?"


@register_generator("canned")
class CannedGenerator(ResponseGenerator):
    """Always `reply`; contexts are still checked so it fails on bad input like every other generator."""

    def __init__(self, reply: str = CANNED_REPLY):
        self.reply = reply

    def generate(
        self, contexts: Sequence[Sequence[str]], rots: Sequence[Sequence[str]] | None = None
    ) -> list[Reply]:
        return [Reply(self.reply) for i, c in enumerate(contexts) if check_context(c, where=f"contexts[{i}]")]
