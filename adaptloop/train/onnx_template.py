"""ONNX graphs by architecture: torch exports an architecture once a machine; a model of the same
architecture is written from that graph with its own weights put in.

torch's exporter traces the whole module each time (MiniLM: 5-6 s, most of an export; the parity
check that follows scores the eval set). Two models of one architecture (the same module, config,
parameter names and shapes: a fine-tune and its base, two taggers of one encoder with the same tags)
export to the same graph but for its weights. After a full export, each float initializer of the
graph is matched to the parameter it holds (the same values, or their transpose: the exporter folds
a linear layer's transpose into a new initializer); the graph and that map are kept under
``$ADAPTLOOP_CACHE/onnx-templates/<key>``. A later export of that architecture loads the graph, puts
the model's parameters in (0.6 s for MiniLM) and runs it once on the trace sample against torch; a
graph that does not compute what torch does is deleted and torch exports (``onnx_export._write``).
A graph whose float initializers do not each match exactly one parameter (tied weights, a constant
torch folded from several) gets no template.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from adaptloop.train.packaged import cache_dir

VERSION = 1  # bump when the exporter's call (opset, dynamic axes, wrappers) changes
KEPT = 8  # templates a machine keeps, the most recently used (MiniLM's 90 MB, mpnet's 420 MB, e5-small's 470 MB)
TOLERANCE = 1e-4  # the filled graph vs torch on the trace sample, absolute and relative (MiniLM: 2e-7 apart)


def _folder(key: str) -> Path:
    return cache_dir() / "onnx-templates" / key


def key(module: torch.nn.Module, names: list[str], output: str) -> str:
    """What makes two modules export to the same graph: the wrapper, inputs and output, the inner model's
    config, every parameter's name, shape and dtype, and the torch / onnx versions."""
    import onnx

    inner = next(iter(module.children()), None)
    config = getattr(inner, "config", None)
    parts = [str(VERSION), type(module).__qualname__, output, *names, torch.__version__, onnx.__version__,
             config.to_json_string(use_diff=False) if config is not None else "",
             *(f"{k}:{tuple(v.shape)}:{v.dtype}" for k, v in module.state_dict().items())]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _arrays(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def _weights(graph: Path, params: dict[str, np.ndarray]) -> dict[str, list] | None:
    """Each float initializer of ``graph`` → [parameter, transposed]; None when one matches no parameter or
    several."""
    import onnx
    from onnx import numpy_helper

    by_head: dict[tuple, list[tuple[str, bool]]] = defaultdict(list)  # (shape, first values) → candidates
    for name, v in params.items():
        if v.dtype == np.float32 and v.size > 1:
            by_head[(v.shape, v.ravel()[:8].tobytes())].append((name, False))
            if v.ndim == 2:
                by_head[(v.T.shape, np.ascontiguousarray(v.T).ravel()[:8].tobytes())].append((name, True))
    found: dict[str, list] = {}
    for init in onnx.load(str(graph)).graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or int(np.prod(init.dims)) < 2:
            continue
        a = numpy_helper.to_array(init)
        hits = [(n, t) for n, t in by_head.get((a.shape, a.ravel()[:8].tobytes()), [])
                if np.array_equal(params[n].T if t else params[n], a)]
        if len(hits) != 1:
            return None
        found[init.name] = list(hits[0])
    return found


def keep(key_: str, module: torch.nn.Module, graph: Path) -> bool:
    """Keep ``graph``, just exported from ``module``, as the template of its architecture (once: the first
    writer wins). False when it cannot serve as one or the cache cannot be written."""
    folder = _folder(key_)
    if (folder / "weights.json").is_file():
        return True
    weights = _weights(graph, _arrays(module))
    if weights is None:
        return False
    staging = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
    try:
        staging.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(graph, staging / "model.onnx")
        (staging / "weights.json").write_text(json.dumps(weights), encoding="utf-8")
        os.rename(staging, folder)
    except OSError:  # another process kept it first, or the cache is read-only
        shutil.rmtree(staging, ignore_errors=True)
        return (folder / "weights.json").is_file()
    _prune(folder.parent)
    return True


def _prune(root: Path) -> None:
    """Drop all but the ``KEPT`` most recently used templates (``fill`` marks a use)."""
    kept = sorted((d for d in root.iterdir() if (d / "weights.json").is_file()),
                  key=lambda d: (d / "weights.json").stat().st_mtime, reverse=True)
    for d in kept[KEPT:]:
        shutil.rmtree(d, ignore_errors=True)


def fill(key_: str, module: torch.nn.Module, sample: dict[str, torch.Tensor], dest: Path) -> bool:
    """Write ``module``'s graph to ``dest`` from its architecture's template, checked against torch on
    ``sample``; False (nothing written) when there is no template or the filled graph computes otherwise."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    folder = _folder(key_)
    try:
        weights = json.loads((folder / "weights.json").read_text(encoding="utf-8"))
        graph = onnx.load(str(folder / "model.onnx"))
    except (OSError, ValueError):
        return False
    params = _arrays(module)
    for init in graph.graph.initializer:
        if init.name in weights:
            name, transposed = weights[init.name]
            v = params[name].T if transposed else params[name]
            init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(v), init.name))
    onnx.save(graph, str(dest))
    session = ort.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
    got = session.run(None, {n: t.numpy().astype(np.int64) for n, t in sample.items()})[0]
    with torch.no_grad():
        want = module(*sample.values()).numpy()
    if got.shape == want.shape and np.allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE):
        with contextlib.suppress(OSError):
            os.utime(folder / "weights.json")  # used: the last to be pruned
        return True
    dest.unlink()
    shutil.rmtree(folder, ignore_errors=True)  # a template that misleads is not kept
    return False
