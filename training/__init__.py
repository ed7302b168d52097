"""The gansample trainer (PyTorch). Install with the `train` extra."""
