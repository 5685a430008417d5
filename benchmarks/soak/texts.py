"""Request bodies of the soak and interference runs: small, medium, and the largest the service accepts."""

from __future__ import annotations

SENTENCES = [
    "A man in a blue shirt is standing on a ladder and cleaning the windows of a tall building.",
    "Two children watch him from the street below while their mother talks on the phone.",
    "A brown dog is running through the snow with a red ball in its mouth.",
    "Several people are sitting at a long wooden table and eating dinner together.",
    "A young woman with a yellow umbrella walks past a small bakery in the rain.",
    "An old man is playing the guitar on a bench in the park.",
]


def paragraph(chars: int = 1000) -> str:
    """A multi-sentence English text of about ``chars`` characters (the TZIP_MAX_TEXT_CHARS default)."""
    out, i = "", 0
    while len(out) + len(SENTENCES[i % len(SENTENCES)]) + 1 <= chars:
        out += SENTENCES[i % len(SENTENCES)] + " "
        i += 1
    return out.strip()


SMALL = {"text": SENTENCES[2]}
MEDIUM = {"texts": SENTENCES, "beam": 4}
# The maximum-size request: 64 texts of ~1,000 characters, beam 8, max_len 512. Segmented, it asks
# for ~215k decoder steps: over TZIP_MAX_REQUEST_TOKENS (32,768), answered 413 naming the limit.
OVER_LIMIT = {"texts": [paragraph()] * 64, "beam": 8, "max_len": 512}
# The largest requests the default limits accept: 768 sentences greedy (26,880 decoder steps), 108 at beam 8
# (30,240 steps).
MAX_GREEDY = {"texts": [paragraph()] * 64, "max_len": 512}
MAX_BEAM = {"texts": [paragraph()] * 9, "beam": 8, "max_len": 512}
