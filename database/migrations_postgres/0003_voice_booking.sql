-- PostgreSQL twin of database/migrations/0003_voice_booking.sql.
-- Calls bridged to the tenants' voice assistants, appointments (rendez_vous) with their
-- reminder bookkeeping, and what the assistants collect: qualified prospects and tickets.

CREATE TABLE call_logs (
    id TEXT PRIMARY KEY,
    -- NULL when no tenant could be found for the call (the operator still sees it)
    tenant_id TEXT REFERENCES tenants (id) ON DELETE CASCADE,
    call_sid TEXT UNIQUE,
    vapi_call_id TEXT UNIQUE,
    assistant_id TEXT,
    direction TEXT NOT NULL DEFAULT 'inbound' CHECK (direction IN ('inbound', 'outbound')),
    from_number TEXT,
    to_number TEXT,
    forwarded_from TEXT,
    resolved_by TEXT CHECK (
        resolved_by IN ('forwarded_from', 'dedicated_number', 'sip_header', 'default', 'none')
    ),
    outcome TEXT CHECK (
        outcome IN (
            'bridged', 'fallback_dial', 'fallback_apology', 'unknown_tenant', 'channel_disabled'
        )
    ),
    status TEXT NOT NULL DEFAULT 'ringing',
    started_at TEXT,
    ended_at TEXT,
    duration_seconds DOUBLE PRECISION,
    provider_cost_usd DOUBLE PRECISION,
    exchange_rate_usd_eur DOUBLE PRECISION,
    provider_cost DOUBLE PRECISION,
    price_per_minute DOUBLE PRECISION,
    billed_minutes BIGINT,
    billed_cost DOUBLE PRECISION,
    margin DOUBLE PRECISION,
    currency TEXT NOT NULL DEFAULT 'EUR',
    ended_reason TEXT,
    summary TEXT,
    transcript TEXT,
    recording_url TEXT,
    metadata TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE INDEX ix_call_logs_tenant_created ON call_logs (tenant_id, created_at);

CREATE INDEX ix_call_logs_from ON call_logs (tenant_id, from_number, created_at);

CREATE TABLE rendez_vous (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    customer_name TEXT NOT NULL,
    customer_phone TEXT NOT NULL,
    customer_email TEXT,
    service TEXT,
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'booked' CHECK (
        status IN ('booked', 'cancelled', 'completed', 'no_show')
    ),
    source TEXT NOT NULL DEFAULT 'api' CHECK (source IN ('voice', 'api')),
    call_id TEXT,
    notes TEXT,
    confirmation_message_id TEXT,
    reminder_24h_message_id TEXT,
    reminder_24h_at TEXT,
    reminder_1h_message_id TEXT,
    reminder_1h_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    cancelled_at TEXT
);

-- booking again for the same tenant, phone and start is the same appointment (idempotent)
CREATE UNIQUE INDEX ux_rendez_vous_same_booking
    ON rendez_vous (tenant_id, customer_phone, starts_at)
    WHERE status = 'booked';

CREATE INDEX ix_rendez_vous_tenant_start ON rendez_vous (tenant_id, starts_at);

CREATE INDEX ix_rendez_vous_due_reminders ON rendez_vous (starts_at) WHERE status = 'booked';

CREATE TABLE qualified_prospects (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    contact_name TEXT,
    contact_phone TEXT,
    contact_email TEXT,
    project TEXT CHECK (project IN ('buy', 'sell', 'rent', 'let', 'invest')),
    property_type TEXT,
    location TEXT,
    budget DOUBLE PRECISION,
    timeline TEXT,
    score BIGINT NOT NULL DEFAULT 0,
    call_id TEXT,
    notes TEXT,
    created_at TEXT NOT NULL
);

CREATE INDEX ix_qualified_prospects_tenant ON qualified_prospects (tenant_id, created_at);

CREATE TABLE tickets (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    contact_name TEXT,
    contact_phone TEXT,
    contact_email TEXT,
    subject TEXT NOT NULL,
    description TEXT,
    priority TEXT NOT NULL DEFAULT 'normal' CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'in_progress', 'closed')),
    call_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE INDEX ix_tickets_tenant ON tickets (tenant_id, created_at);
