"""Optional fast CPU decoding of a packaged GGUF base model through llama.cpp.

``llama-cpp-python`` is never required (it compiles for ~7 minutes) and never built in CI. When
it is installed and ``[generation] llama_cpp`` is on, an *untrained* packaged model
(SmolLM2-135M-Instruct, Gemma-3-270M) decodes through llama.cpp on the very GGUF its
transformers weights were dequantized from: ~10x the tokens per second on CPU (see
``../shared/MEASURED.md``). A fine-tuned model has no GGUF and always decodes with transformers;
training always uses transformers.

The prompt is the same text transformers would see (the chat template rendered by the HF
tokenizer), so both paths answer the same question.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

STOP = ("<|im_end|>", "<end_of_turn>", "<|endoftext|>")


def available() -> bool:
    """Whether llama-cpp-python is importable (located, not imported: importing loads the library)."""
    return importlib.util.find_spec("llama_cpp") is not None


class LlamaCppDecoder:
    """Greedy completions of rendered prompts from one GGUF file.

    Args:
        gguf: the model file.
        n_ctx: context window (prompt + completion tokens).
        threads: CPU threads (default: all cores).
        llama_cls: the ``llama_cpp.Llama`` class (a seam for tests).
    """

    def __init__(self, gguf: Path, *, n_ctx: int = 2048, threads: int | None = None, llama_cls=None) -> None:
        if llama_cls is None:
            from llama_cpp import Llama as llama_cls
        self.gguf = Path(gguf)
        self.llm = llama_cls(model_path=str(self.gguf), n_ctx=n_ctx, n_threads=threads or os.cpu_count() or 1,
                             verbose=False)

    def complete(self, prompts: Sequence[str], *, max_new_tokens: int, repeat_penalty: float = 1.0,
                 progress=None) -> list[str]:
        """One greedy completion per rendered prompt, in order."""
        out = []
        for prompt in prompts:
            r = self.llm.create_completion(prompt=prompt, max_tokens=max_new_tokens, temperature=0.0, top_k=1,
                                           repeat_penalty=repeat_penalty, stop=list(STOP))
            out.append(str(r["choices"][0]["text"]).strip())
            if progress is not None:
                progress(1)
        return out
