"""Training: optimizer, compiled train step, checkpoints and the train loop."""
