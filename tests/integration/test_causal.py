"""The causal-LM backend on the real (packaged) SmolLM2."""

from __future__ import annotations

import pytest

from adaptloop.data.generation import Sample
from adaptloop.train.causal import load_base

pytestmark = pytest.mark.integration


def test_smollm2_loads_offline_and_answers():
    """The packaged SmolLM2 dequantizes once into the cache and generates with its chat template."""
    lm = load_base("HuggingFaceTB/SmolLM2-135M-Instruct", max_new_tokens=8)
    assert lm.tok.chat_template
    out = lm.generate([Sample(prompt="What is the capital of France? Answer in one word.", target="Paris")])
    assert "paris" in out[0].lower(), out
