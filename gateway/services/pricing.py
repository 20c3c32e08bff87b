"""The product's V2 pricing: a fixed billed price per unit, a variable provider cost, and the
margin between them (negative when the message lost money).

    billed_cost   = price_per_unit * num_segments
    provider_cost = |price reported by the provider| * exchange rate (none when already EUR)
    margin        = billed_cost - provider_cost
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any


def money(value: float | Decimal) -> float:
    return float(Decimal(str(value)).quantize(Decimal("0.0001")))


def billed_cost(price_per_unit: float, units: int) -> float:
    return money(Decimal(str(price_per_unit)) * units)


@dataclass(frozen=True)
class ProviderCost:
    reported: float  # as the provider reported it (Twilio: negative)
    exchange_rate: float | None  # USD→EUR rate applied, None when no conversion was needed
    cost_eur: float


def provider_cost(price: str | None, unit: str | None, usd_eur_rate: float) -> ProviderCost | None:
    """Twilio's `price` ("-0.00790") and `price_unit` ("USD") → the cost in EUR."""
    if price is None or price == "":
        return None
    try:
        reported = Decimal(str(price))
    except InvalidOperation:
        return None
    currency = (unit or "USD").upper()
    if currency == "EUR":
        return ProviderCost(float(reported), None, money(abs(reported)))
    if currency != "USD":
        return None  # no rate configured for this currency: leave the cost unknown
    rate = Decimal(str(usd_eur_rate))
    return ProviderCost(float(reported), float(rate), money(abs(reported) * rate))


def margin(billed: float | None, cost: float | None) -> float | None:
    if billed is None or cost is None:
        return None
    return money(Decimal(str(billed)) - Decimal(str(cost)))


def cost_fields(
    cost: ProviderCost,
    *,
    price_per_unit: float | None,
    segments: int | None,
    billed: float | None,
) -> dict[str, object]:
    """The message-log columns a known provider cost sets: the cost as reported and in EUR,
    the billed price (again, when the provider counted other segments) and the margin."""
    if price_per_unit is not None and segments:
        billed = billed_cost(price_per_unit, segments)
    return {
        "provider_cost_usd": cost.reported if cost.exchange_rate is not None else None,
        "exchange_rate_usd_eur": cost.exchange_rate,
        "provider_cost": cost.cost_eur,
        "num_segments": segments,
        "billed_cost": billed,
        "margin": margin(billed, cost.cost_eur),
    }


def sms_price_per_segment(operator: Mapping[str, Any], default: float) -> float:
    """What a tenant is billed per SMS segment: its operator-set `price_per_segment`, else the
    gateway's `SMS_PRICE_PER_SEGMENT`."""
    price = operator.get("price_per_segment")
    return default if price is None else float(price)
