-- PostgreSQL twin of database/migrations/0008_claim_leases.sql.
-- A claim of a due message by one instance's dispatcher: `claim_id` names the claim (a new
-- one each time the row is claimed, a lease taken over included), and `next_attempt_at` of a
-- `sending` row is when the lease runs out. Every write the dispatcher makes on behalf of a
-- claim (retry, failure, "outcome unknown", "not found at the provider: send it") names the
-- claim, so an instance whose claim was taken over (it froze, or lost the database for a
-- while) cannot undo the newer claim's work.
ALTER TABLE channel_messages_log ADD COLUMN claim_id TEXT;
