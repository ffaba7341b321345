-- An operator's idempotency key is bound to what it did: a replay must name the same
-- action, target and request (and come from the same operator) to get the first
-- answer back; anything else is refused (422 idempotency_key_reused) and changes
-- nothing. The request is kept as a SHA-256 of its canonical JSON. Keys stored before
-- this migration have no hash and are checked on action, target and operator only.
ALTER TABLE operator_actions ADD COLUMN request_hash bytea;
