"""Training backends behind one Protocol. Heavy imports happen only when a backend is built."""

from __future__ import annotations

from adaptloop.train.base import FitContext, TrainedModel, Trainer

STRATEGIES = ("frozen", "lexical", "finetune", "lora", "ensemble", "threshold", "tagger", "tagger-lora",
              "frozen-tagger", "span-threshold", "zero-shot", "sft", "sft-lora")

__all__ = ["STRATEGIES", "FitContext", "Trainer", "TrainedModel", "trainer_for", "load_trained"]


def trainer_for(strategy: str) -> Trainer:
    """The backend for a pipeline strategy."""
    if strategy == "frozen":
        from adaptloop.train.frozen import FrozenEncoderTrainer

        return FrozenEncoderTrainer()
    if strategy == "lexical":
        from adaptloop.train.lexical import LexicalTrainer

        return LexicalTrainer()
    if strategy in ("finetune", "lora"):
        from adaptloop.train.finetune import FineTuneTrainer

        return FineTuneTrainer(lora=strategy == "lora")
    if strategy == "ensemble":
        from adaptloop.train.ensemble import EnsembleTrainer

        return EnsembleTrainer()
    if strategy == "threshold":
        from adaptloop.train.threshold import ThresholdTrainer

        return ThresholdTrainer()
    if strategy in ("tagger", "tagger-lora"):
        from adaptloop.train.tagger import TaggerTrainer

        return TaggerTrainer(lora=strategy == "tagger-lora")
    if strategy == "frozen-tagger":
        from adaptloop.train.frozen_tagger import FrozenTaggerTrainer

        return FrozenTaggerTrainer()
    if strategy == "span-threshold":
        from adaptloop.train.span_threshold import SpanThresholdTrainer

        return SpanThresholdTrainer()
    if strategy == "zero-shot":
        from adaptloop.train.causal import ZeroShot

        return ZeroShot()
    if strategy in ("sft", "sft-lora"):
        from adaptloop.train.causal import CausalTrainer

        return CausalTrainer(lora=strategy == "sft-lora")
    raise ValueError(f"unknown strategy '{strategy}'; choose one of {', '.join(STRATEGIES)}")


def load_trained(folder, *, embeddings=None) -> TrainedModel:
    """Reload any saved model (real or the test fake) from its folder; frozen-encoder classifiers in
    it embed through ``embeddings`` (an ``EmbeddingCache``) when given (``share_embeddings``)."""
    model = _load(folder)
    if embeddings is not None:
        from adaptloop.train.classifier import share_embeddings

        share_embeddings(model, embeddings)
    return model


def _load(folder) -> TrainedModel:
    import json
    from pathlib import Path

    meta = json.loads((Path(folder) / "adaptloop_model.json").read_text(encoding="utf-8"))
    if meta.get("kind") == "fake":
        import numpy as np

        from adaptloop.train.fake import FakeModel

        return FakeModel(meta["labels"], np.asarray(meta["centroids"], dtype=np.float32))
    if meta.get("kind") in ("ensemble", "tagger-ensemble"):
        from adaptloop.train.ensemble import load_ensemble

        return load_ensemble(Path(folder), load_trained)
    if meta.get("kind") == "lexical":
        from adaptloop.train.lexical import load_lexical

        return load_lexical(Path(folder))
    if meta.get("kind") == "fake-tagger":
        from adaptloop.train.fake import FakeTagger

        return FakeTagger(meta["labels"], meta["gazetteer"], meta.get("thresholds"))
    if meta.get("kind") == "tagger":
        from adaptloop.train.tagger import load_tagger

        return load_tagger(Path(folder))
    if meta.get("kind") == "frozen-tagger":
        from adaptloop.train.frozen_tagger import load_frozen_tagger

        return load_frozen_tagger(Path(folder))
    if meta.get("kind") == "causal":
        from adaptloop.train.causal import load_causal

        return load_causal(Path(folder))
    if meta.get("kind") == "threshold":
        from adaptloop.train.threshold import load_threshold

        return load_threshold(Path(folder), load_trained)
    from adaptloop.train.classifier import load_model

    return load_model(Path(folder))
