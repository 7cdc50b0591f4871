"""The peer for benchmarks/serve_load.py: what a user would write by hand to serve the same model.

    .venv/bin/python benchmarks/peer_server.py MODEL_DIR --port 8001

MODEL_DIR holds ``head.npz`` (the classifier head: weight (k, d), bias (k,), labels) and ``encoder``
(a sentence-transformers model name or folder); serve_load.py writes it from the production model.
A plain FastAPI app: one request, one ``SentenceTransformer.encode`` call, the head on top; no
micro-batching, no tracing, uvicorn's defaults.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer


class PredictIn(BaseModel):
    input: str


def make_app(folder: Path) -> FastAPI:
    head = np.load(folder / "head.npz")
    weight, bias, labels = head["weight"], head["bias"], [str(x) for x in head["labels"]]
    encoder = SentenceTransformer(json.loads((folder / "encoder.json").read_text())["encoder"], device="cpu")
    app = FastAPI()

    @app.post("/v1/predict")
    def predict(body: PredictIn) -> dict:
        emb = encoder.encode([body.input], normalize_embeddings=True)
        logits = emb @ weight.T + bias
        i = int(logits[0].argmax())
        return {"label": labels[i], "score": float(np.exp(logits[0, i]) / np.exp(logits[0]).sum())}

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--port", type=int, default=8001)
    a = ap.parse_args()
    uvicorn.run(make_app(a.model), host="127.0.0.1", port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
