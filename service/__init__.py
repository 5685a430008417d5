"""The tzip translation service: FastAPI over ONNX Runtime, no torch (``python -m service``)."""
