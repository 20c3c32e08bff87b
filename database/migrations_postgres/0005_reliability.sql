-- PostgreSQL twin of database/migrations/0005_reliability.sql.
-- What the reliability work needs: the country a tenant's national-format numbers are read
-- in, a poll schedule for messages whose final status callback never came, the TwiML a call
-- was answered with (so a retried CallSid gets the very same answer), and a version bound
-- into each channel's encrypted secrets so an old ciphertext written back is refused.

-- ISO 3166-1 alpha-2 (FR, BE, ...); NULL: taken from the tenant's time zone.
ALTER TABLE tenants ADD COLUMN country TEXT;

-- Set when a message is accepted by a provider that can be asked for a message's status;
-- cleared once the status is final (or the provider stopped being asked).
ALTER TABLE channel_messages_log ADD COLUMN poll_due_at TEXT;

ALTER TABLE channel_messages_log ADD COLUMN poll_checks BIGINT NOT NULL DEFAULT 0;

CREATE INDEX ix_messages_poll_due
    ON channel_messages_log (poll_due_at)
    WHERE poll_due_at IS NOT NULL;

-- Messages sent before this migration and still waiting for their final status get polled.
UPDATE channel_messages_log SET poll_due_at = updated_at
WHERE status = 'sent' AND provider = 'twilio' AND provider_message_id IS NOT NULL;

-- When the last send attempt started: a provider's record of the message can only have been
-- created after it, which is how a send whose answer was lost is told from its twins.
ALTER TABLE channel_messages_log ADD COLUMN attempted_at TEXT;

-- The dispatcher holds a message back while a twin of it (same recipient, sender and text)
-- is in flight. Only sends in flight without a provider id are in this index (a handful at
-- any time), so the check costs an index probe, not a read of every message to that
-- recipient: with 20,000 queued messages the table reads of that check halved the drain rate.
CREATE INDEX ix_messages_in_flight
    ON channel_messages_log (to_address, channel)
    WHERE status = 'sending' AND provider_message_id IS NULL;

ALTER TABLE call_logs ADD COLUMN answer_twiml TEXT;

-- 0: secrets written before this migration, bound to (tenant id, channel type) only.
ALTER TABLE channel_configurations ADD COLUMN secrets_version BIGINT NOT NULL DEFAULT 0;
