"""Prometheus metrics. Labels carry channels, providers, outcomes, alert rules and tenant ids
only: never a tenant secret, an address or message content."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# figure (as gateway.services.alert_rules names it) -> (metric name, help)
ALERT_FIGURES = {
    "failure_rate_24h": (
        "gateway_failure_rate_24h_percent",
        "Outbound messages failed or undelivered over the last 24 h, % of "
        "those with a final status",
    ),
    "loss_share_7d": (
        "gateway_loss_share_7d_percent",
        "Outbound messages billed below their cost over the last 7 days, % of those with a "
        "known margin",
    ),
    "sms_cost_month_eur": (
        "gateway_sms_cost_month_eur",
        "SMS billed cost since the first of the month, UTC (tenants with a budget)",
    ),
    "sms_budget_used_ratio": (
        "gateway_sms_budget_used_ratio",
        "That cost over the tenant's monthly_sms_budget_eur",
    ),
}


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

        # the figures of the last alert evaluation (gateway.services.alerts), per tenant id
        # with activity in the window and "overall": one series per tenant and figure
        self.alert_figures = {
            figure: Gauge(name, text, ["tenant"], registry=self.registry)
            for figure, (name, text) in ALERT_FIGURES.items()
        }
        self.alerts_active = Gauge(
            "gateway_alerts_active", "Active alerts", ["rule"], registry=self.registry
        )

    def show_alert_figures(
        self, figures: list[tuple[str, str, float]], active: dict[str, int]
    ) -> None:
        """Replace the alert gauges with these (scope, figure, value) and active counts."""
        for gauge in self.alert_figures.values():
            gauge.clear()
        for scope, figure, value in figures:
            if figure in self.alert_figures:
                self.alert_figures[figure].labels(tenant=scope).set(value)
        for rule, count in active.items():
            self.alerts_active.labels(rule=rule).set(count)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
