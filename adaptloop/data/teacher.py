"""Chain-of-thought targets from a teacher LLM behind any OpenAI-compatible endpoint.

When a math task's data carries final answers only (no worked solutions), a configured teacher
(`[generation] teacher_url`, e.g. a hosted API, vLLM or a llama.cpp server) is asked for a
worked solution of each training problem. A solution is kept only when its final answer equals
the gold one (rejection sampling: a teacher's wrong reasoning never becomes a target); the rest
keep their original target. Nothing is sent unless a URL is configured.

The requests go through the one LLM client (``data.llm``, the official ``openai`` client). Its HTTP
client is a seam: ``TeacherClient(transport=...)`` takes any ``httpx`` transport, so tests script the
teacher with ``httpx.MockTransport``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import httpx

from adaptloop.data.generation import Sample
from adaptloop.data.llm import LLMClient, LLMError
from adaptloop.data.outputs import final_answer, normalise_output
from adaptloop.errors import DataError

log = logging.getLogger(__name__)

API_KEY_ENV = "ADAPTLOOP_TEACHER_API_KEY"  # never written to adaptloop.toml
TEACHER_INSTRUCTION = ("Solve the problem step by step, one short step per line. End with a last line of the "
                       "form '#### <number>'.")


class TeacherClient:
    """The teacher role of the one LLM client (``data.llm.LLMClient``): greedy free-text answers.

    Args:
        url: the API root, e.g. ``http://127.0.0.1:8080/v1``.
        model: the model name the endpoint expects.
        api_key: bearer token (default: ``$ADAPTLOOP_TEACHER_API_KEY``; none when unset).
        timeout: seconds per request.
        transport: an ``httpx`` transport (tests); default the network.
    """

    def __init__(self, url: str, model: str = "", *, api_key: str | None = None, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None, max_tokens: int = 512) -> None:
        self.url = url.rstrip("/")
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
        self._http = httpx.Client(transport=transport) if transport is not None else None
        self.llm = LLMClient(url, model, api_key=key or None, timeout=timeout, retries=0, max_tokens=max_tokens,
                             http_client=self._http)

    def complete(self, messages: Sequence[dict[str, str]]) -> str:
        """The assistant's reply to ``messages``.

        Raises:
            DataError: the endpoint failed or answered in another shape.
        """
        try:
            return self.llm.text(messages)[0]
        except LLMError as exc:
            raise DataError(f"teacher endpoint {self.url} failed ({exc.reason}); check [generation] teacher_url, "
                            f"teacher_model and ${API_KEY_ENV}") from None

    def close(self) -> None:
        self.llm.close()


@dataclass(frozen=True)
class TeacherResult:
    """Training samples with the teacher's accepted solutions as targets, and the counts."""

    samples: list[Sample]
    asked: int = 0
    accepted: int = 0
    rejected: int = 0  # wrong final answer, or no worked steps
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def teacher_cot(samples: Sequence[Sample], client: TeacherClient, *, limit: int = 500,
                progress: Callable[[int], None] | None = None, max_failures: int = 5) -> TeacherResult:
    """Worked solutions for up to ``limit`` samples, kept where the final answer is the gold one.

    Never mutates ``samples``; the returned list has the same length and order (samples not
    asked, or whose solution was wrong, keep their target). After ``max_failures`` failed
    requests in a row the teacher is given up on (the rest keep their targets).
    """
    out, asked, accepted, rejected, failed, streak, errors = list(samples), 0, 0, 0, 0, 0, []
    for i, s in enumerate(samples[:limit]):
        gold = final_answer(s.target)
        if gold is None:
            continue
        asked += 1
        try:
            reply = client.complete([{"role": "system", "content": TEACHER_INSTRUCTION},
                                     {"role": "user", "content": s.prompt}])
            streak = 0
        except DataError as exc:
            failed, streak = failed + 1, streak + 1
            errors.append(str(exc))
            if streak >= max_failures:
                log.warning("teacher: %d failures in a row, giving up: %s", streak, exc)
                break
            continue
        finally:
            if progress is not None:
                progress(1)
        solution = normalise_output(reply, "math")
        if final_answer(solution) == gold and "\n" in solution.strip():
            out[i] = replace(s, target=solution, id="", source=f"{s.source}+teacher")
            accepted += 1
        else:
            rejected += 1
    return TeacherResult(out, asked, accepted, rejected, failed, errors[:3])
