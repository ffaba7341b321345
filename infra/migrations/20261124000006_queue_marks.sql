-- The last known counters of each live queue, kept by the console every second, so a
-- queue Redis has lost is restored without handing anyone's place out twice
-- (waitroom::recovery).
CREATE TABLE queue_marks (
    event_id          uuid PRIMARY KEY REFERENCES events (id) ON DELETE CASCADE,
    -- Every place up to here was admitted and its admission claimed.
    admitted_through  bigint NOT NULL CHECK (admitted_through >= 0),
    tail              bigint NOT NULL CHECK (tail >= admitted_through),
    -- Arrivals per second lately (decaying maximum): how many places may have been
    -- handed out between the last mark and a loss.
    joins_per_second  double precision NOT NULL DEFAULT 0 CHECK (joins_per_second >= 0),
    marked_at         timestamptz NOT NULL DEFAULT now()
);
