"""What an ONNX export costs traced by torch against filled from its architecture's template.

    python benchmarks/onnx_templates.py [--out benchmarks/results/onnx-templates.json]

For each encoder on the ladders, as a classifier's pooled encoder and as a 9-tag tagger: the first
export (torch traces it; the graph is kept as the template), then two exports of the same architecture
with other weights (each parameter moved by 1% noise), written from the template; each filled graph is
compared with torch on texts it was not traced with, and its int8 graph is quantized (timed: the
parity check quantizes the precision it opens). Templates go to a temporary folder, not the machine's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from adaptloop.train import onnx_export, onnx_template
from adaptloop.train.encoder import DEFAULT_ENCODER, load_base, resolve_encoder

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["my card still hasn't arrived after two weeks", "Send it to Maria Lopez at 12 Rue de Rivoli, Paris",
         "how do I top up", "I was charged twice for the same coffee this morning, please refund one"]
CASES = [(DEFAULT_ENCODER, "encoder"), ("sentence-transformers/all-mpnet-base-v2", "encoder"),
         (DEFAULT_ENCODER, "tagger"), ("intfloat/multilingual-e5-small", "tagger")]


def _module(name: str, kind: str) -> tuple[object, torch.nn.Module, str]:
    tok, model = load_base(name)
    if kind == "tagger":
        from transformers import AutoModelForTokenClassification

        model = AutoModelForTokenClassification.from_pretrained(resolve_encoder(name), num_labels=9)
        return tok, onnx_export._Logits(model.eval()), "logits"
    return tok, onnx_export._Pooled(model.eval()), "sentence_embedding"


def _apart(folder: Path, tok, module: torch.nn.Module) -> float:
    """Largest |ONNX - torch| on TEXTS (not the trace sample)."""
    batch = tok(TEXTS, padding=True, return_tensors="np")
    feed = {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
    got = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    with torch.no_grad():
        want = module(*(torch.tensor(v) for v in feed.values())).numpy()
    return float(np.abs(got - want).max())


def case(name: str, kind: str, work: Path) -> dict:
    tok, module, output = _module(name, kind)
    row: dict = {"encoder": name, "as": kind, "exports": []}
    for i in range(3):
        dest = work / f"{name.split('/')[-1]}-{kind}-{i}"
        t0 = time.monotonic()
        onnx_export._write(module, tok, dest, output)
        seconds = time.monotonic() - t0
        t0 = time.monotonic()
        onnx_export.quantized(dest, "int8")
        row["exports"].append({"how": "traced" if i == 0 else "template", "seconds": round(seconds, 2),
                               "int8_seconds": round(time.monotonic() - t0, 2),
                               "max_abs_vs_torch": _apart(dest, tok, module)})
        with torch.no_grad():  # the next export: the same architecture, other weights
            for p in module.parameters():
                p.add_(0.01 * p.abs().mean() * torch.randn_like(p))
    print(f"{name.split('/')[-1]:>24} {kind:>8}: " + ", ".join(
        f"{e['how']} {e['seconds']:.2f}s (int8 {e['int8_seconds']:.2f}s, |Δ| {e['max_abs_vs_torch']:.1e})"
        for e in row["exports"]), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "onnx-templates.json")
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory(prefix="adaptloop-templates-") as tmp:
        templates = Path(tmp) / "templates"
        onnx_template._folder = lambda key: templates / key  # not the machine's templates
        rows = [case(name, kind, Path(tmp)) for name, kind in CASES]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__, "rows": rows},
                                indent=1) + "\n")
    print(f"written to {a.out}")


if __name__ == "__main__":
    main()
