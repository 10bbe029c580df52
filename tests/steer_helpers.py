"""Test helpers for steering and the agent: a tiny random Llama, an LM spy, a crisis detector, a webhook server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import torch

from prosocial.canary.base import SafetyDetector, Verdict
from prosocial.data.labels import SafetyLabel
from prosocial.lm.base import LanguageModel, Message
from tests.tiny_models import tiny_llama

SENTENCES = [
    "The following is a conversation between Speaker 1 and Speaker 2 .",
    "Speaker 2 is trying to gently explain it is wrong to pull a fire alarm as a prank .",
    "Speaker 1 : I want to pull the fire alarm . Speaker 2 : why ?",
    "hello there , how are you today ? I am fine , thanks . You should be kind .",
]
PRANK_ROT = "It's wrong to pull a fire alarm when there's no fire."

# Tiny models gain nothing from intra-op threads, and on a busy shared 2-core machine extra threads only wait.
torch.set_num_threads(1)


def build_tiny_llama(folder: Path, silent: bool = False) -> Path:
    """A 2-layer random Llama with an offline word-level tokenizer and a chat template.

    `silent` zeroes the output layer, so greedy decoding always picks token 0 (padding): a real model whose
    decoded reply is empty, which drives the generator's fallback path.
    """
    return tiny_llama(folder, SENTENCES, max_positions=256, silent=silent)


class RecordingLM(LanguageModel):
    """Delegates to a real LM and records every call, to see what reached the model and how often."""

    def __init__(self, inner: LanguageModel):
        self.inner = inner
        self.name = inner.name
        self.calls: list[tuple[str, list[Any]]] = []

    def generate(self, prompts: list[str], **options: Any) -> list[str]:
        self.calls.append(("generate", list(prompts)))
        return self.inner.generate(prompts, **options)

    def chat(self, messages_batch: list[list[Message]], **options: Any) -> list[str]:
        self.calls.append(("chat", list(messages_batch)))
        return self.inner.chat(messages_batch, **options)

    @property
    def inputs(self) -> list[Any]:
        return [item for _, batch in self.calls for item in batch]


class CrisisDetector(SafetyDetector):
    """A test double of the detector interface: "kill myself" needs intervention, "prank" needs caution."""

    def __init__(self) -> None:
        self.calls: list[list[list[str]]] = []

    def predict(self, contexts: Sequence[Sequence[str]], with_rots: bool = True) -> list[Verdict]:
        self.calls.append([list(c) for c in contexts])
        return [self._judge(c[-1]) for c in contexts]

    @staticmethod
    def _judge(last: str) -> Verdict:
        if "kill myself" in last:
            return Verdict(SafetyLabel.NEEDS_INTERVENTION, {"__needs_intervention__": 1.0}, ["You should get help."])
        if "prank" in last:
            return Verdict(SafetyLabel.NEEDS_CAUTION, {"__needs_caution__": 1.0}, [PRANK_ROT])
        return Verdict(SafetyLabel.CASUAL, {"__casual__": 1.0})


class WebhookServer:
    """A real HTTP server on loopback that records JSON POST bodies; `status` and `delay` shape its answers."""

    def __init__(self, status: int = 200, delay: float = 0.0):
        self.events: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(server.delay)
                server.events.append(json.loads(body))
                self.send_response(server.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.status, self.delay = status, delay
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/escalate"

    @contextmanager
    def running(self) -> Iterator[WebhookServer]:
        thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.httpd.shutdown()
            self.httpd.server_close()


def dead_url() -> str:
    """A loopback URL nobody listens on: the port was just free and is closed again."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/escalate"
