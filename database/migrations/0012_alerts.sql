-- Alerts (gateway/services/alerts.py): what the evaluation on the cron schedule found, the
-- webhook deliveries of each new or resolved alert, the figures the Prometheus gauges show
-- and the run of consecutive webhook failures per source.

-- The operator's monthly SMS budget of a tenant, in EUR (billed cost); NULL: no budget.
ALTER TABLE tenants ADD COLUMN monthly_sms_budget_eur REAL;

-- One row per alert. `scope` is the tenant's id, or 'overall' (tenant_id NULL) for the
-- figures of every tenant together; `subject` says what inside the scope the rule is about
-- (a destination, a webhook source; '' when the rule has one subject). While an alert is
-- active (resolved_at NULL) the unique index stops a second one for the same condition.
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    tenant_id TEXT REFERENCES tenants (id) ON DELETE CASCADE,
    rule TEXT NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    value REAL NOT NULL,            -- the figure when last evaluated
    threshold REAL NOT NULL,
    since TEXT NOT NULL,            -- first seen (ISO-8601 UTC)
    last_seen TEXT NOT NULL,
    resolved_at TEXT,
    notification TEXT               -- NULL (no ALERT_WEBHOOK_URL), pending, delivered, failed
);

CREATE UNIQUE INDEX ux_alerts_active ON alerts (scope, rule, subject) WHERE resolved_at IS NULL;
CREATE INDEX ix_alerts_tenant ON alerts (tenant_id);

-- The outbox of ALERT_WEBHOOK_URL: one row per POST to make, its body fixed when the alert
-- fired or resolved. Claimed like a due message: status 'sending' with next_attempt_at the
-- end of the lease and claim_id naming the claim; a lease that runs out is taken again.
CREATE TABLE alert_deliveries (
    id TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    event TEXT NOT NULL,            -- fired | resolved
    body TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending', -- pending | sending | delivered | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    claim_id TEXT,
    last_error TEXT,
    created_at TEXT NOT NULL,
    delivered_at TEXT
);

CREATE INDEX ix_alert_deliveries_due ON alert_deliveries (status, next_attempt_at);
CREATE INDEX ix_alert_deliveries_alert ON alert_deliveries (alert_id);

-- The figures of the last evaluation, read by GET /metrics (one small read per scrape).
CREATE TABLE alert_figures (
    scope TEXT NOT NULL,
    figure TEXT NOT NULL,
    value REAL NOT NULL,
    evaluated_at TEXT NOT NULL,
    PRIMARY KEY (scope, figure)
);

-- Webhooks failing in a row, per source: 'in:<provider>' (provider webhooks this gateway
-- refused or failed to process), 'out:alert_webhook' (ALERT_WEBHOOK_URL answering badly).
-- A success sets consecutive_failures back to 0.
CREATE TABLE webhook_health (
    source TEXT PRIMARY KEY,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_failure_at TEXT,
    last_reason TEXT,
    updated_at TEXT NOT NULL
);
