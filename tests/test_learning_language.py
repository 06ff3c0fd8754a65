"""Instruction embeddings: packaged MiniLM, 384-d, normalised, cached on disk, clear errors."""

import numpy as np
import pytest

from atm_bench.errors import UserError


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATM_BENCH_CACHE", str(tmp_path))
    return tmp_path


def test_minilm_embeddings_are_cached(cache, monkeypatch):
    from atm_bench.learning import language

    sentences = ["open the middle drawer of the cabinet", "put the bowl on the stove", "open the middle drawer of the cabinet"]
    emb = language.embed_instructions(sentences)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(emb[0], emb[2]) and not np.allclose(emb[0], emb[1])
    assert len(list(cache.glob("text-embeddings/*/*.npy"))) == 2
    # similar instructions are closer than unrelated ones: the encoder is real, not random
    more = language.embed_instructions(["open the top drawer of the cabinet"])
    assert more[0] @ emb[0] > more[0] @ emb[1]

    def boom(self, sentences):
        raise AssertionError("should have come from the cache")

    monkeypatch.setattr(language.TextEncoder, "encode", boom)
    assert np.array_equal(language.embed_instructions(sentences[:2]), emb[:2])
    assert language.text_dim() == 384


def test_missing_encoder_folder_is_a_user_error(tmp_path):
    from atm_bench.learning.language import TextEncoder

    with pytest.raises(UserError, match="config.json"):
        TextEncoder(tmp_path / "bert-base-cased")
