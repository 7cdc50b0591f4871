"""The optional llama.cpp decoding path against transformers, on the same untrained packaged model.

    .venv/bin/python benchmarks/llamacpp_decode.py --n 32 --max-new-tokens 256

Needs llama-cpp-python (never a dependency: `pip install llama-cpp-python`, ~7 minutes to
compile). Decodes the first N gsm8k test problems with SmolLM2-135M-Instruct through both engines
(same prompts: the chat template rendered by the HF tokenizer), and writes seconds, the share of
identical outputs and both exact-match scores to benchmarks/results/llamacpp-decode.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    args = ap.parse_args()
    from adaptloop.data.generation import load_generation
    from adaptloop.data.prompts import instruction, present
    from adaptloop.diagnose.generation import score_outputs
    from adaptloop.train import llamacpp
    from adaptloop.train.causal import load_base

    if not llamacpp.available():
        sys.exit("llama-cpp-python is not installed: pip install llama-cpp-python (it compiles for ~7 minutes)")
    samples = list(load_generation(DATASETS / "gsm8k" / "test.jsonl").samples[:args.n])
    shown = [present(s, "math", instruction("math", (), "full"), "cot") for s in samples]
    result = {"model": args.model, "n": len(samples), "max_new_tokens": args.max_new_tokens, "engines": {}}
    outputs = {}
    for engine in ("llama.cpp", "transformers"):
        lm = load_base(args.model, max_new_tokens=args.max_new_tokens, llama_cpp=engine == "llama.cpp")
        assert (lm.fast is not None) == (engine == "llama.cpp")
        t0 = time.perf_counter()
        outputs[engine] = lm.generate(shown, batch_size=16)
        seconds = time.perf_counter() - t0
        scored = score_outputs("math", samples, outputs[engine])
        n_tokens = sum(len(lm.tok(o, add_special_tokens=False)["input_ids"]) for o in outputs[engine])
        result["engines"][engine] = {"seconds": round(seconds, 1), "tokens": n_tokens,
                                     "tokens_per_second": round(n_tokens / seconds, 1),
                                     "exact_match": scored["exact_match"], "format_ok": scored["format_ok"]}
        print(f"{engine}: {seconds:.1f}s, {n_tokens / seconds:.1f} tokens/s, exact match "
              f"{scored['exact_match']:.3f}", flush=True)
    same = sum(a == b for a, b in zip(outputs["llama.cpp"], outputs["transformers"]))
    result["identical_outputs"] = same / len(samples)
    result["examples"] = [{"llama.cpp": a[:300], "transformers": b[:300]}
                          for a, b in list(zip(outputs["llama.cpp"], outputs["transformers"]))[:3]]
    out = REPO / "benchmarks" / "results" / "llamacpp-decode.json"
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(f"identical outputs: {same}/{len(samples)}; wrote {out}")


if __name__ == "__main__":
    main()
