"""tzip offline package: data, tokenizer, model, training, evaluation, compression, export.

Importing this package (or its torch-free modules: tokenizer, search, manifest, runtime) does not
import torch; the service relies on that.
"""
