"""The generation cold start's rules of thumb as pure functions: which decode-time moves a
node's findings call for, which training targets cannot be right, which worked examples a
few-shot prompt shows. ``agent.generation`` runs them; nothing here trains or decodes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from adaptloop.data.generation import Sample
from adaptloop.diagnose.generation import score_outputs
from adaptloop.types import Finding, content_hash

# The generation cold start's moves, in the order it considers them: (name, when, what it does).
GENERATION_MOVES = (
    ("clean-targets", "always (curation)", "training targets that cannot be right leave the pool: math without a "
     "final number, code whose reference fails its own tests, empty or overlong summaries"),
    ("teacher-cot", "math data with final answers only and generation.teacher_url set",
     "worked solutions from the teacher LLM, kept when their final answer is the gold one"),
    ("base", "always", "the untrained model with the full instruction (the label list for closed answer sets)"),
    ("sft", "always, with the whole remaining budget", "full fine-tune on the kind's targets (chain of thought for "
     "math with rationales), loss on the completion only"),
    ("lora / more-epochs", "the fine-tune ended early", "LoRA after over-fitting; twice the epochs while dev loss "
     "still fell"),
    ("format-normalise", "format errors, extraction failures or length drift on the best node",
     "outputs put into the task's format (label snapped, #### n marked, code fenced, first sentence); a "
     "rescoring, no decoding"),
    ("prompt-template", "format errors of the untrained model", "3 worked examples (SHOTS) before each input"),
    ("decoding", "repetition loops in >= 5% of dev outputs (not code)", "decode with a repetition penalty"),
    ("more-tokens", "truncation in >= 10% of dev outputs", "twice the decoding limit (at most 1024)"),
)
MAX_DECODE = 1024  # the most-tokens move never decodes longer than this
# the decoding move's penalty (HF generate; 1.0 = off). 1.3 turned every mbpp dev output into
# code that does not parse (code repeats its names by nature): milder, and never for code
REPETITION_PENALTY = 1.15
SHOTS = 3  # worked examples in a prompt-template fix (each costs its tokens on every input)


def decode_moves(kind: str, findings: Sequence[Finding], max_new_tokens: int, *, zero_shot: bool = False
                 ) -> list[tuple[str, dict[str, Any], float, str]]:
    """Decode-time interventions the findings call for, most severe finding first.

    Args:
        kind: the task's output kind.
        findings: ``diagnose.generation.diagnose`` of the node's dev rows.
        max_new_tokens: the node's decoding limit.
        zero_shot: the node is the untrained model (a prompt-template fix applies: worked
            examples before the input; a fine-tuned model has learned the format instead).

    Returns:
        ``(name, changes for CausalLM.with_decoding, cost in dev decodes, reason)`` per move; cost 0
        means a rescoring of the parent's outputs.
    """
    moves: list[tuple[float, tuple[str, dict[str, Any], float, str]]] = []
    for f in findings:
        sev, summary = f.severity, f.summary
        if f.kind in ("format_errors", "extraction_failure", "length_drift") and kind != "text" \
                and "format-normalise" in f.suggests:
            moves.append((sev, ("format-normalise", {"normalise": kind}, 0.0,
                                f"{summary}: put outputs into the {kind} format where their content allows")))
            if zero_shot and f.kind == "format_errors":
                moves.append((sev * 0.99, ("prompt-template", {"shots": SHOTS}, 1.5,
                                           f"{summary}: show {SHOTS} worked examples before each input")))
        elif f.kind == "repetition" and sev >= 0.05 and kind != "code":
            moves.append((sev, ("decoding", {"decoding": {"repetition_penalty": REPETITION_PENALTY}}, 1.0,
                                f"{summary}: decode with a repetition penalty of {REPETITION_PENALTY}")))
        elif f.kind == "truncation" and sev >= 0.1 and kind != "label" and max_new_tokens < MAX_DECODE:
            longer = min(MAX_DECODE, 2 * max_new_tokens)
            moves.append((sev, ("more-tokens", {"max_new_tokens": longer}, longer / max(1, max_new_tokens),
                                f"{summary}: decode up to {longer} tokens")))
    seen: set[str] = set()
    out = []
    for _, move in sorted(moves, key=lambda m: -m[0]):
        if move[0] not in seen:
            seen.add(move[0])
            out.append(move)
    return out


def unusable_targets(kind: str, samples: Sequence[Sample], *, sandbox=None) -> dict[str, str]:
    """Training samples whose reference cannot be a right answer: ``{sample id: reason}``.

    math: no final number to read; code: the reference fails its own tests in the sandbox;
    summary: an empty target, or one over 5x the median target length (a pasted abstract).
    The smaller, cleaner data the doctrine prefers to noisy data.
    """
    if kind == "math":
        from adaptloop.data.outputs import final_answer

        return {s.id: "no final answer in the target" for s in samples if final_answer(s.target) is None}
    if kind == "code":
        tested = [s for s in samples if s.extra.get("test_list") or s.extra.get("test")]
        if not tested:
            return {}
        scored = score_outputs("code", tested, [s.target for s in tested], sandbox=sandbox)
        return {s.id: "the reference fails its own tests" for s, r in zip(tested, scored["rows"]) if not r["correct"]}
    if kind == "summary":
        lengths = sorted(len(s.target.split()) for s in samples)
        median = lengths[len(lengths) // 2] if lengths else 0
        return {s.id: "empty or overlong target" for s in samples
                if not s.target.strip() or len(s.target.split()) > 5 * max(1, median)}
    return {}


def few_shot(samples: Sequence[Sample], n: int, *, seed: int, show: Callable[[Sample], Sample],
             max_chars: int = 600) -> list[tuple[str, str]]:
    """``n`` short worked examples (prompt, target) as the model would be shown them: the seeded
    content-hash order, samples under ``max_chars``, distinct targets first (a closed label set
    shows different labels)."""
    ranked = sorted(samples, key=lambda s: content_hash([seed, "shot", s.id]))
    shown = [show(s) for s in ranked]
    short = [x for x in shown if len(x.prompt) + len(x.target) <= max_chars] or shown
    picked, targets = [], set()
    for x in short:
        if x.target not in targets:
            picked.append((x.prompt, x.target))
            targets.add(x.target)
        if len(picked) == n:
            break
    return picked
