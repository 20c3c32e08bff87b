-- Indexes for analytics (GET /api/metrics/*, /api/communications, /admin/metrics).

-- Covering index for a tenant's message metrics: the equality on tenant_id and the range on
-- created_at select the period, and every other column the aggregates read is in the index,
-- so SQLite never visits the table rows (whose bodies, HTML and metadata can be kilobytes).
-- Its (tenant_id, created_at) prefix serves every query the narrower index served, so that
-- one goes: one index fewer to update on each write.
CREATE INDEX ix_messages_analytics ON channel_messages_log (
    tenant_id, created_at, direction, status, channel, message_type, agent, to_address,
    character_count, num_segments, billed_cost, provider_cost, margin, call_id, sent_at,
    delivered_at
);

DROP INDEX ix_messages_tenant_created;

-- A contact's timeline: inbound messages come from the contact (to_address is indexed by
-- ix_messages_tenant_to), outbound calls go to it (from_number is indexed by ix_call_logs_from).
CREATE INDEX ix_messages_tenant_from ON channel_messages_log (tenant_id, from_address, created_at);

CREATE INDEX ix_call_logs_to ON call_logs (tenant_id, to_number, created_at);

-- Call metrics count the appointments booked in the period by creation time; the existing
-- index is on starts_at.
CREATE INDEX ix_rendez_vous_tenant_created ON rendez_vous (tenant_id, created_at);
