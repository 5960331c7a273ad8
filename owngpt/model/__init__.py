"""Models: the decoder-only GPT (gpt.py), its KV cache (kv_cache.py), LoRA modules applied from outside it (lora.py), the
baselines (lstm.py; seq2seq.py, the encoder-decoder Transformer), and the registry of architectures a checkpoint can
name (registry.py)."""
