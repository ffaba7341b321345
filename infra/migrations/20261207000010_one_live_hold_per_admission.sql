-- One admission, one hold that is active or became a purchase (issue 17).
--
-- Until now the database kept one *active* hold per admission
-- (holds_one_active_per_admission); that an admission had no *converted* hold was
-- checked by hold_batch's NOT EXISTS, read from the statement's snapshot. Two writers
-- (two orders replicas, or a writer beside a settlement) could pass both at once: a
-- hold inserted while another hold of the same admission was being converted waits on
-- the unique index for the converting transaction, finds the active row gone when it
-- commits, and its NOT EXISTS had already looked before. One unique index over both
-- states makes the database refuse that whatever the code does.
--
-- hold_batch needs no change: its `ON CONFLICT (event_id, admission_jti) WHERE status =
-- 'active'` infers this index as its arbiter (status = 'active' implies the index's
-- predicate), so a conflict with a converted hold is a skipped row that the batch then
-- explains as `admission_used`, like any spent admission. The NOT EXISTS probes of
-- converted holds are served by this index too.
--
-- Fails loudly if an admission already has an active hold beside a converted one: an
-- operator must release it first.
CREATE UNIQUE INDEX holds_one_live_per_admission ON holds (event_id, admission_jti)
    WHERE status IN ('active', 'converted');
DROP INDEX holds_one_active_per_admission;
DROP INDEX holds_converted_per_admission;
