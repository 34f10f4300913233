"""models/text_clean.py: plain labels skip ftfy, and every text still gets exactly open_clip's tokens."""

from __future__ import annotations

import string

import open_clip
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.text_clean import is_plain, with_fast_clean

plain_text = st.text(st.sampled_from(string.printable), max_size=60)  # includes & < ' \t \n
any_text = st.text(max_size=40)


@pytest.fixture(scope="module")
def tokenizers() -> tuple[open_clip.tokenizer.SimpleTokenizer, open_clip.tokenizer.SimpleTokenizer]:
    return open_clip.get_tokenizer("ViT-B-32"), with_fast_clean(open_clip.get_tokenizer("ViT-B-32"))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    text=plain_text
    | any_text
    | st.sampled_from(["caf\u00e9", "Tom &amp; Jerry", "a\u00a0b", "\u201cq\u201d"])
)
def test_tokens_are_open_clips_for_any_text(tokenizers: tuple, text: str) -> None:
    reference, fast = tokenizers
    assert fast.encode(text) == reference.encode(text)


def test_plain_labels_take_the_fast_path_and_others_do_not(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = open_clip.tokenizer.ftfy.fix_text
    monkeypatch.setattr(open_clip.tokenizer.ftfy, "fix_text", lambda text: calls.append(text) or real(text))
    fast = with_fast_clean(open_clip.get_tokenizer("ViT-B-32"))
    fast.encode("a photo of a striped cat.")
    assert calls == []
    for text in ["caf\u00e9", "Tom &amp; Jerry", "line\nbreak"]:
        assert not is_plain(text)
        fast.encode(text)
    assert calls == ["caf\u00e9", "Tom &amp; Jerry", "line\nbreak"]
