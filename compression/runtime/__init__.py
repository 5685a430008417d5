"""Serving without torch: ONNX Runtime sessions, search, tokenizer, the artifact formats and the variant catalogue.

The service and its Docker image import this package only; nothing here imports torch (tests/test_layout.py)."""
