"""The alert rules: from the figures of one evaluation to the conditions that hold now, and
the figures the Prometheus gauges show. No I/O.

Each rule is evaluated per tenant and, where a sum of every tenant means something, overall:

- `failure_rate_24h`: outbound messages created in the last 24 h that ended failed or
  undelivered, over those with a final status (delivered, read, failed, undelivered), above
  5 % — once at least `min_messages` of them have a final status (1 failure out of 3 does not
  page anyone);
- `sms_budget`: the tenant's SMS billed cost (what it is charged, EUR) since the first of the
  month (UTC) above its `monthly_sms_budget_eur`; tenants without a budget are not checked;
- `webhook_failures`: a webhook source failing 3 times in a row or more (overall: the subject
  is the source, `in:<provider>` for provider webhooks this gateway refused or could not
  process, `out:alert_webhook` for ALERT_WEBHOOK_URL answering badly);
- `loss_share_7d`: outbound messages of the last 7 days billed less than they cost (negative
  margin), over those with a known margin, above 5 %, with the same minimum count;
- `expensive_destination`: a destination (its calling code; in the +1 zone, its area code
  too) whose SMS cost the provider more than `expensive_segment_eur` per segment on average
  over the last 24 h.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from gateway.store.alerts import OVERALL, Figures

FAILURE_RATE_PERCENT = 5.0
LOSS_SHARE_PERCENT = 5.0
WEBHOOK_FAILURES_IN_A_ROW = 3

RULES = (
    "failure_rate_24h",
    "sms_budget",
    "webhook_failures",
    "loss_share_7d",
    "expensive_destination",
)


@dataclass(frozen=True)
class Limits:
    min_messages: int = 20
    expensive_segment_eur: float = 0.20


@dataclass(frozen=True)
class Condition:
    """A rule that holds now: in `scope` (a tenant id or 'overall'), about `subject`."""

    scope: str
    rule: str
    subject: str
    value: float
    threshold: float

    @property
    def key(self) -> tuple[str, str, str]:
        return self.scope, self.rule, self.subject


@dataclass(frozen=True)
class Gauge:
    scope: str
    figure: str
    value: float


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2)


def destination(prefix: str) -> str | None:
    """The destination an E.164 number starting with `prefix` ('+' and up to four digits)
    goes to: '+<calling code>', or '+1<area code>' in the North American zone."""
    digits = prefix[1:]
    if not prefix.startswith("+") or not digits.isdigit():
        return None
    if digits.startswith("1"):
        return prefix if len(digits) == 4 else None
    for length in (1, 2, 3):
        if int(digits[:length]) in COUNTRY_CODE_TO_REGION_CODE:
            return "+" + digits[:length]
    return None


def _ratio_rule(
    rule: str, rows: list[tuple[str, int, int]], percent: float, limits: Limits
) -> Iterator[Condition | Gauge]:
    """(scope, bad, counted) per tenant; the overall sum is added here."""
    overall_bad = sum(bad for _, bad, _ in rows)
    overall_counted = sum(counted for _, _, counted in rows)
    for scope, bad, counted in [*rows, (OVERALL, overall_bad, overall_counted)]:
        if counted <= 0:
            continue
        value = _percent(bad, counted)
        yield Gauge(scope, rule, value)
        if counted >= limits.min_messages and value > percent:
            yield Condition(scope, rule, "", value, percent)


def evaluate(figures: Figures, limits: Limits) -> tuple[list[Condition], list[Gauge]]:
    """The conditions that hold and the gauges' figures."""
    found: list[Condition | Gauge] = []
    failures = [(r["tenant_id"], r["failed"] or 0, r["final"] or 0) for r in figures.per_tenant]
    found += _ratio_rule("failure_rate_24h", failures, FAILURE_RATE_PERCENT, limits)
    losses = [(r["tenant_id"], r["losing"] or 0, r["priced"] or 0) for r in figures.loss]
    found += _ratio_rule("loss_share_7d", losses, LOSS_SHARE_PERCENT, limits)

    budgets = {r["tenant_id"]: r["budget"] for r in figures.per_tenant if r["budget"] is not None}
    for row in figures.month_sms:
        budget = budgets.get(row["tenant_id"])
        if budget is None:
            continue
        billed = round(float(row["billed"]), 4)
        found.append(Gauge(row["tenant_id"], "sms_cost_month_eur", billed))
        if budget > 0:
            found.append(
                Gauge(row["tenant_id"], "sms_budget_used_ratio", round(billed / budget, 4))
            )
        if billed > budget:
            found.append(Condition(row["tenant_id"], "sms_budget", "", billed, float(budget)))

    for row in figures.webhooks:
        failed = int(row["consecutive_failures"])
        if failed >= WEBHOOK_FAILURES_IN_A_ROW:
            found.append(
                Condition(
                    OVERALL, "webhook_failures", row["source"], failed, WEBHOOK_FAILURES_IN_A_ROW
                )
            )

    found += _expensive(figures, limits)
    conditions = [c for c in found if isinstance(c, Condition)]
    gauges = [g for g in found if isinstance(g, Gauge)]
    return conditions, gauges


def _expensive(figures: Figures, limits: Limits) -> Iterator[Condition]:
    cost: defaultdict[tuple[str, str], float] = defaultdict(float)
    segments: defaultdict[tuple[str, str], float] = defaultdict(float)
    for row in figures.destinations:
        where = destination(row["prefix"] or "")
        if where is None:
            continue
        for scope in (row["tenant_id"], OVERALL):
            cost[scope, where] += float(row["cost"])
            segments[scope, where] += float(row["segments"])
    for (scope, where), spent in sorted(cost.items()):
        if segments[scope, where] <= 0:
            continue
        average = round(spent / segments[scope, where], 4)
        if average > limits.expensive_segment_eur:
            yield Condition(
                scope, "expensive_destination", where, average, limits.expensive_segment_eur
            )
