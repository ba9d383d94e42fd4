"""The training loop, its run folder, checkpoints, the model interface and generation."""
