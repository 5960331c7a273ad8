"""Interop and export: Hugging Face GPT-2 weight import/export."""
