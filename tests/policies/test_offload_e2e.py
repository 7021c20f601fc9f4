"""A long prompt is scanned off the event loop: other requests are answered meanwhile.

No timing bound on any request (the machine may be loaded): while one client's
~30,000-word prompt goes through prompt-injection and pii-detector, from the moment it is
sent until the gateway forwards it upstream, another client's short requests must keep
being answered. Were the scans run on the event loop, none could be (measured: 0-1 then,
hundreds with the scan process, dozens with scans in threads).
"""

from __future__ import annotations

import json
import socket
import time

import httpx

from tests.policies.test_detectors_e2e import _cfg

LONG_WORDS = 30_000
SENTENCES = (
    "Please send the quarterly report to {name} at {email} or call {phone} before Friday.",
    "The migration of the billing service moved {n} tables and took longer than planned.",
    "Our customers asked why the checkout page sometimes needs {n} seconds to load.",
    "Summarise the incident review in five bullet points for the weekly meeting.",
    "The vendor promised a fix by the end of the month, but the ticket is still open.",
)
NAMES = ("Maria Garcia", "James Okafor", "Priya Sharma", "Lukas Becker", "Aiko Tanaka")


def long_text(words: int) -> str:
    out, count, i = [], 0, 0
    while count < words:
        name = NAMES[i % len(NAMES)]
        sentence = SENTENCES[i % len(SENTENCES)].format(
            name=name,
            email=name.lower().replace(" ", ".") + "@example.com",
            phone=f"+44 20 7946 0{100 + i % 900}",
            n=i % 400 + 2,
        )
        out.append(sentence)
        count += len(sentence.split())
        i += 1
    return " ".join(out)


def _chat(text: str) -> dict:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}


def _long_request_on_its_own_socket(gw, body: dict) -> socket.socket:  # type: ignore[no-untyped-def]
    """Send a request whole (the gateway has all of it once this returns); read it later."""
    data = json.dumps(body).encode()
    host, port = gw.url.removeprefix("http://").split(":")
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        "Connection: close\r\n\r\n"
    )
    sock = socket.create_connection((host, int(port)), timeout=120)
    sock.sendall(head.encode() + data)
    return sock


def _status(sock: socket.socket) -> int:
    with sock:
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1])


def test_short_requests_are_answered_while_a_long_prompt_is_scanned(
    tmp_path, fp, gateway_factory
) -> None:  # type: ignore[no-untyped-def]
    # fail-mode allow: on a very slow machine a scan may pass the policy time bound; the
    # request still goes on, and what is tested here is only what happens meanwhile.
    gw = gateway_factory([_cfg(tmp_path, fp)], extra_args=["--fail-mode", "allow"])
    long_body = _chat(long_text(LONG_WORDS))
    short_body = _chat("Hi, I am Maria Garcia (maria.garcia@example.com); explain DNS briefly.")
    with httpx.Client(base_url=gw.base_url, timeout=120) as client:
        # The first long text starts the scan process; let it load.
        assert client.post("/chat/completions", json=long_body).status_code == 200
        time.sleep(2)
        assert client.post("/chat/completions", json=short_body).status_code == 200

        seen = len(fp.requests)

        def long_one_went_upstream() -> bool:
            nonlocal seen
            new = fp.requests[seen:]
            seen += len(new)
            return any(len(r.json["messages"][0]["content"]) > 10_000 for r in new)

        # From the moment the long request is sent until the gateway forwards it upstream,
        # its input scans run; count the short requests answered in that time.
        sock = _long_request_on_its_own_socket(gw, long_body)
        answered, deadline = 0, time.monotonic() + 120
        while time.monotonic() < deadline:
            assert client.post("/chat/completions", json=short_body).status_code == 200
            if long_one_went_upstream():
                break
            answered += 1
        assert _status(sock) == 200

    # Scanned on the event loop, at most the one or two short requests in flight before
    # the gateway had read the long one would be answered.
    assert answered >= 5, f"only {answered} short requests answered during the long scans"
