-- PostgreSQL twin of database/migrations/0002_messaging.sql.
-- Every message on every channel (both directions), its event trail, and suppressions.
-- Money: DOUBLE PRECISION (SQLite's REAL) in EUR rounded to 4 places, except
-- provider_cost_usd (as reported, may be < 0).

CREATE TABLE channel_messages_log (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel TEXT NOT NULL CHECK (channel IN ('sms', 'email', 'whatsapp')),
    direction TEXT NOT NULL CHECK (direction IN ('outbound', 'inbound')),
    to_address TEXT NOT NULL,
    from_address TEXT,
    subject TEXT,
    body TEXT,
    html_body TEXT,
    template TEXT CHECK (template IS NULL OR json_valid(template)),
    message_type TEXT NOT NULL DEFAULT 'transactional' CHECK (
        message_type IN ('transactional', 'marketing', 'notification', 'appointment_reminder')
    ),
    agent TEXT,
    status TEXT NOT NULL CHECK (
        status IN (
            'queued', 'sending', 'sent', 'delivered', 'read', 'undelivered', 'failed',
            'received', 'canceled'
        )
    ),
    provider TEXT,
    provider_message_id TEXT,
    provider_status TEXT,
    error_code TEXT,
    failure_reason TEXT,
    encoding TEXT,
    character_count BIGINT,
    num_segments BIGINT,
    provider_cost_usd DOUBLE PRECISION,
    exchange_rate_usd_eur DOUBLE PRECISION,
    provider_cost DOUBLE PRECISION,
    price_per_unit DOUBLE PRECISION,
    billed_cost DOUBLE PRECISION,
    margin DOUBLE PRECISION,
    currency TEXT NOT NULL DEFAULT 'EUR',
    idempotency_key TEXT,
    request_hash TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    needs_reconciliation BIGINT NOT NULL DEFAULT 0 CHECK (needs_reconciliation IN (0, 1)),
    price_checks BIGINT NOT NULL DEFAULT 0,
    price_due_at TEXT,
    send_at TEXT,
    call_id TEXT,
    appointment_id TEXT,
    metadata TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    created_at TEXT NOT NULL,
    sent_at TEXT,
    delivered_at TEXT,
    failed_at TEXT,
    updated_at TEXT NOT NULL
);

CREATE UNIQUE INDEX ux_messages_provider_id
    ON channel_messages_log (provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;

CREATE UNIQUE INDEX ux_messages_idempotency
    ON channel_messages_log (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- the dispatcher's work list: small, because only unfinished sends are in it
CREATE INDEX ix_messages_due
    ON channel_messages_log (next_attempt_at)
    WHERE status IN ('queued', 'sending');

CREATE INDEX ix_messages_price_due
    ON channel_messages_log (price_due_at)
    WHERE price_due_at IS NOT NULL;

CREATE INDEX ix_messages_tenant_created ON channel_messages_log (tenant_id, created_at);

CREATE INDEX ix_messages_tenant_to ON channel_messages_log (tenant_id, to_address, created_at);

CREATE INDEX ix_messages_recipient ON channel_messages_log (to_address, channel);

CREATE TABLE message_events (
    id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL REFERENCES channel_messages_log (id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    status TEXT,
    applied BIGINT NOT NULL DEFAULT 0 CHECK (applied IN (0, 1)),
    payload TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(payload)),
    created_at TEXT NOT NULL
);

CREATE INDEX ix_message_events_message ON message_events (message_id, created_at);

CREATE TABLE suppressions (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel TEXT NOT NULL CHECK (channel IN ('sms', 'email', 'whatsapp')),
    address TEXT NOT NULL,
    reason TEXT NOT NULL CHECK (reason IN ('stop_keyword', 'hard_bounce', 'manual')),
    detail TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (tenant_id, channel, address)
);
