"""The gateway's services, built once and handed what each needs: what `create_app` serves,
what the CLI's one-off commands start without a web server."""

from __future__ import annotations

from typing import Any

from gateway import migrations, providers
from gateway.config import Settings
from gateway.db import Database
from gateway.metrics import Metrics
from gateway.services.alert_rules import Limits
from gateway.services.alert_webhook import AlertWebhook
from gateway.services.alerts import AlertService
from gateway.services.booking import BookingService
from gateway.services.channel_config import ChannelConfigService
from gateway.services.channel_tests import ChannelTests
from gateway.services.cron import Scheduler
from gateway.services.dispatcher import Dispatcher, DispatchSettings
from gateway.services.exchange import ExchangeRates
from gateway.services.failover import Failover, SmsRouting
from gateway.services.inbound import InboundService
from gateway.services.messaging import MessagingService
from gateway.services.numbers import operator_numbers
from gateway.services.ratelimit import CHANNEL_TEST_LIMIT, buckets_for
from gateway.services.reminders import Reminders
from gateway.services.retention import Retention
from gateway.services.rollup_job import RollupJob
from gateway.services.tenants import check_keyring
from gateway.services.vapi_server import VapiServer
from gateway.services.vapi_tools import TOOLS
from gateway.services.voice import VoiceService
from gateway.services.webhooks import WebhookService
from gateway.store.engine import DUE_MESSAGES, Engine
from gateway.store.file_lock import ServingLock


def open_database(settings: Settings, read_connections: int | None = None) -> Engine:
    """The one place that picks the engine: PostgreSQL when the settings name a database
    URL, else the SQLite file (not started yet)."""
    readers = read_connections or settings.typed.read_connections
    url = settings.database_url
    if url:
        from gateway.store.postgres import PostgresEngine  # psycopg only when it is used

        return PostgresEngine(
            url, write_connections=settings.typed.write_connections, read_connections=readers
        )
    return Database(settings.database_path, readers)


class Gateway:
    """Everything a handler needs, built once per app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = open_database(settings)
        self.metrics = Metrics()
        self.providers = providers.build(settings)
        self.dispatch_options = DispatchSettings.from_settings(settings)
        typed = settings.typed
        self.sms = SmsRouting(
            self.providers,
            typed.sms_providers,
            Failover(typed.sms_failover_after, typed.sms_circuit_seconds),
        )
        self.channels = ChannelConfigService(settings, sms=self.sms)
        self.exchange = ExchangeRates(self.db, typed.exchange_rate_url, typed.usd_eur_rate)
        # the day's rate is fetched (once across instances) by the first refresh of the day
        self.exchange_refresh = Scheduler(["* * * * *"], self.exchange.refresh)
        self.dispatcher = Dispatcher(
            self.db,
            settings,
            self.channels,
            self.providers,
            self.metrics,
            self.dispatch_options,
            sms=self.sms,
            exchange=self.exchange,
        )
        self.messaging = MessagingService(
            settings, self.channels, self.metrics, self._wake, self.sms
        )
        self.inbound = InboundService(
            self.db,
            self.metrics,
            self.dispatch_options.price_delay,
            self.dispatch_options.status_poll or None,
            operator_numbers(settings),
            can_ask=lambda name: self.providers.declares(name, "lookup"),
            usd_eur_rate=float(typed.usd_eur_rate),
            exchange=self.exchange,
        )
        self.reminders = Reminders(self.db, self.channels, self.messaging)
        self.booking = BookingService(self.db, self.channels)
        self.booking.on_booked = self.reminders.confirm
        # one run per scheduled minute across instances: claimed in the database
        self.scheduler = Scheduler(settings.crons, self.cron_tick, self.db)
        # RETENTION_DAYS: its own job on the crons, each scheduled minute once across instances
        self.retention = Retention(self.db, typed.retention_days)
        self.retention_schedule = Scheduler(
            settings.crons if self.retention.enabled else [],
            self.retention.run,
            self.db,
            job="retention",
        )
        # the analytics rollups: every minute, once across instances
        self.rollups = RollupJob(self.db)
        self.rollup_schedule = Scheduler(["* * * * *"], self.rollups.run, self.db, job="rollups")
        self.voice = VoiceService(self.db, settings, self.channels, self.providers)
        self.vapi = VapiServer(
            self.db,
            self.voice,
            self.channels,
            self.booking,
            TOOLS,
            server_secret=typed.vapi_webhook_secret,
            price_per_minute=typed.call_price_per_minute,
            usd_eur_rate=typed.usd_eur_rate,
            exchange=self.exchange,
        )
        self.webhooks = WebhookService(
            self.db, self.providers, self.channels, self.inbound, self.voice
        )
        self.alert_webhook = AlertWebhook.from_settings(self.db, typed)
        limits = Limits(typed.alert_min_messages, float(typed.alert_expensive_segment_eur))
        self.alerts = AlertService(self.db, limits, self.alert_webhook, self.metrics)
        self.webhooks.on_outcome = self.alerts.webhook_outcome
        # its own job on the crons: each scheduled minute evaluates once across instances,
        # whatever the tick does; deliveries and gauges every minute on every instance
        self.alert_schedule = Scheduler(settings.crons, self.alerts.tick, self.db, job="alerts")
        self.alert_minute = Scheduler(["* * * * *"], self.alerts.every_minute)
        rule = settings.ratelimit("SEND_RATE_LIMITER")
        # shared by every instance on PostgreSQL, per process on SQLite
        self.send_limiter = buckets_for(self.db, rule) if rule else None
        test_rule = settings.ratelimit("CHANNEL_TEST_RATE_LIMITER") or CHANNEL_TEST_LIMIT
        self.channel_tests = ChannelTests(
            self.channels,
            self.providers,
            self.messaging,
            self.dispatcher,
            send_limiter=self.send_limiter,
            test_limiter=buckets_for(self.db, test_rule, what="channel tests"),
        )
        # the OpenAPI document of the app this gateway serves (set by create_app)
        self.openapi: dict[str, Any] = {}
        self.run_dispatcher = settings.typed.dispatcher != "off"
        # a SQLite file is served by one process: the one running the dispatcher and crons
        self.serving_lock = ServingLock(self.db.path) if isinstance(self.db, Database) else None

    async def cron_tick(self) -> dict[str, int]:
        """What `[triggers] crons` runs: the reminders that are due."""
        return {"reminders": await self.reminders.tick()}

    def _wake(self) -> None:
        self.dispatcher.wake()

    async def check_send_rate(self, tenant_id: str) -> None:
        if self.send_limiter is not None:
            await self.send_limiter.check(tenant_id)

    def hold_database(self) -> None:
        """Serve the SQLite file alone, or raise DatabaseInUse: a second server would keep
        its own rate limits and crons, and its start-up recovery would take this one's sends
        in flight. PostgreSQL serves any number of instances: nothing to hold."""
        if self.serving_lock is not None:
            self.serving_lock.acquire()

    async def start(self) -> None:
        migrations.migrate(self.settings)
        self.db.start()
        await check_keyring(self.db, self.settings.keyring)
        # a dispatcher here is woken directly; without one, the others hear of new messages
        self.messaging.announce_due = not self.run_dispatcher
        if self.run_dispatcher:
            self.hold_database()  # before the dispatcher's recovery takes what is in flight
            await self.dispatcher.start()
            # messages accepted by other instances wake this dispatcher (PostgreSQL NOTIFY)
            self.db.subscribe(DUE_MESSAGES, self.dispatcher.wake)
            self.scheduler.start()
            self.retention_schedule.start()
            self.rollup_schedule.start()
            self.exchange_refresh.start()
            self.alert_schedule.start()
            self.alert_minute.start()

    async def stop(self) -> None:
        if self.run_dispatcher:
            await self.scheduler.stop()
            await self.retention_schedule.stop()
            await self.rollup_schedule.stop()
            await self.exchange_refresh.stop()
            await self.alert_schedule.stop()
            await self.alert_minute.stop()
            await self.dispatcher.stop()
        await self.providers.aclose()
        await self.exchange.aclose()
        await self.alert_webhook.aclose()
        await self.db.close()
        if self.serving_lock is not None:
            self.serving_lock.release()
