"""Prometheus metrics. Labels carry channels, providers and outcomes only: never a tenant
secret, an address or message content."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.accepted = Counter(
            "gateway_messages_accepted",
            "Messages accepted by the send endpoints",
            ["channel"],
            registry=self.registry,
        )
        self.sent = Counter(
            "gateway_messages_sent",
            "Messages handed to the provider",
            ["channel"],
            registry=self.registry,
        )
        self.delivered = Counter(
            "gateway_messages_delivered",
            "Messages the provider reported delivered",
            ["channel"],
            registry=self.registry,
        )
        self.failed = Counter(
            "gateway_messages_failed",
            "Messages that ended failed or undelivered",
            ["channel", "kind"],
            registry=self.registry,
        )
        self.retries = Counter(
            "gateway_send_retries",
            "Sends scheduled again after a transient failure",
            ["channel"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "gateway_dispatch_queue_depth",
            "Messages queued or in flight",
            registry=self.registry,
        )
        self.provider_latency = Histogram(
            "gateway_provider_call_seconds",
            "Duration of provider send calls",
            ["channel", "provider", "outcome"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )

        self.failovers = Counter(
            "gateway_sms_failovers",
            "SMS handed from one provider to another before being sent",
            ["from_provider", "to_provider"],
            registry=self.registry,
        )
        self.circuit_open = Gauge(
            "gateway_sms_provider_circuit_open",
            "1 while a provider's circuit is open (it failed SMS_FAILOVER_AFTER times in a row)",
            ["provider"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
