"""Started by torchrun in test_scale: train the tiny config for 20 steps, then save this
rank's parameters so the test can compare the ranks."""

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import tiny_config  # noqa: E402

from gansample.training.train import Trainer, train  # noqa: E402

data, runs = sys.argv[1], sys.argv[2]
_run = Trainer.run


def run_and_dump(self: Trainer, progress: bool = True) -> Path:
    out = _run(self, progress)
    torch.save({"G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict()},
               Path(runs) / f"rank{os.environ['RANK']}.pt")
    return out


Trainer.run = run_and_dump  # type: ignore[method-assign]
train(tiny_config(Path(data), 20, conditional=True), runs, progress=False)
