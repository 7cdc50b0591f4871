"""``POST /v1/chat/completions``: OpenAI-compatible chat for a generation model, traced.

Non-streaming replies come back as one ``chat.completion`` object; ``"stream": true`` sends
server-sent events (``chat.completion.chunk`` objects, then ``data: [DONE]``). Decoding is
greedy (``temperature`` is accepted and ignored). The task's instruction, kept with the model
when it was trained, goes before the last user message, as in training. Every completion
becomes a trace (the last user message as input, the reply as output) like ``/v1/predict``'s.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Literal

from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from adaptloop.agent.predict import Generate, predictor
from adaptloop.data.generation import Sample
from adaptloop.train.causal import render_prompt


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatIn(BaseModel):
    model: str | None = Field(None, description="Ignored: the production model answers.")
    messages: list[ChatMessage] = Field(..., min_length=1, description="The conversation; the last turn is the user's.")
    max_tokens: int | None = Field(None, ge=1, le=4096, description="Decoding limit [default: the model's].")
    stream: bool = Field(False, description="Server-sent events, piece by piece.")
    temperature: float | None = Field(None, description="Accepted for compatibility; decoding is greedy.")


def as_sample(model, messages: Sequence[dict[str, str]]):
    """The conversation as the model was trained to see it (the task's instruction first)."""
    *earlier, last = messages
    sample = Sample(prompt=last["content"], target="", context=tuple((m["role"], m["content"]) for m in earlier))
    return Generate(model).shown(sample)


def add_chat_routes(app: FastAPI, *, slot, batcher, writer: Callable[[], Any], max_chars: int) -> None:
    """Register the endpoint on ``app`` (the server's model slot, micro-batcher and trace writer)."""

    def trace(version: str, task_id: int | None, prompt: str, reply: str, finish: str) -> str:
        trace_id = uuid.uuid4().hex
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        writer().add([{"id": trace_id, "ts": now, "task_id": task_id, "model_version": version, "input": prompt,
                       "output": {"output": reply, "finish_reason": finish}, "meta": {"endpoint": "chat"},
                       "origin": "serve"}])
        return trace_id

    @app.post("/v1/chat/completions")
    async def chat(body: ChatIn):
        _version, model = slot.current()
        if predictor(model).family != "generation":
            raise HTTPException(422, "the production model is not a generation model; use /v1/predict")
        if body.messages[-1].role != "user":
            raise HTTPException(422, "the last message must be the user's")
        size = sum(len(m.content) for m in body.messages)
        if size > 4 * max_chars:
            raise HTTPException(413, f"the conversation has {size} characters; at most {4 * max_chars}")
        messages = [m.model_dump() for m in body.messages]
        limit = body.max_tokens or model.max_new_tokens
        created = int(time.time())
        if not body.stream:
            def complete(m) -> tuple[str, int, int]:
                sample = as_sample(m, messages)
                text = m.generate([sample], max_new_tokens=limit)[0]
                shown = len(m.tok(render_prompt(m.tok, sample), add_special_tokens=False)["input_ids"])
                return text, shown, len(m.tok(text, add_special_tokens=False)["input_ids"])

            version, (text, shown, n) = await batcher.call(complete)
            finish = "length" if n >= limit else "stop"
            trace_id = trace(version, slot.task_id, messages[-1]["content"], text, finish)
            return {"id": f"chatcmpl-{trace_id}", "object": "chat.completion", "created": created, "model": version,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": finish}],
                    "usage": {"prompt_tokens": shown, "completion_tokens": n, "total_tokens": shown + n}}

        version, model = slot.current()
        pieces = model.stream(as_sample(model, messages), max_new_tokens=limit)
        cid = f"chatcmpl-{uuid.uuid4().hex}"

        def chunk(delta: dict[str, str], finish: str | None = None) -> str:
            return "data: " + json.dumps({"id": cid, "object": "chat.completion.chunk", "created": created,
                                          "model": version, "choices": [{"index": 0, "delta": delta,
                                                                         "finish_reason": finish}]}) + "\n\n"

        async def events():
            yield chunk({"role": "assistant"})
            text = []
            while True:
                piece = await asyncio.to_thread(next, pieces, None)
                if piece is None:
                    break
                text.append(piece)
                yield chunk({"content": piece})
            reply = "".join(text)
            n = len(model.tok(reply, add_special_tokens=False)["input_ids"])
            finish = "length" if n >= limit else "stop"
            trace(version, slot.task_id, messages[-1]["content"], reply, finish)
            yield chunk({}, finish)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")
