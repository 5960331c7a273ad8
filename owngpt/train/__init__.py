"""Training: optimizer and schedule, checkpoints, and fit(), the one loop used by pretraining and SFT."""
