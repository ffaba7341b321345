-- An admission that has bought has been used: a replay of its token must not hold
-- again (holds_one_active_per_admission only covers active holds). The batch insert
-- asks this index whether an admission already has a converted hold.
CREATE INDEX holds_converted_per_admission ON holds (event_id, admission_jti)
    WHERE status = 'converted';
