-- Search (issue 19): a ticket's holder is found by name as by address (a transferee is
-- often known to support only by name), and a buyer by an address the order had before
-- an operator corrected it. Each gets a trigram index like the buyer's own columns, so
-- the search's substring and word-similarity branches stay index lookups.
CREATE INDEX tickets_holder_name_trgm ON tickets USING gin (lower(holder_name) gin_trgm_ops);
CREATE INDEX order_events_old_email_trgm ON order_events
    USING gin (lower(before ->> 'email') gin_trgm_ops)
    WHERE action = 'order.email_change';
