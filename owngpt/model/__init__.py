"""Models: the decoder-only GPT (gpt.py), its KV cache (kv_cache.py), LoRA modules applied from outside it (lora.py), and
the registry of architectures a checkpoint can name (registry.py)."""
