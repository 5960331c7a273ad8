"""Models: the decoder-only GPT (gpt.py) and adapters applied from outside it (lora.py)."""
