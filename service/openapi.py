"""The OpenAPI schema states what the service enforces: the limits of its settings and the known variants.

FastAPI generates the schema from the pydantic models, which cannot know ``TZIP_MAX_TEXTS`` or the variants
found at start-up; this fills them in once the registry exists (the schema is built on the first request
for it, after the lifespan has discovered the variants): text lengths and counts, ``?variant=`` as an enum
of the listed names, and the layer and head ranges every variant's attention graph accepts.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .schemas import NON_BLANK
from .settings import Settings

log = logging.getLogger(__name__)


def install(app: FastAPI, settings: Settings) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        registry = getattr(app.state, "registry", None)
        _limits(schema["components"]["schemas"], settings)
        if registry is None:  # before start-up: do not cache a schema without the variants
            return schema
        _variants(schema, registry.names)
        _attention_ranges(schema["components"]["schemas"]["AttentionRequest"],
                          [Path(v.manifest["path"]) for v in registry.variants() if v.state != "broken"])
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _text(s: Settings) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": s.max_text_chars, "pattern": NON_BLANK}


def _limits(components: dict[str, Any], s: Settings) -> None:
    req = components["TranslateRequest"]["properties"]
    req["text"].update(maxLength=s.max_text_chars)
    req["texts"].update(maxItems=s.max_texts)
    req["texts"]["items"].update(maxLength=s.max_text_chars)
    att = components["AttentionRequest"]["properties"]
    att["text"].update(_text(s))
    att["target"] = {"anyOf": [_text(s), {"type": "null"}], "description": att["target"].get("description", "")}


def _variants(schema: dict[str, Any], names: list[str]) -> None:
    for path in schema["paths"].values():
        for op in path.values():
            for param in op.get("parameters", []):
                if param["name"] == "variant" and param["in"] == "query":
                    param["schema"] = {"anyOf": [{"type": "string", "enum": names}, {"type": "null"}],
                                       "description": param["schema"].get("description", "")}


def _attention_ranges(request: dict[str, Any], directories: list[Path]) -> None:
    """layer < the fewest layers (encoder or decoder) and head < the fewest heads of any variant's graph."""
    import onnx

    from compression.runtime import onnx_format as fmt

    layers, heads = [], []
    for d in directories:
        try:
            spec = fmt.GraphSpec.load(d)
            graph = onnx.load(str(d / fmt.ATTENTION_FILE), load_external_data=False).graph
            enc = next(o for o in graph.output if o.name == fmt.ATTENTION_OUTPUTS[0]).type.tensor_type.shape.dim[0]
            layers.append(min(int(enc.dim_value) or spec.decoder_layers, spec.decoder_layers))
            heads.append(spec.n_heads)
        except Exception as e:  # no attention graph, or unreadable: that variant answers 501/503 anyway
            log.debug("no attention ranges from %s: %s", d, e)
    if layers:
        request["properties"]["layer"]["maximum"] = min(layers) - 1
        request["properties"]["head"]["maximum"] = min(heads) - 1
