"""tzip: compress a Transformer translation model and serve every variant.

Sub-packages by stage (docs/architecture.md): ``train`` (data, model, training), ``compress`` (methods,
fine-tuning, variants), ``export`` (ONNX), ``analysis`` (attention study), ``interop`` (MarianMT), and
``runtime``, the torch-free part the service imports (sessions, search, tokenizer, formats, catalogue).
``commands`` is the CLI over them: ``python -m compression COMMAND``.
"""
