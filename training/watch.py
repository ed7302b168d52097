"""Training you can watch: TensorBoard event files (the ``tensorboard`` extra) and a
``metrics.png`` plot of the losses and evaluation metrics in every run folder.

Both read what the trainer already logs (metrics.jsonl rows); only rank 0 writes them.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from gansample.errors import GansampleError
from gansample.files import atomic_write

log = logging.getLogger("gansample")
PLOT = "metrics.png"
TB_DIR = "tensorboard"
# Evaluation metrics worth a panel each (when present).
EVAL_KEYS = ("frechet_distance", "precision", "recall", "density", "coverage")


class TensorBoard:
    """Scalars (losses, learning rates, img/s, evaluation metrics) and sample grids, in
    ``RUN/tensorboard/`` for ``tensorboard --logdir RUN``."""

    def __init__(self, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch raises ImportError (not ModuleNotFoundError) without tensorboard
            raise GansampleError("tensorboard: logging to TensorBoard needs the 'tensorboard' extra: "
                                 "pip install 'gansample[tensorboard]' (or --set tensorboard=false)",
                                 "tensorboard") from None
        self.writer = SummaryWriter(str(run_dir / TB_DIR))

    def scalars(self, step: int, row: dict[str, Any], prefix: str = "train") -> None:
        for k, v in row.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
                self.writer.add_scalar(f"{prefix}/{k}", float(v), step)
        self.writer.flush()

    def grid(self, step: int, image: np.ndarray) -> None:
        """uint8 [H, W, C] sample grid."""
        self.writer.add_image("samples", image, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSONL log (none when it does not exist yet); a line cut off by a
    killed run is skipped."""
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:  # a line cut off by a killed run
                continue
    return rows


def plot_metrics(run_dir: Path) -> Path | None:
    """Write RUN/metrics.png from RUN/metrics.jsonl: losses over steps, then one panel per
    evaluation metric. Returns None when there is nothing to plot yet."""
    rows = read_rows(run_dir / "metrics.jsonl")
    train = [r for r in rows if "loss_d" in r and "d_step" not in r]
    evals = [r for r in rows if "eval" in r]
    if not train and not evals:
        return None
    import matplotlib
    matplotlib.use("Agg")  # no display; safe in any thread
    import matplotlib.pyplot as plt

    keys = [k for k in EVAL_KEYS if any(k in r["eval"] for r in evals)]
    panels = 1 + len(keys)
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 3.2), squeeze=False)
    ax = axes[0][0]
    steps = [r["step"] for r in train]
    for k in ("loss_d", "loss_g"):
        if train:
            ax.plot(steps, [r.get(k, np.nan) for r in train], label=k, linewidth=1)
    ax.set_xlabel("step")
    ax.set_title("losses")
    if train:  # an evaluation logged before the first training row has no loss lines yet
        ax.legend(fontsize=8)
    for ax, k in zip(axes[0][1:], keys):
        ax.plot([r["step"] for r in evals], [r["eval"].get(k, np.nan) for r in evals], marker="o", linewidth=1)
        ax.set_xlabel("step")
        ax.set_title(k.replace("_", " "))
    fig.suptitle(run_dir.name, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    path = run_dir / PLOT
    atomic_write(path, buf.getvalue())
    return path
