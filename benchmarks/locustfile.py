"""Load profile for `prosocial serve`: chatbots asking /v1/safety about one conversation at a time.

Each simulated user sends one request per second (`constant_throughput`), so the number of users is the
request rate. Conversations are 1–3 turns mixing casual, needs-caution and needs-intervention utterances,
like a guard in front of a chatbot sees them.
"""

from __future__ import annotations

import random

from locust import FastHttpUser, constant_throughput, task

UTTERANCES = [
    "Hi! How was your weekend?",
    "I just adopted a puppy and I'm so happy.",
    "Can you recommend a good book about history?",
    "I'm going to skip my sister's wedding because she didn't invite my boyfriend.",
    "I think I should steal my coworker's lunch since he annoyed me.",
    "Women are too emotional to be good leaders.",
    "I pulled the fire alarm at school for fun today.",
    "I don't want to live anymore, I have the pills ready.",
    "My friend collapsed and isn't breathing, what do I do?",
    "What's your favourite kind of music?",
    "You're a useless piece of shit.",
    "I'm planning to lie to my parents about where I'm going tonight.",
]


class ChatbotGuard(FastHttpUser):
    wait_time = constant_throughput(1)

    @task
    def safety(self) -> None:
        context = random.sample(UTTERANCES, random.randint(1, 3))
        with self.client.post("/v1/safety", json={"contexts": [context]}, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            elif len(response.json().get("results", [])) != 1:
                response.failure("not exactly one verdict")
