"""One client for every LLM role (planner, judge, teacher): any OpenAI-compatible endpoint.

``LLMClient.complete(messages, schema)`` asks for a JSON object of a pydantic ``schema``: with
``response_format`` ``json_schema`` where the server takes it (a server that refuses it is asked
again without, and not offered it again), else the answer is parsed (code fences and prose around
the object are tolerated) and validated; an answer that does not validate gets one repair request
that quotes the error. Timeouts and connection errors are retried by the official ``openai``
client (``retries``); what still fails raises ``LLMError`` with the tokens it cost. Every answer
reports its token counts, so a run can keep to its token budget and show its cost.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)
Message = dict[str, str]


class LLMError(Exception):
    """A request that produced no usable answer: the reason, what was answered, and what it cost."""

    def __init__(self, reason: str, *, text: str = "", prompt_tokens: int = 0, completion_tokens: int = 0,
                 messages: Sequence[Message] = ()) -> None:
        super().__init__(reason)
        self.reason, self.text = reason, text
        self.prompt_tokens, self.completion_tokens = prompt_tokens, completion_tokens
        self.messages = list(messages)


@dataclass(frozen=True)
class Reply(Generic[T]):
    parsed: T
    text: str  # the answer that validated
    messages: list[Message]  # what was sent for it (a repair request included)
    prompt_tokens: int
    completion_tokens: int
    seconds: float


def parse_json(text: str, schema: type[T]) -> T:
    """The first JSON object in ``text``, validated against ``schema``.

    Raises:
        ValueError: no object, invalid JSON, or a schema violation (the message says which).
    """
    body = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("the answer holds no JSON object")
    try:
        return schema.model_validate(json.loads(body[start:end + 1]))
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} at character {exc.pos}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"schema violation at {'.'.join(map(str, first['loc'])) or 'top'}: {first['msg']}") from None


class LLMClient:
    """An OpenAI-compatible chat endpoint (the official ``openai`` client underneath).

    Args:
        url: the API root, e.g. ``http://127.0.0.1:8080/v1``.
        model: the model name the endpoint expects.
        api_key: the key (callers read it from the environment variable the settings name).
        timeout: seconds per request.
        retries: retries of a request that timed out or failed to connect.
        max_tokens: the longest answer.
        http_client: an ``httpx.Client`` to send through (tests give one with a scripted transport).
    """

    def __init__(self, url: str, model: str = "", *, api_key: str | None = None, timeout: float = 60.0,
                 retries: int = 2, max_tokens: int = 400, http_client: Any = None) -> None:
        from openai import OpenAI

        self.url, self.model, self.max_tokens, self.timeout = url.rstrip("/"), model or "default", max_tokens, timeout
        self._client = OpenAI(base_url=self.url, api_key=api_key or "none", timeout=timeout, max_retries=retries,
                              http_client=http_client)
        self.json_schema = True  # offered until the server refuses it

    @classmethod
    def from_settings(cls, cfg: Any) -> LLMClient | None:
        """The client for ``[llm]`` settings; None when no ``url`` is set (offline)."""
        if not cfg.url:
            return None
        return cls(cfg.url, cfg.model, api_key=os.environ.get(cfg.api_key_env) or None, timeout=cfg.timeout,
                   retries=cfg.retries, max_tokens=cfg.max_tokens)

    def complete(self, messages: Sequence[Message], schema: type[T]) -> Reply[T]:
        """Ask for one ``schema`` object; one repair request when the answer does not validate.

        Raises:
            LLMError: the endpoint failed, timed out, or answered twice without a valid object.
        """
        t0 = time.monotonic()
        sent = list(messages)
        text, tin, tout = self._ask(sent, schema)
        try:
            parsed = parse_json(text, schema)
        except ValueError as first:
            sent = [*sent, {"role": "assistant", "content": text},
                    {"role": "user", "content": f"That answer is not usable ({first}). Reply with only the JSON "
                                                "object, matching the schema."}]
            try:
                text, more_in, more_out = self._ask(sent, schema)
            except LLMError as exc:
                exc.prompt_tokens += tin
                exc.completion_tokens += tout
                raise
            tin, tout = tin + more_in, tout + more_out
            try:
                parsed = parse_json(text, schema)
            except ValueError as second:
                raise LLMError(f"malformed answer after one repair request: {second}", text=text, prompt_tokens=tin,
                               completion_tokens=tout, messages=sent) from None
        return Reply(parsed, text, sent, tin, tout, time.monotonic() - t0)

    def text(self, messages: Sequence[Message]) -> tuple[str, int, int]:
        """A free-text answer (the teacher's worked solution) and its prompt and answer tokens.

        Raises:
            LLMError: the endpoint failed or timed out.
        """
        return self._ask(list(messages), None)

    def _ask(self, messages: list[Message], schema: type[BaseModel] | None) -> tuple[str, int, int]:
        import openai

        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": 0,
                                  "max_tokens": self.max_tokens}
        if self.json_schema and schema is not None:
            kwargs["response_format"] = {"type": "json_schema", "json_schema": {
                "name": schema.__name__, "schema": schema.model_json_schema()}}
        try:
            r = self._client.chat.completions.create(**kwargs)
        except openai.BadRequestError:
            if not self.json_schema or schema is None:
                raise LLMError(f"{self.url} refused the request (400)", messages=messages) from None
            self.json_schema = False  # the server does not take structured output: parse and validate instead
            return self._ask(messages, schema)
        except openai.APITimeoutError:
            raise LLMError(f"{self.url} timed out after {self.timeout:g}s", messages=messages) from None
        except openai.APIError as exc:
            raise LLMError(f"{self.url} failed: {type(exc).__name__}: {str(exc)[:200]}", messages=messages) from None
        text = (r.choices[0].message.content or "") if r.choices else ""
        usage = r.usage
        # a server that omits usage (or part of it) is counted at ~4 characters a token
        tin = getattr(usage, "prompt_tokens", None) or sum(len(m["content"]) for m in messages) // 4
        tout = getattr(usage, "completion_tokens", None) or len(text) // 4
        return text, tin, tout

    def close(self) -> None:
        self._client.close()


class ReplayClient:
    """Answers from a stored run's requests, in order, with no endpoint: ``adaptloop new --replay RUN``.

    Each stored answer is parsed again (a malformed one, or a failed request, raises the ``LLMError``
    it raised then), so a policy re-decides the run exactly as it did. Past the stored requests it
    raises: the replayed run asked for more than the stored one did.

    Args:
        calls: ``(response, outcome, prompt tokens, answer tokens)`` of the stored requests, oldest first.
    """

    url = "replay"

    def __init__(self, calls: Sequence[tuple[str, str, int, int]], run_id: int | None = None) -> None:
        self._calls = list(calls)
        self.run_id = run_id  # the replayed run
        self.used = 0

    def complete(self, messages: Sequence[Message], schema: type[T]) -> Reply[T]:
        if self.used >= len(self._calls):
            raise LLMError(f"the replayed run asks more than the {len(self._calls)} stored requests",
                           messages=messages)
        text, outcome, tin, tout = self._calls[self.used]
        self.used += 1
        failed = outcome.startswith("rejected: ") and not _policy_rejection(outcome)
        try:
            parsed = parse_json(text, schema)
        except ValueError as exc:
            failed, outcome = True, outcome if outcome.startswith("rejected: ") else f"rejected: {exc}"
        if failed:
            raise LLMError(outcome.removeprefix("rejected: "), text=text, prompt_tokens=tin, completion_tokens=tout,
                           messages=messages)
        return Reply(parsed, text, list(messages), tin, tout, 0.0)

    def close(self) -> None:
        pass


def _policy_rejection(outcome: str) -> bool:
    """Whether a stored rejection came from checking a parsed answer (the policy re-checks it), not
    from the request (a timeout, a failure, a malformed answer: replayed as that error)."""
    return not any(k in outcome for k in ("timed out after", " failed: ", "refused the request",
                                           "malformed answer", "token budget"))
