-- PostgreSQL twin of database/migrations/0006_shared_limits.sql.
-- Send rate limits and per-sender pacing shared by every instance on one database
-- (gateway/store/rate_buckets.py takes a token or a slot in one upsert).
--
-- Instants here are seconds since the Unix epoch (double precision), read from the
-- database clock (clock_timestamp()), so that instances whose clocks differ share one
-- bucket without refilling it from their skew.

-- One token bucket per [[ratelimits]] binding (`name`) and key (a tenant id, or tenant and
-- channel): `tokens` left at `stamp`, refilled at limit/period a second. `full_at` is when
-- the bucket is full again: a row past it is the same as no row, and is swept.
-- No index on full_at: each take rewrites it, and an unindexed column keeps the update
-- in-page (HOT); the sweep scans a table of one row per active key.
CREATE TABLE rate_buckets (
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    tokens DOUBLE PRECISION NOT NULL,
    stamp DOUBLE PRECISION NOT NULL,
    full_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (name, key)
);

-- The next free send slot of each sender (a number, an address): a send waits for
-- greatest(next_slot, now), and moves next_slot one interval past it. A row whose slot has
-- passed is the same as no row, and is swept.
CREATE TABLE pacing_slots (
    sender TEXT PRIMARY KEY,
    next_slot DOUBLE PRECISION NOT NULL
);
