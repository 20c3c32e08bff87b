-- What erasures did, never what they erased: the erasure of one contact's personal data
-- (DELETE /api/contacts/{contact}, GDPR art. 17) and each retention run (RETENTION_DAYS),
-- with how many rows of each table they touched. No address, no text: this table is the
-- proof that an erasure happened, and must not become a copy of what it removed.
CREATE TABLE erasures (
    id TEXT PRIMARY KEY,
    -- NULL for a retention run, which covers every tenant
    tenant_id TEXT REFERENCES tenants (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('contact', 'retention')),
    -- retention: the rows created before this instant (ISO-8601 UTC) were scrubbed
    older_than TEXT,
    -- {"table": rows touched, ...}
    counts TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(counts)),
    created_at TEXT NOT NULL
);

CREATE INDEX ix_erasures_tenant ON erasures (tenant_id, created_at);

CREATE INDEX ix_erasures_kind ON erasures (kind, created_at);

-- How far retention got in each tenant's rows of each table: every row created before
-- (created_at, id) is scrubbed, so a run starts where the last one stopped instead of
-- reading the years already done. A tenant without a row has had nothing scrubbed yet.
CREATE TABLE retention_marks (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    table_name TEXT NOT NULL CHECK (table_name IN ('channel_messages_log', 'call_logs')),
    created_at TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, table_name)
);
