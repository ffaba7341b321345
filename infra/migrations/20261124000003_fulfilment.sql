-- Fulfilment: access links (only hashes), deliveries (each email, as sent, with its
-- fate), redemptions of links, parked messages, and de-duplicated scheduled jobs.

CREATE TABLE access_links (
    id              uuid PRIMARY KEY,
    ticket_id       uuid NOT NULL REFERENCES tickets (id),
    generation      integer NOT NULL CHECK (generation >= 1),
    token_hash      bytea NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    revoked_reason  text,
    UNIQUE (ticket_id, generation)
);
-- A ticket has at most one live link.
CREATE UNIQUE INDEX access_links_one_live ON access_links (ticket_id) WHERE revoked_at IS NULL;

CREATE TABLE deliveries (
    id               uuid PRIMARY KEY,
    order_id         uuid NOT NULL REFERENCES orders (id),
    kind             text NOT NULL
                     CHECK (kind IN ('confirmation', 'refund_notice', 'reminder', 'transfer_notice',
                                     'email_change', 'reschedule_notice', 'cancellation_notice')),
    -- What makes this email unique for its order ("confirmation:1", "refund:<id>", ...):
    -- a redelivered message can never queue a second one.
    dedup_key        text NOT NULL,
    recipient        text NOT NULL,
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'sent', 'failed', 'bounced')),
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    message_id       text,
    subject          text,
    body_text        text,
    body_html        text,
    ics              text,
    context          jsonb NOT NULL DEFAULT '{}',
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    UNIQUE (order_id, dedup_key)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'queued';
CREATE INDEX deliveries_order ON deliveries (order_id, created_at);

CREATE TABLE redemptions (
    id              bigserial PRIMARY KEY,
    access_link_id  uuid REFERENCES access_links (id),
    ticket_id       uuid REFERENCES tickets (id),
    outcome         text NOT NULL,
    client          text,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX redemptions_ticket ON redemptions (ticket_id, at);

-- Messages the consumer could not make sense of, kept for the console.
CREATE TABLE parked_messages (
    id          bigserial PRIMARY KEY,
    subject     text NOT NULL,
    payload     text NOT NULL,
    error       text NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now()
);

-- A scheduled job that must exist once (a reminder for one start time, say).
ALTER TABLE jobs ADD COLUMN dedup_key text UNIQUE;
