"""The OpenAI SSE relay: complete frames byte for byte, peeking only at [DONE], errors,
usage and the start of the answer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from keeptrusts.providers.relay import Frames, RelayScanner


def frame(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return frame({"id": "c", "object": "chat.completion.chunk", "choices": [choice], **extra})


ROLE = chunk({"role": "assistant", "content": ""})
HELLO = chunk({"content": "Hello"})
WORLD = chunk({"content": " world"})
STOP = chunk({}, "stop")
DONE = b"data: [DONE]\n\n"


def test_frames_pass_byte_for_byte_and_done_is_held_back() -> None:
    s = RelayScanner()
    out = s.feed(ROLE + HELLO + WORLD + STOP + DONE)
    assert out == Frames(ROLE + HELLO + WORLD + STOP, content=True)
    assert s.done and s.error is None


def test_a_frame_split_across_reads_waits_for_its_end() -> None:
    s = RelayScanner()
    data = HELLO + WORLD
    assert s.feed(data[:10]) is None
    first = s.feed(data[10 : len(HELLO) + 3])
    assert first is not None and first.data == HELLO
    rest = s.feed(data[len(HELLO) + 3 :])
    assert rest is not None and rest.data == WORLD


def test_role_only_preamble_is_not_content() -> None:
    s = RelayScanner()
    head = s.feed(ROLE)
    assert head is not None and head.content is False
    body = s.feed(HELLO)
    assert body is not None and body.content is True
    # Once the answer started every later batch counts as content.
    assert s.feed(b": keep-alive\n\n") == Frames(b": keep-alive\n\n", content=True)


def test_usage_object_is_read_and_null_usage_ignored() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    s = RelayScanner()
    s.feed(ROLE)
    out = s.feed(chunk({"content": "x"}, usage=None) + frame({"choices": [], "usage": usage}))
    assert out is not None and out.usage == usage


def test_error_frame_cuts_the_batch_and_becomes_an_upstream_error() -> None:
    s = RelayScanner()
    err = frame({"error": {"message": "upstream broke", "type": "overloaded_error"}})
    out = s.feed(ROLE + HELLO + err + WORLD)
    assert out is not None and out.data == ROLE + HELLO
    assert s.error is not None and s.error.status == 502
    assert "upstream broke" in s.error.message


def test_error_first_relays_nothing() -> None:
    s = RelayScanner()
    assert s.feed(frame({"error": {"message": "nope"}})) is None
    assert s.error is not None


def test_escaped_error_key_inside_content_is_just_content() -> None:
    s = RelayScanner()
    s.feed(ROLE + HELLO)
    text = chunk({"content": '{"error": "not really", "usage": {"x": 1}}'})
    out = s.feed(text)
    assert out is not None and out.data == text and out.usage is None
    assert s.error is None


def test_crlf_line_ends_split_between_reads() -> None:
    s = RelayScanner()
    raw = (ROLE + HELLO + DONE).replace(b"\n", b"\r\n")
    cut = raw.index(b"\r\n\r\n") + 1  # between \r and \n
    first = s.feed(raw[:cut])
    rest = s.feed(raw[cut:])
    got = (first.data if first else b"") + (rest.data if rest else b"")
    assert got == ROLE + HELLO and s.done


def test_stream_ending_without_blank_line_is_flushed_by_close() -> None:
    s = RelayScanner()
    s.feed(ROLE)
    assert s.feed(HELLO.rstrip(b"\n")) is None
    out = s.close()
    assert out is not None and out.data == HELLO and not s.done


def test_done_without_space_and_trailing_bytes_after_it() -> None:
    s = RelayScanner()
    out = s.feed(HELLO + b"data:[DONE]\n\n" + WORLD)
    assert out is not None and out.data == HELLO and s.done


def test_join_keeps_order_content_and_last_usage() -> None:
    a, b = Frames(b"a", False), Frames(b"b", True, {"total_tokens": 1})
    assert Frames.join([a, b]) == Frames(b"ab", True, {"total_tokens": 1})


@pytest.mark.parametrize("bad", [b"data: {not json\n\n"])
def test_malformed_json_before_the_answer_raises(bad: bytes) -> None:
    # The router turns this into a 502 from the target (and may fall back), as it does
    # for the parsed path.
    with pytest.raises(ValueError):
        RelayScanner().feed(bad)
