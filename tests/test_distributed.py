"""`prosocial train canary|prost` under `accelerate launch` with 2 CPU processes (gloo), on tiny models: the same
global batch gives the single process's dev perplexity, only rank 0 saves, and a run killed after a checkpoint
resumes from it."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prosocial.cli.train import app
from prosocial.lm.finetune import CHECKPOINT_DIR, STATE_FILE
from prosocial.lm.inference import load_model
from prosocial.resources import RESOURCES
from tests.conftest import REPO
from tests.tiny_models import corpus_texts, fixture_examples, save, tiny_gpt2, tiny_t5, train_tokenizer

ACCELERATE = Path(sys.executable).with_name("accelerate")
# Four updates of 8 pairs (4 per process), a dev evaluation and checkpoint every 2; no final generation table.
COMMON = ["--no-casual", "--max-steps", "4", "--eval-every", "2", "--lr", "3e-3", "--warmup", "0", "--device", "cpu",
          "--dev-fraction", "0.3", "--eval-limit", "0", "--no-progress"]


@pytest.fixture(scope="module")
def setup(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("dist")
    examples = fixture_examples(shared_data)
    tokenizer = train_tokenizer(corpus_texts(examples))
    return {
        "data": sorted(str(p) for p in (shared_data / "prosocial_dialog_examples").glob("*.json")),
        "t5": str(save(tiny_t5(tokenizer), tokenizer, folder / "t5")),
        "gpt2": str(save(tiny_gpt2(tokenizer), tokenizer, folder / "gpt2")),
    }


def _args(command: str, model: str, setup: dict, out: Path, batch_size: int) -> list[str]:
    data = [arg for path in setup["data"] for arg in ("--data", path)]
    return [command, "--model", model, *data, "--out", str(out), "--batch-size", str(batch_size), *COMMON]


DDP = ["--multi_gpu", "--num_machines", "1", "--dynamo_backend", "no"]
FSDP = ["--config_file", str(RESOURCES / "accelerate" / "fsdp.yaml")]  # the shipped config, on 2 CPU processes


def _launch(args: list[str], saves: Path, strategy: list[str] = DDP, **env: str) -> subprocess.CompletedProcess:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launcher = [str(ACCELERATE), "launch", *strategy, "--num_processes", "2", "--mixed_precision", "no",
                "--main_process_port", str(port)]
    environ = {**os.environ, "PROSOCIAL_TEST_SAVES": str(saves), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([*launcher, str(REPO / "tests" / "launch_train.py"), *args], cwd=REPO, env=environ,
                          capture_output=True, text=True, timeout=240)


def _history(out: Path) -> list[tuple[int, float]]:
    """(step, dev loss) per evaluation: the mean token NLL, i.e. the log of the dev perplexity."""
    history = json.loads((out / CHECKPOINT_DIR / STATE_FILE).read_text())["history"]
    return [(h["step"], math.log(h["dev_perplexity"])) for h in history]


def _close(one: list[tuple[int, float]], two: list[tuple[int, float]]) -> None:
    """Same steps, and losses within 1%: each process averages its own tokens, so with uneven lengths the gradient
    is a mean of two means, not one mean over all tokens."""
    assert [step for step, _ in two] == [step for step, _ in one] == [2, 4]
    assert [loss for _, loss in two] == pytest.approx([loss for _, loss in one], rel=1e-2)
    assert one[1][1] < one[0][1]  # it trained


def _single(args: list[str], out: Path) -> list[tuple[int, float]]:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return _history(out)


@pytest.fixture(scope="module")
def canary_one(setup: dict, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[int, float]]:
    """The single-process reference run: the same 8 pairs per update as 2 processes × 4."""
    out = tmp_path_factory.mktemp("one")
    return _single(_args("canary", setup["t5"], setup, out, 8), out)


@pytest.mark.parametrize("strategy", [DDP, FSDP], ids=["ddp", "fsdp"])
def test_canary_on_two_processes_matches_one_and_only_rank_0_saves(
    strategy: list[str], setup: dict, canary_one: list[tuple[int, float]], tmp_path: Path
) -> None:
    saves, out = tmp_path / "saves.txt", tmp_path / "two"
    run = _launch(_args("canary", setup["t5"], setup, out, 4), saves, strategy)
    assert run.returncode == 0, run.stderr[-3000:]
    _close(canary_one, _history(out))
    assert {line.split()[0] for line in saves.read_text().splitlines()} == {"0"}
    assert json.loads((out / "canary.json").read_text())
    model, _ = load_model(out)  # whole weights, gathered from the FSDP shards
    assert model.num_parameters() == load_model(setup["t5"])[0].num_parameters()


def test_prost_killed_after_a_checkpoint_resumes_from_it_on_two_processes(setup: dict, tmp_path: Path) -> None:
    saves, out = tmp_path / "saves.txt", tmp_path / "two"
    args = _args("prost", setup["gpt2"], setup, out, 4)
    killed = _launch(args, saves, KILL_AT="2")
    assert killed.returncode != 0
    assert json.loads((out / CHECKPOINT_DIR / STATE_FILE).read_text())["step"] == 2
    assert not (out / "prost.json").exists()  # the run never finished
    resumed = _launch([*args, "--resume"], saves)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "model saved to" in resumed.stdout and "after 4 updates" in resumed.stdout
    _close(_single(_args("prost", setup["gpt2"], setup, tmp_path / "one", 8), tmp_path / "one"), _history(out))
    assert {line.split()[0] for line in saves.read_text().splitlines()} == {"0"}


@pytest.mark.parametrize("name, kind", [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("deepspeed-zero2", "DEEPSPEED")])
def test_shipped_accelerate_configs_load_and_use_only_options_accelerate_knows(name: str, kind: str) -> None:
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    config = load_config_from_file(str(RESOURCES / "accelerate" / f"{name}.yaml"))
    assert config.distributed_type.value == kind and config.mixed_precision == "bf16"
    options = {action.dest for action in launch_command_parser()._actions}
    assert set(config.fsdp_config) | set(config.deepspeed_config) <= options
