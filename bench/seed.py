"""Seed a gateway database with messages, straight into `channel_messages_log` by bulk SQL.

Realistic shape, fixed seed (the same rows every run):
- tenants: rows made with the gateway's own `insert_tenant` (tenant + its four channel rows);
  volume per tenant follows a Zipf law (s = 1.07): the largest of 1,000 holds about 16%,
  the median about 0.1%;
- created_at over the last `days` days, weekdays busier than weekends, office hours (Paris)
  busier than nights, volume growing over the period; ids are ULIDs of created_at, as the
  gateway makes them;
- channels: SMS 70%, email 20%, WhatsApp 10%; 8% of SMS and WhatsApp are inbound
  (`received`); message types, agents, idempotency keys, call and appointment links;
- statuses by channel (SMS: delivered 88%, sent 3%, undelivered 3%, failed 4%, canceled 1%,
  and the sends of the last minutes still `sent`); never `queued`/`sending`, so a dispatcher
  has nothing to pick up;
- SMS money as the gateway stores it: GSM-7 or UCS-2 segments (1 to 4), price per segment
  per tenant, Twilio's negative USD price by destination (FR, BE, CH, DE, US), the rate
  used, cost in EUR and the margin (negative for the dear destinations); unpriced while
  recent; email and WhatsApp at 0. message_events are not seeded (nothing measured reads
  them).

    .venv/bin/python -m bench.seed --database FILE [--rows 1000000] [--tenants 1000]

The database must have the gateway's schema (start the gateway on it once, or `gateway
migrate`). bench/scale.py uses this module; run standalone it adds tenants and rows.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import math
import random
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bench import common
from gateway.ids import iso
from gateway.store.tenants import insert_tenant

PARIS = ZoneInfo("Europe/Paris")
ZIPF_S = 1.07
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_HEX = "0123456789abcdef"
_USD_EUR = 0.92
# Twilio's price per outbound segment (USD, reported negative) by destination, and its share
_DESTINATIONS = (("+336", 0.0650, 70), ("+324", 0.0850, 10), ("+417", 0.0600, 8),
                 ("+491", 0.0900, 7), ("+1415", 0.0079, 5))  # fmt: skip
_BODIES = (
    "Bonjour {name}, votre rendez-vous est confirmé pour le {day} à {hour}. À bientôt !",
    "Rappel : rendez-vous demain à {hour} avec le Dr Martin. Répondez STOP pour ne plus "
    "recevoir de SMS.",
    "Votre commande {ref} a été expédiée. Suivi : https://suivi.example.com/{ref}",
    "{name}, votre code de vérification est {code}. Il expire dans 10 minutes.",
    "Bonjour, suite à votre appel nous avons bien noté votre demande ({ref}). Un conseiller "
    "vous recontacte sous 24 h. L'agence",
    "Offre spéciale : -20% sur votre prochaine visite jusqu'au {day}. Réservez au 01 40 00 00 00",
    "Votre bien au {ref} rue des Lilas a reçu 3 nouvelles visites cette semaine. 📈",
    "Merci pour votre visite, {name} ! Donnez-nous votre avis : https://avis.example.com/{ref}",
)
_NAMES = ("Léa", "Hugo", "Chloé", "Lucas", "Emma", "Louis", "Inès", "Jules", "Zoé", "Adam")
_AGENTS = ("sara", "max", "reception", "relance", None, None)
_TYPES = ("transactional", "appointment_reminder", "notification", "marketing")
_TYPE_WEIGHTS = (50, 30, 12, 8)
_COLUMNS = (
    "id, tenant_id, channel, direction, to_address, from_address, subject, body, "
    "message_type, agent, status, provider, provider_message_id, provider_status, "
    "error_code, failure_reason, encoding, character_count, num_segments, provider_cost_usd, "
    "exchange_rate_usd_eur, provider_cost, price_per_unit, billed_cost, margin, currency, "
    "idempotency_key, attempts, call_id, appointment_id, metadata, created_at, sent_at, "
    "delivered_at, failed_at, updated_at"
)
_GSM = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)


@dataclass
class SeedTenant:
    id: str
    weight: float
    price: float  # billed price per SMS segment
    sender: str
    contacts: int


def zipf_weights(count: int) -> list[float]:
    raw = [1 / (rank**ZIPF_S) for rank in range(1, count + 1)]
    total = sum(raw)
    return [w / total for w in raw]


def _ulid(ms: int, rng: random.Random) -> str:
    value = (ms << 80) | rng.getrandbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def _segments(text: str) -> tuple[str, int, int]:
    """(encoding, characters, segments) as gateway.services.segments counts them, for the
    plain texts used here (no extension characters)."""
    if all(c in _GSM for c in text):
        units, single, part = len(text), 160, 153
        encoding = "GSM-7"
    else:
        units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)
        single, part = 70, 67
        encoding = "UCS-2"
    segments = 1 if units <= single else math.ceil(units / part)
    return encoding, len(text), segments


def _hour_weights() -> list[float]:
    # Paris local hour: quiet nights, busy office hours, a lunch dip
    shape = [1, 1, 1, 1, 1, 2, 4, 8, 14, 16, 16, 14, 9, 11, 15, 16, 15, 13, 10, 7, 5, 3, 2, 1]
    return [float(x) for x in shape]


class _Clock:
    """Draws created_at instants over the period: weekday, hour-of-day and growth shaped."""

    def __init__(self, days: int, now: datetime, rng: random.Random) -> None:
        self.rng = rng
        self.hours: list[datetime] = []
        weights: list[float] = []
        hour_shape = _hour_weights()
        start = (now - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
        moment = start
        while moment < now:
            local = moment.astimezone(PARIS)
            weekday = 1.0 if local.weekday() < 5 else 0.35
            growth = 0.7 + 0.6 * (moment - start) / (now - start)
            self.hours.append(moment)
            weights.append(hour_shape[local.hour] * weekday * growth)
            moment += timedelta(hours=1)
        self.cumulative = list(itertools.accumulate(weights))
        self.now = now

    def draw(self) -> datetime:
        index = bisect.bisect(self.cumulative, self.rng.random() * self.cumulative[-1])
        index = min(index, len(self.hours) - 1)
        moment = self.hours[index] + timedelta(seconds=self.rng.random() * 3600)
        return min(moment, self.now - timedelta(seconds=1))


def make_tenants(conn: sqlite3.Connection, count: int, prefix: str) -> list[str]:
    """`count` tenants with the gateway's own insert (tenant + four channel rows)."""
    ids = []
    for n in range(count):
        tenant = insert_tenant(conn, f"Bench tenant {n}", f"{prefix}-{n:04d}", "Europe/Paris")
        ids.append(tenant.id)
    return ids


def plan(tenant_ids: Sequence[str], seed: int = 1) -> list[SeedTenant]:
    """Volume weights (Zipf, in the given order), prices, senders and contact pools."""
    rng = random.Random(seed)
    weights = zipf_weights(len(tenant_ids))
    out = []
    for n, (tenant_id, weight) in enumerate(zip(tenant_ids, weights, strict=True)):
        out.append(
            SeedTenant(
                id=tenant_id,
                weight=weight,
                price=rng.choice((0.05, 0.06, 0.07, 0.07, 0.07, 0.08, 0.09)),
                sender=f"+3393{n % 10000:07d}",
                contacts=max(20, int(weight * 2_000_000)),
            )
        )
    return out


def rows(
    tenants: Sequence[SeedTenant], count: int, *, days: int = 90, seed: int = 2
) -> Iterator[tuple[object, ...]]:
    """`count` message rows, tenants drawn by weight, in no particular time order."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    clock = _Clock(days, now, rng)
    cumulative = list(itertools.accumulate(t.weight for t in tenants))
    type_cumulative = list(itertools.accumulate(_TYPE_WEIGHTS))
    dest_cumulative = list(itertools.accumulate(d[2] for d in _DESTINATIONS))
    for serial in range(count):
        tenant = tenants[
            min(bisect.bisect(cumulative, rng.random() * cumulative[-1]), len(tenants) - 1)
        ]
        created = clock.draw()
        created_ms = int(created.timestamp() * 1000)
        roll = rng.random()
        channel = "sms" if roll < 0.70 else ("email" if roll < 0.90 else "whatsapp")
        contact = rng.randrange(tenant.contacts)
        destination = _DESTINATIONS[
            bisect.bisect(dest_cumulative, rng.random() * dest_cumulative[-1])
        ]
        if channel == "email":
            to = f"client{contact}@example.org"
        else:
            width = 12 - len(destination[0])  # +336 and 8 digits, +1415 and 7
            to = f"{destination[0]}{contact % 10**width:0{width}d}"
        inbound = channel != "email" and rng.random() < 0.08
        message_type = _TYPES[bisect.bisect(type_cumulative, rng.random() * type_cumulative[-1])]
        name = rng.choice(_NAMES)
        body = rng.choice(_BODIES).format(
            name=name,
            day=(created + timedelta(days=2)).astimezone(PARIS).strftime("%d/%m"),
            hour=f"{rng.randrange(8, 19)}h{rng.choice(('00', '30'))}",
            ref=f"{rng.randrange(10**5, 10**6)}",
            code=f"{rng.randrange(10**5, 10**6)}",
        )
        if inbound:
            body = rng.choice(("Oui merci", "STOP", "Je confirme", "Pouvez-vous me rappeler ?"))
        encoding, characters, segments = (None, len(body), None)
        status = "received"
        provider = {"sms": "twilio", "email": "smtp", "whatsapp": "meta_cloud"}[channel]
        price = cost_usd = rate = cost = billed = margin = None
        sent_at = delivered_at = failed_at = None
        error_code = failure_reason = None
        provider_id: str | None
        if channel == "sms":
            provider_id = "SM" + "".join(rng.choices(_HEX, k=32))
        elif channel == "whatsapp":
            provider_id = "wamid.HBgL" + "".join(rng.choices(_HEX, k=40))
        else:
            provider_id = f"<{created_ms}.{rng.getrandbits(48):x}@mail.example.org>"
        if inbound:
            delivered_at = iso(created)
            billed = cost = margin = 0.0
        else:
            s = rng.random()
            if channel == "sms":
                status = (
                    "delivered" if s < 0.88 else "sent" if s < 0.91 else
                    "undelivered" if s < 0.94 else "failed" if s < 0.98 else "canceled"
                )  # fmt: skip
            elif channel == "whatsapp":
                status = (
                    "read" if s < 0.60 else "delivered" if s < 0.90 else
                    "sent" if s < 0.95 else "failed"
                )  # fmt: skip
            else:
                status = "sent" if s < 0.96 else "failed"
            recent = (now - created) < timedelta(minutes=5)
            if recent and status in ("delivered", "read"):
                status = "sent"
            if status != "canceled":
                sent_at = iso(created + timedelta(seconds=rng.uniform(0.2, 4)))
            if status in ("delivered", "read"):
                delivered_at = iso(created + timedelta(seconds=rng.uniform(3, 90)))
            if status in ("failed", "undelivered"):
                failed_at = iso(created + timedelta(seconds=rng.uniform(1, 120)))
                error_code, failure_reason = rng.choice(
                    (
                        ("30006", "landline or unreachable carrier"),
                        ("30003", "unreachable destination handset"),
                        ("21610", "the recipient replied STOP and is unsubscribed"),
                        ("30007", "filtered by the carrier as spam"),
                    )
                )
                if status == "failed" and rng.random() < 0.5:
                    provider_id, sent_at = None, None  # refused before Twilio took it
            if status == "canceled":
                provider_id = None
            if channel == "sms":
                encoding, characters, segments = _segments(body)
                if rng.random() < 0.05:
                    segments += rng.randrange(1, 3)  # long texts: 2 to 4 segments
                price = tenant.price
                billed = round(price * segments, 4)
                priced = provider_id is not None and not recent and rng.random() < 0.98
                if priced:
                    cost_usd = -round(destination[1] * segments, 4)
                    rate = _USD_EUR
                    cost = round(abs(cost_usd) * rate, 4)
                    margin = round(billed - cost, 4)
            else:
                billed = cost = margin = 0.0
        direction = "inbound" if inbound else "outbound"
        sender = tenant.sender if channel != "email" else "agence@example.com"
        to_address, from_address = (sender, to) if inbound else (to, sender)
        updated = delivered_at or failed_at or sent_at or iso(created)
        yield (
            f"msg_{_ulid(created_ms, rng)}",
            tenant.id,
            channel,
            direction,
            to_address,
            from_address,
            "Votre rendez-vous" if channel == "email" else None,
            body,
            "transactional" if inbound else message_type,
            None if inbound else rng.choice(_AGENTS),
            status,
            provider,
            provider_id,
            status if channel != "email" else ("250 OK" if status == "sent" else "550"),
            error_code,
            failure_reason,
            encoding,
            characters,
            segments,
            cost_usd,
            rate,
            cost,
            price,
            billed,
            margin,
            "EUR",
            f"seed-{seed}-{serial}" if not inbound and rng.random() < 0.3 else None,
            0 if inbound else 1,
            f"call-{rng.getrandbits(40):x}" if rng.random() < 0.05 else None,
            f"apt-{rng.getrandbits(40):x}" if message_type == "appointment_reminder" else None,
            "{}",
            iso(created),
            sent_at,
            delivered_at,
            failed_at,
            updated,
        )


def insert(db: Path, tenants: Sequence[SeedTenant], count: int, *, seed: int = 2) -> float:
    """Insert `count` rows in batches; returns the seconds it took. The seeding connection
    trades durability for speed (synchronous=OFF): it is test data, not the gateway writing."""
    began = time.perf_counter()
    marks = ", ".join("?" for _ in _COLUMNS.split(", "))
    sql = f"INSERT INTO channel_messages_log ({_COLUMNS}) VALUES ({marks})"
    with common.connect(db, read_only=False) as conn:
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -1000000")
        generated = rows(tenants, count, seed=seed)
        done = 0
        while True:
            batch = list(itertools.islice(generated, 50_000))
            if not batch:
                break
            conn.executemany(sql, batch)
            conn.commit()
            done += len(batch)
            if done % 200_000 == 0:
                print(f"  {done:,} rows", flush=True)
        # written with synchronous=OFF: the checkpoint under FULL fsyncs the file now, or the
        # kernel's write-back of a gigabyte lands on whatever is measured next
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", type=Path, required=True, help="a gateway SQLite file")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=2, help="random seed of the rows")
    args = parser.parse_args()
    with common.connect(args.database, read_only=False) as conn:
        prefix = f"seed-{int(time.time())}"
        ids = make_tenants(conn, args.tenants, prefix)
    seconds = insert(args.database, plan(ids), args.rows, seed=args.seed)
    print(f"{args.rows:,} messages over {args.tenants:,} tenants in {seconds:.0f} s")


if __name__ == "__main__":
    main()
