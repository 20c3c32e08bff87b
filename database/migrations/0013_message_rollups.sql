-- Message rollups (gateway/services/rollups.py): the outbound messages' analytics figures of
-- each tenant per UTC hour and per UTC day, split by channel and message type, so that a
-- period's key figures read a few hundred rows instead of every message of the period.
--
-- A row holds the sums the analytics need (counts, money, characters, delivery times in
-- milliseconds, losing messages) and `recipients`: the set of its recipients as sorted
-- 64-bit hashes (8 bytes each, little-endian), so distinct recipients over any run of
-- hours and days is the size of a union.
--
-- The cron job fills them: hours that ended more than a few minutes ago, up to the tenant's
-- `complete_before`, and each UTC day once its 24 hours are in. A message of an hour that has
-- ended which is inserted, changed (in a column the figures read) or deleted marks its hour
-- in `message_rollup_dirty`, by the triggers below; readers read a marked hour from the
-- messages themselves until the job has computed it again.

CREATE TABLE message_hour_rollups (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    hour TEXT NOT NULL,              -- 'YYYY-MM-DDTHH', UTC
    channel TEXT NOT NULL,
    message_type TEXT NOT NULL,
    total INTEGER NOT NULL,
    delivered INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    in_flight INTEGER NOT NULL,
    canceled INTEGER NOT NULL,
    revenue REAL NOT NULL,
    with_revenue INTEGER NOT NULL,
    cost REAL NOT NULL,
    with_cost INTEGER NOT NULL,
    margin REAL NOT NULL,
    with_margin INTEGER NOT NULL,
    priced_revenue REAL NOT NULL,
    segments INTEGER NOT NULL,
    characters INTEGER NOT NULL,
    with_characters INTEGER NOT NULL,
    min_characters INTEGER,
    max_characters INTEGER,
    linked_to_calls INTEGER NOT NULL,
    delivery_ms INTEGER NOT NULL,
    with_delivery_time INTEGER NOT NULL,
    losing INTEGER NOT NULL,
    loss REAL NOT NULL,
    recipients BLOB NOT NULL,
    PRIMARY KEY (tenant_id, hour, channel, message_type)
);

CREATE TABLE message_day_rollups (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    day TEXT NOT NULL,               -- 'YYYY-MM-DD', UTC
    channel TEXT NOT NULL,
    message_type TEXT NOT NULL,
    total INTEGER NOT NULL,
    delivered INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    in_flight INTEGER NOT NULL,
    canceled INTEGER NOT NULL,
    revenue REAL NOT NULL,
    with_revenue INTEGER NOT NULL,
    cost REAL NOT NULL,
    with_cost INTEGER NOT NULL,
    margin REAL NOT NULL,
    with_margin INTEGER NOT NULL,
    priced_revenue REAL NOT NULL,
    segments INTEGER NOT NULL,
    characters INTEGER NOT NULL,
    with_characters INTEGER NOT NULL,
    min_characters INTEGER,
    max_characters INTEGER,
    linked_to_calls INTEGER NOT NULL,
    delivery_ms INTEGER NOT NULL,
    with_delivery_time INTEGER NOT NULL,
    losing INTEGER NOT NULL,
    loss REAL NOT NULL,
    recipients BLOB NOT NULL,
    PRIMARY KEY (tenant_id, day, channel, message_type)
);

-- every hour before complete_before (ISO-8601 UTC, on the hour) has its rows (none for an
-- hour without outbound messages), but for the hours marked dirty
CREATE TABLE message_rollup_state (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    complete_before TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- hours whose rows no longer match the messages (no foreign key: a tenant's deletion
-- deletes its messages, whose triggers write here; the job forgets marks of gone tenants)
CREATE TABLE message_rollup_dirty (
    tenant_id TEXT NOT NULL,
    hour TEXT NOT NULL,
    PRIMARY KEY (tenant_id, hour)
);

-- The losing messages of a period, worst first (GET /api/analytics/unprofitable): few rows,
-- read in margin order.
CREATE INDEX ix_messages_losing ON channel_messages_log (tenant_id, margin, created_at)
    WHERE direction = 'outbound' AND margin < 0;

-- An hour "has ended" by the database's clock. The WHEN clause is all a write to a message
-- of the current hour pays.
CREATE TRIGGER message_rollups_on_insert AFTER INSERT ON channel_messages_log
WHEN NEW.direction = 'outbound'
    AND NEW.created_at < strftime('%Y-%m-%dT%H:00:00.000Z', 'now')
BEGIN
    INSERT INTO message_rollup_dirty (tenant_id, hour)
    VALUES (NEW.tenant_id, substr(NEW.created_at, 1, 13)) ON CONFLICT DO NOTHING;
END;

CREATE TRIGGER message_rollups_on_update AFTER UPDATE OF
    tenant_id, created_at, direction, status, channel, message_type, to_address,
    character_count, num_segments, billed_cost, provider_cost, margin, call_id, sent_at,
    delivered_at
ON channel_messages_log
WHEN OLD.direction = 'outbound'
    AND OLD.created_at < strftime('%Y-%m-%dT%H:00:00.000Z', 'now')
BEGIN
    INSERT INTO message_rollup_dirty (tenant_id, hour)
    VALUES (OLD.tenant_id, substr(OLD.created_at, 1, 13)) ON CONFLICT DO NOTHING;
END;

CREATE TRIGGER message_rollups_on_delete AFTER DELETE ON channel_messages_log
WHEN OLD.direction = 'outbound'
    AND OLD.created_at < strftime('%Y-%m-%dT%H:00:00.000Z', 'now')
BEGIN
    INSERT INTO message_rollup_dirty (tenant_id, hour)
    VALUES (OLD.tenant_id, substr(OLD.created_at, 1, 13)) ON CONFLICT DO NOTHING;
END;
