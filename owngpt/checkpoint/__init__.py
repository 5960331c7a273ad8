"""Checkpoints: the folder format every later stage reads (format.py), its typed meta (meta.py), LoRA adapter
folders (adapter.py)."""
