"""Request and response bodies of the API (the OpenAPI docs are generated from these)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

MAX_BEAM = 8
MAX_LEN = 512


def _integral(x: Any) -> Any:
    """JSON has one number type and JSON Schema calls 4.0 an integer: take it as 4 (never "4" or true)."""
    return int(x) if type(x) is float and x.is_integer() else x


JsonInt = Annotated[int, BeforeValidator(_integral)]
# JSON Schema patterns search: at least one character that is not whitespace, spelt out as Python's str.isspace()
# set (the service strips with it), since \S means less in ECMA regexes (U+001C-U+001F and U+0085 are not \s there)
NON_BLANK = r"[^\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def _one_of_text_or_texts(schema: dict[str, Any]) -> None:
    """The schema of what the validator enforces: exactly one of text / texts, neither of them null."""
    props = schema["properties"]
    text = {"type": "string", "minLength": 1, "pattern": NON_BLANK}
    props["text"] = {**text, "description": props["text"].get("description", ""),
                     "examples": props["text"].get("examples", [])}
    props["texts"] = {"type": "array", "items": text, "minItems": 1, "description": props["texts"].get("description", "")}
    schema["oneOf"] = [{"required": ["text"]}, {"required": ["texts"]}]


class TranslateRequest(BaseModel):
    # strict: "3" is not a beam size and 5 is not a text; unknown fields are typos, not options
    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra=_one_of_text_or_texts)

    text: str | None = Field(
        None, description="one text: a sentence or a paragraph (cut into sentences, translated, joined back)",
        examples=["A man is riding a bike."],
    )
    texts: list[str] | None = Field(None, description="several texts, translated in one request")
    beam: JsonInt = Field(1, ge=1, le=MAX_BEAM, description="beam size (1 = greedy)")
    max_len: JsonInt = Field(256, ge=1, le=MAX_LEN, description="maximum output length in tokens")

    @model_validator(mode="after")
    def _one_input(self) -> TranslateRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError('send exactly one of "text" (a string) or "texts" (a list of strings)')
        if {"text", "texts"} & {k for k in self.model_fields_set if getattr(self, k) is None}:
            raise ValueError('"text" and "texts" may not be null: leave the one you do not send out')
        return self

    def sentences(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class Latency(BaseModel):
    queue_ms: float = Field(description="waiting for a batch")
    inference_ms: float = Field(description="the batched inference call")
    total_ms: float = Field(description="from the request's arrival to the response")


class TranslateResponse(BaseModel):
    translations: list[str] = Field(description="one per text, in order")
    segments: int = Field(description="sentences translated (each text is cut into sentences first)")
    variant: str
    model_size_bytes: int = Field(description="the variant's model files on disk")
    disk_bytes: int = Field(description="the variant's files on disk (its manifest's bytes)")
    resident_weight_bytes: int | None = Field(
        None, description="bytes of weights the loaded variant holds in memory (stored form: its int8 arrays)")
    rss_added_bytes: int | None = Field(None, description="resident memory its load added to the process (measured)")
    compression_ratio: float | None = Field(description="fp32 size / this variant's size (from its manifest)")
    bleu: float | None = Field(description="the variant's test BLEU recorded in its manifest")
    latency_ms: Latency
    provider: str = Field(description="the ONNX Runtime execution provider that really ran")
    batch_size: int = Field(description="sentences in the inference call that served this request")


class VariantInfo(BaseModel):
    name: str
    method: str | None
    bits: int | float | None
    sparsity: float | None
    bytes: int
    model_bytes: int
    ratio: float | None
    bleu: float | None
    default: bool
    loaded: bool
    state: Literal["available", "loading", "loaded", "broken"] = Field(
        description="broken: a manifest that cannot be read, a file that differs from its sha256, or a graph ONNX "
        "Runtime cannot open (see error; requests answer 503)")
    resident_bytes: int | None = Field(
        description="resident memory that loading it added to the process (measured); null while not loaded")
    disk_bytes: int = Field(0, description="the variant's files on disk (its manifest's bytes)")
    resident_weight_bytes: int | None = Field(
        None, description="bytes of weights the loaded variant holds in memory (stored form: its int8 arrays, "
        "each once); null while not loaded")
    rss_added_bytes: int | None = Field(
        None, description="resident memory that loading it added to the process (= resident_bytes); null while not loaded")
    provider: str | None
    error: str | None


class Problem(BaseModel):
    """Every 4xx/5xx body: ``detail`` says what was wrong and what to do."""

    detail: str
    known_variants: list[str] | None = None
    errors: list[dict] | None = None


class AttentionRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    text: str = Field(description="one English sentence", examples=["A man is riding a bike."])
    kind: Literal["encoder", "decoder", "cross"] = Field(
        "cross", description="encoder self-attention, decoder self-attention, or cross-attention (target x source)")
    layer: JsonInt = Field(0, ge=0, description="layer index, from 0")
    head: JsonInt = Field(0, ge=0, description="head index, from 0")
    format: Literal["png", "json"] = Field("png", description="png: a heatmap; json: the weights and the token lists")
    target: str | None = Field(None, description="German output to teacher-force on (default: the variant's own translation)")


class AttentionMap(BaseModel):
    variant: str
    kind: str
    layer: int
    head: int
    layers: int = Field(description="layers of this kind in the variant")
    heads: int
    translation: str = Field(description="the output the map was computed on")
    target_from: Literal["variant", "request"]
    source_tokens: list[str] = Field(description="source pieces, </s> last")
    target_tokens: list[str] = Field(description="output pieces, </s> last; row t of a decoder/cross map predicted token t")
    rows: list[str] = Field(description="labels of the map's rows (queries)")
    cols: list[str] = Field(description="labels of the map's columns (keys)")
    weights: list[list[float]] = Field(description="rows x cols, each row sums to 1")
    entropy: float = Field(description="mean row entropy of this map in nats (lower = sharper)")
