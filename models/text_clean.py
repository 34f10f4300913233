"""A fast path through open_clip's text cleaning for plain text, with identical tokens.

open_clip's tokenizer cleans every text with ftfy.fix_text and html.unescape (twice) before BPE.
ftfy costs ~100 us per short label: most of the time of tokenizing 1,000 new labels (136 ms of
~200 ms on the development CPU, bench/text_first_request.py), which a first request with new labels
pays. On text that is printable ASCII and has no '&', both are the identity: ftfy repairs
mojibake, C1 controls, ligatures, width and quote variants (all non-ASCII), line breaks, control
characters and terminal escapes (not printable) and HTML entities (need '&'); html.unescape only
touches entities. Such text skips them; anything else takes open_clip's own path.
tests/models/test_text_clean.py checks the tokens are identical, with hypothesis.
"""

from __future__ import annotations

from collections.abc import Callable

import open_clip.tokenizer as oct

# open_clip's clean functions, and what each does after basic_clean (ftfy + unescape + strip)
_AFTER_BASIC: dict[Callable[[str], str], Callable[[str], str]] = {
    oct._clean_lower: lambda text: oct.whitespace_clean(text).lower(),
    oct._clean_whitespace: oct.whitespace_clean,
    oct._clean_canonicalize: oct.canonicalize_text,
}


def is_plain(text: str) -> bool:
    """Printable ASCII without '&': ftfy and html.unescape leave it as it is."""
    return text.isascii() and text.isprintable() and "&" not in text


def with_fast_clean(tokenizer: oct.SimpleTokenizer) -> oct.SimpleTokenizer:
    """The same tokenizer, its clean function skipping ftfy for plain text. A clean function this
    module does not know is left alone."""
    full = tokenizer.clean_fn
    after_basic = _AFTER_BASIC.get(full)
    if after_basic is None:
        return tokenizer

    def clean(text: str) -> str:
        return after_basic(text.strip()) if is_plain(text) else full(text)

    tokenizer.clean_fn = clean
    return tokenizer
