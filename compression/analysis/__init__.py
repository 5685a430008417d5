"""The attention study: comparison figures and entropy tables across variants (PyTorch or ONNX Runtime)."""
