"""Evaluation: perplexity on held-out conversations, diversity of replies (distinct-n), persona checks."""
