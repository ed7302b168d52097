"""``python -m gansample.training ARGS`` = ``gansample train ARGS``: the entry point torchrun
starts once per process (``torchrun --nproc_per_node=2 -m gansample.training --data ...``)."""

import sys

from gansample.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
