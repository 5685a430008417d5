"""Compression: one module per method under methods/, the compact variant format writer, fine-tuning, variants (needs torch)."""
