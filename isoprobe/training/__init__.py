"""Training, checkpoints and evaluation metrics."""
