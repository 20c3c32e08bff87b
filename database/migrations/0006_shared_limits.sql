-- Send rate limits and per-sender pacing shared by every instance on one database.
-- Only the PostgreSQL engine uses these tables (gateway/store/rate_buckets.py): one SQLite
-- file serves one process, which keeps its buckets and pacing in memory. The tables exist
-- on both engines so that the two schemas stay the same.
--
-- Instants here are seconds since the Unix epoch (REAL), not ISO-8601 text: they are
-- read from the database clock and refilled with arithmetic inside one statement.

-- One token bucket per [[ratelimits]] binding (`name`) and key (a tenant id, or tenant and
-- channel): `tokens` left at `stamp`, refilled at limit/period a second. `full_at` is when
-- the bucket is full again: a row past it is the same as no row, and is swept.
-- No index on full_at: each take rewrites it, and an unindexed column keeps the update
-- in-page (PostgreSQL's HOT); the sweep scans a table of one row per active key.
CREATE TABLE rate_buckets (
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    tokens REAL NOT NULL,
    stamp REAL NOT NULL,
    full_at REAL NOT NULL,
    PRIMARY KEY (name, key)
);

-- The next free send slot of each sender (a number, an address): a send waits for
-- max(next_slot, now), and moves next_slot one interval past it. A row whose slot has
-- passed is the same as no row, and is swept.
CREATE TABLE pacing_slots (
    sender TEXT PRIMARY KEY,
    next_slot REAL NOT NULL
);
