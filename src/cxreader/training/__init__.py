"""Training: one loop for a single process or torchrun DDP, checkpoints that carry their contract."""
