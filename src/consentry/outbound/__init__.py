"""Events out (issue 15): every ledger event as a CloudEvent, pushed to signed webhooks and to
brokers (NATS JetStream) from the transactional outbox.

- :mod:`.messages`: an event as a CloudEvents 1.0 message (and a narrowing event's impact);
- :mod:`.signing`: Standard Webhooks signatures;
- :mod:`.subscriptions`: where messages go (``consentry webhooks``, ``/v1/webhooks``);
- :mod:`.sinks`: how a batch of messages is sent (HTTP, NATS JetStream);
- :mod:`.delivery`: the worker that claims, sends and retries (``consentry deliver``, ``serve``).
"""
