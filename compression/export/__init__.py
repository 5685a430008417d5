"""ONNX export: write a model or variant as ONNX graphs + manifest (needs torch to read checkpoints)."""
