"""Training (§4, §5): the trainer, its metrics and health checks, the optimiser, schedules, checkpoints."""
