"""Training: one loop for a single process or torchrun DDP (gloo on CPUs, NCCL on GPUs)."""
