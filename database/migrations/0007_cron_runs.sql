-- Crons run once per tick across instances: the instance whose insert of (job, minute)
-- lands runs that tick, the others skip it. The row stays as the record of who ran it and
-- how it ended; rows older than a few days are deleted by the ticks themselves.
CREATE TABLE cron_runs (
    job TEXT NOT NULL,              -- what ran: 'tick' for the [triggers] crons schedule
    scheduled_at TEXT NOT NULL,     -- the minute it was scheduled for (ISO-8601 UTC)
    instance TEXT NOT NULL,         -- who ran it: hostname:pid
    started_at TEXT NOT NULL,
    finished_at TEXT,               -- NULL while running, or when the instance died in it
    outcome TEXT,                   -- the tick's counts as JSON, or the error it raised
    PRIMARY KEY (job, scheduled_at)
);
