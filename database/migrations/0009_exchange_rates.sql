-- The USD→EUR rate of each day, from the ECB's euro reference rates (EXCHANGE_RATE_URL).
-- One row per (day, currency): its insert is the claim of that day's fetch, so across any
-- number of instances one fetch a day reaches the feed. eur_per_unit is NULL while the fetch
-- runs or after it failed (the conversions of that day then use the last stored rate, else
-- USD_EUR_RATE); fetched_at says when it was claimed or last tried.
CREATE TABLE exchange_rates (
    day TEXT NOT NULL,              -- the UTC day the rate is used for (YYYY-MM-DD)
    currency TEXT NOT NULL,         -- 'USD'
    eur_per_unit REAL,              -- EUR for one unit of the currency (1 / the ECB's rate)
    source TEXT NOT NULL,           -- 'ecb:<the feed's date>', or why there is no rate
    fetched_at TEXT NOT NULL,       -- ISO-8601 UTC
    PRIMARY KEY (day, currency)
);
