"""Hugging Face MarianMT (opus-mt) checkpoints in and out."""
