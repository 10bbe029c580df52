"""`prosocial train prost-mini`: rebuild the packaged Prost-mini adapter (LoRA on SmolLM2-135M, llama.cpp GGUF)."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from prosocial.data.mixture import PROST_WEIGHTS
from prosocial.prost.mini import PROSOCIAL_TRAIN, RESOURCE_DIR

app = typer.Typer(help="Train the offline Prost-mini response generator.", no_args_is_help=True)


@app.command("prost-mini")
def prost_mini(
    out: Path = typer.Option(RESOURCE_DIR, help="Where the adapter GGUF and its settings are written."),
    work_dir: Path = typer.Option(None, help="Checkpoint folder (default: <prosocial cache>/prost-mini-train)."),
    data: Path = typer.Option(PROSOCIAL_TRAIN, help="ProsocialDialog partial train.json (its tail is the dev)."),
    steps: int = typer.Option(500, help="Optimizer updates (batch 8; 3 to 6 s each on 2 idle threads)."),
    lr: float = typer.Option(1e-3, help="AdamW learning rate for the LoRA weights."),
    rank: int = typer.Option(16, help="LoRA rank (alpha is twice the rank)."),
    decay: str = typer.Option("constant", help="Learning rate after warm-up: constant, or linear (down to 0 at the "
                              "last step)."),
    prosocial_weight: float = typer.Option(PROST_WEIGHTS["prosocial"], help="ProsocialDialog's weight in the "
                                           "mixture; the casual corpora keep the paper's B.2 weights (3 each, "
                                           "BlendedSkillTalk 1)."),
    eval_every: int = typer.Option(10, help="Dev perplexity and a resumable checkpoint every N updates."),
    threads: int = typer.Option(2, help="torch threads."),
    fresh: bool = typer.Option(False, "--fresh", help="Ignore an existing checkpoint and start over."),
) -> None:
    """LoRA-train Prost-mini (RoT & Response, with recovered history) on ProsocialDialog + casual corpora; a killed
    run continues when restarted."""
    from prosocial.prost.mini import train_prost_mini

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    path = train_prost_mini(out, work_dir, data, steps=steps, resume=False if fresh else None, threads=threads,
                            lr=lr, rank=rank, alpha=2 * rank, decay=decay, prosocial_weight=prosocial_weight,
                            eval_every=eval_every)
    typer.echo(f"adapter written to {path}")


if __name__ == "__main__":
    app()
