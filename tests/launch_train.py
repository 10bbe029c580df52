"""`prosocial train` as `accelerate launch` runs it, with two hooks the distributed tests set by environment:

- PROSOCIAL_TEST_SAVES: a file to which every model save appends "<rank> <folder>" (who writes checkpoints);
- KILL_AT: the step after whose checkpoint rank 0 dies at once (a crash, for --resume).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager

from prosocial.cli.train import app
from prosocial.lm import finetune

RANK = int(os.environ.get("RANK", "0"))
save_model, atomic_write = finetune._save_model, finetune.atomic_write


def logged_save(model, tokenizer, path, *args) -> None:
    with open(os.environ["PROSOCIAL_TEST_SAVES"], "a") as handle:
        handle.write(f"{RANK} {path}\n")
    save_model(model, tokenizer, path, *args)


@contextmanager
def dying_write(path, *args, **kwargs):
    with atomic_write(path, *args, **kwargs) as handle:
        yield handle
    if path.name == finetune.STATE_FILE and json.loads(path.read_text())["step"] == int(os.environ["KILL_AT"]):
        os._exit(1)


finetune._save_model = logged_save
if "KILL_AT" in os.environ:
    finetune.atomic_write = dying_write

if __name__ == "__main__":
    app()
