-- A batch of holds on one tier, committed by one call: the orders writer sends the
-- batch's columns as arrays in autocommit, so the statement's own transaction is the
-- batch's and a batch costs one round trip instead of four (BEGIN, lock, insert,
-- COMMIT), with the tier row locked only while Postgres works (orders::holds).
--
-- Seats go in arrival order, greedily: a request that does not fit is skipped and a
-- later, smaller one may still fit. A second request for one admission in the batch
-- is `hold_exists`; one the partial unique index leaves out is `hold_exists`, or
-- `admission_used` if the admission already has a converted hold. A request left out
-- gives its seats back, and the requests refused for want of them get another round.
-- `held` moves by exactly what was inserted (the tiers_no_oversell CHECK still
-- guards), and each hold gets its `hold.create` audit row in the same transaction.
--
-- p_firsts numbers the batch's admissions: for each request, the index (1-based) of
-- the batch's first request with the same jti (the writer numbers them). The unique
-- index, not these numbers, is what keeps one active hold per admission.
--
-- One row per request: idx (1-based, as in the arrays), outcome (`held`, `sold_out`,
-- `hold_exists`, `admission_used`), and for a hold its price and currency.
CREATE FUNCTION hold_batch(
    p_event_id   uuid,
    p_tier_id    uuid,
    p_ids        uuid[],
    p_quantities int4[],
    p_jtis       text[],
    p_firsts     int[],
    p_seqs       int8[],
    p_emails     text[],
    p_names      text[],
    p_expiries   timestamptz[]
) RETURNS TABLE (idx int, outcome text, amount_cents bigint, currency text)
LANGUAGE plpgsql AS $$
DECLARE
    n          int := cardinality(p_ids);
    price      bigint;
    cur        text;
    remaining  int;
    results    text[] := array_fill(NULL::text, ARRAY[n]);
    -- The round that inserts each request (0: none yet).
    round_of   int[] := array_fill(0, ARRAY[n]);
    rnd        int := 0;
    waiting    int[] := ARRAY(SELECT generate_series(1, n));
    refused    int[];
    -- Admissions taken in this batch, by p_firsts: any other request for one is a
    -- duplicate. (Numbers, not a set of jtis: a lookup in a text[] would cost
    -- O(batch) per request, half a millisecond for a full batch.)
    seen       bool[] := array_fill(false, ARRAY[n]);
    taken      int;
    inserted   uuid[];
    got        int;
    used       text[];
    freed      int;
    total      int := 0;
    i          int;
BEGIN
    SELECT t.capacity - t.sold - t.held, t.price_cents, t.currency
      INTO remaining, price, cur
      FROM tiers t
     WHERE t.id = p_tier_id AND t.event_id = p_event_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tier % is not in event %', p_tier_id, p_event_id
              USING ERRCODE = 'no_data_found';
    END IF;

    LOOP
        rnd := rnd + 1;
        taken := 0;
        refused := '{}';
        FOREACH i IN ARRAY waiting LOOP
            IF seen[p_firsts[i]] THEN
                results[i] := 'hold_exists';
            ELSIF p_quantities[i] > remaining THEN
                -- Not taken: a later round may still give this admission its hold.
                refused := refused || i;
            ELSE
                remaining := remaining - p_quantities[i];
                seen[p_firsts[i]] := true;
                round_of[i] := rnd;
                taken := taken + 1;
            END IF;
        END LOOP;
        EXIT WHEN taken = 0;

        WITH ins AS (
            INSERT INTO holds (id, event_id, tier_id, quantity, admission_jti,
                               admission_seq, buyer_email, buyer_name, expires_at)
            SELECT b.id, p_event_id, p_tier_id, b.q, b.jti, b.seq, b.email, b.name, b.exp
              FROM unnest(p_ids, p_quantities, p_jtis, p_seqs, p_emails, p_names,
                          p_expiries, round_of)
                   AS b(id, q, jti, seq, email, name, exp, r)
             WHERE b.r = rnd
               AND NOT EXISTS (SELECT 1 FROM holds c
                                WHERE c.event_id = p_event_id AND c.admission_jti = b.jti
                                  AND c.status = 'converted')
            ON CONFLICT (event_id, admission_jti) WHERE status = 'active' DO NOTHING
            RETURNING holds.id, holds.quantity, holds.expires_at),
        audited AS (
            INSERT INTO order_events (hold_id, actor, action, after)
            SELECT ins.id, 'buyer', 'hold.create',
                   jsonb_build_object('status', 'active', 'tier_id', p_tier_id,
                                      'quantity', ins.quantity,
                                      'expires_at', ins.expires_at)
              FROM ins)
        SELECT coalesce(array_agg(ins.id), '{}'), coalesce(sum(ins.quantity), 0)
          INTO inserted, got
          FROM ins;
        total := total + got;

        IF cardinality(inserted) = taken THEN
            -- The common case: everything taken went in.
            FOREACH i IN ARRAY waiting LOOP
                IF round_of[i] = rnd THEN
                    results[i] := 'held';
                END IF;
            END LOOP;
            EXIT;
        END IF;

        -- Rare: only a replayed or doubled admission is left out, so only now ask why.
        used := ARRAY(SELECT DISTINCT h.admission_jti FROM holds h
                       WHERE h.event_id = p_event_id AND h.status = 'converted'
                         AND h.admission_jti IN (SELECT p_jtis[k] FROM unnest(waiting) AS k
                                                  WHERE round_of[k] = rnd));
        freed := 0;
        FOREACH i IN ARRAY waiting LOOP
            CONTINUE WHEN round_of[i] <> rnd;
            IF p_ids[i] = ANY (inserted) THEN
                results[i] := 'held';
            ELSE
                freed := freed + p_quantities[i];
                results[i] := CASE WHEN p_jtis[i] = ANY (used) THEN 'admission_used'
                                   ELSE 'hold_exists' END;
            END IF;
        END LOOP;
        remaining := remaining + freed;
        EXIT WHEN freed = 0 OR cardinality(refused) = 0;
        waiting := refused;
    END LOOP;

    IF total > 0 THEN
        UPDATE tiers SET held = held + total WHERE id = p_tier_id;
    END IF;

    -- Whatever is still undecided was refused for want of seats.
    RETURN QUERY
        SELECT k, coalesce(results[k], 'sold_out'),
               CASE WHEN results[k] = 'held' THEN price * p_quantities[k] END,
               CASE WHEN results[k] = 'held' THEN cur END
          FROM generate_series(1, n) AS k;
END
$$;
