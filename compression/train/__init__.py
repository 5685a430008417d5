"""Data, the PyTorch Transformer, training, checkpoints and evaluation (needs torch)."""
