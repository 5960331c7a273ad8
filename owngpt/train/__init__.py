"""Training: fit(), the one loop used by pretraining and SFT (loop.py), with its optimizer and schedule (optim.py), resume
rules (resume.py), progress (progress.py) and run records (metrics.py); the recipes pretrain.py and sft.py."""
