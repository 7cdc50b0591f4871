"""Chain-of-thought targets from a teacher endpoint (scripted with httpx.MockTransport). (The generation
cold start's teacher step: tests/unit/agent/test_generation.py.)"""

from __future__ import annotations

import json

import httpx
import pytest

from adaptloop.data.generation import Sample
from adaptloop.data.teacher import TeacherClient, teacher_cot
from adaptloop.errors import DataError

PROBLEMS = [Sample(prompt=f"Tom has {a} apples and buys {b} more. How many now?", target=f"#### {a + b}")
            for a, b in [(2, 3), (4, 5), (7, 1), (6, 6), (3, 9), (8, 2), (5, 5), (1, 1), (9, 4), (2, 8),
                         (3, 3), (4, 4), (6, 1), (7, 7), (5, 9), (8, 8), (2, 2), (9, 9), (1, 6), (3, 7)]]


def scripted(right_every: int = 2):
    """A teacher that answers right on every ``right_every``-th request and wrong otherwise."""
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append(body)
        q = body["messages"][-1]["content"]
        a, b = (int(w) for w in q.replace("?", "").split() if w.isdigit())
        answer = a + b if len(calls) % right_every == 0 else a + b + 1
        text = f"He starts with {a}.\nHe adds {b}: {a} + {b} = {answer}.\n#### {answer}"
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": text}}]})

    return httpx.MockTransport(handler), calls


def test_teacher_solutions_are_kept_only_when_their_answer_is_gold():
    transport, calls = scripted(right_every=2)
    client = TeacherClient("http://teacher/v1", "big-model", api_key="k", transport=transport)
    got = teacher_cot(PROBLEMS[:6], client, limit=4)
    assert (got.asked, got.accepted, got.rejected, got.failed) == (4, 2, 2, 0)
    assert len(got.samples) == 6 and got.samples[4:] == PROBLEMS[4:6]  # not asked: unchanged
    kept = [s for s in got.samples if "teacher" in s.source]
    assert len(kept) == 2 and all(s.target.endswith(f"#### {s.target.split()[-1]}") and "\n" in s.target
                                  for s in kept)
    assert calls[0]["model"] == "big-model" and calls[0]["temperature"] == 0
    assert PROBLEMS[0].target == "#### 5"  # inputs never mutated


def test_a_failing_teacher_is_given_up_on_with_the_reason():
    client = TeacherClient("http://teacher/v1", transport=httpx.MockTransport(lambda r: httpx.Response(503)))
    with pytest.raises(DataError, match="teacher endpoint http://teacher/v1 failed"):
        client.complete([{"role": "user", "content": "hi"}])
    got = teacher_cot(PROBLEMS, client, limit=20, max_failures=3)
    assert (got.asked, got.accepted, got.failed) == (3, 0, 3) and got.samples == PROBLEMS
    assert "503" in got.errors[0]
