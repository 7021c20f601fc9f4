"""Inbound API formats: client dialects translated to and from the internal OpenAI shape.

The gateway's pipeline (policies, routing, providers) speaks OpenAI chat completions. A
module here maps another client-facing API onto it and back, as pure functions:

* ``anthropic_messages``: Anthropic's Messages API (``POST /v1/messages``).
"""
