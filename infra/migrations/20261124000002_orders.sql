-- Holds, orders, payments, refunds, tickets, the order audit trail, the outbox to NATS
-- and the job table. Every state a row can be in is named by a CHECK, so a typo in
-- code cannot invent a state.

CREATE TABLE holds (
    id              uuid PRIMARY KEY,
    event_id        uuid NOT NULL REFERENCES events (id),
    tier_id         uuid NOT NULL REFERENCES tiers (id),
    quantity        integer NOT NULL CHECK (quantity BETWEEN 1 AND 100),
    admission_jti   text NOT NULL,
    admission_seq   bigint,
    buyer_email     text NOT NULL,
    buyer_name      text NOT NULL,
    status          text NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'converted', 'expired', 'released')),
    expires_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    closed_at       timestamptz
);
-- One admission holds at most one thing at a time.
CREATE UNIQUE INDEX holds_one_active_per_admission ON holds (event_id, admission_jti)
    WHERE status = 'active';
CREATE INDEX holds_active_expiry ON holds (expires_at) WHERE status = 'active';
CREATE INDEX holds_tier ON holds (tier_id);

CREATE TABLE orders (
    id                 uuid PRIMARY KEY,
    event_id           uuid NOT NULL REFERENCES events (id),
    hold_id            uuid NOT NULL UNIQUE REFERENCES holds (id),
    tier_id            uuid NOT NULL REFERENCES tiers (id),
    quantity           integer NOT NULL CHECK (quantity BETWEEN 1 AND 100),
    amount_cents       bigint NOT NULL CHECK (amount_cents >= 0),
    currency           text NOT NULL,
    buyer_email        text NOT NULL,
    buyer_name         text NOT NULL,
    status             text NOT NULL
                       CHECK (status IN ('pending_payment', 'paid', 'partially_refunded',
                                         'refunded', 'cancelled')),
    payment_provider   text NOT NULL,
    payment_intent_id  text UNIQUE,
    refunded_cents     bigint NOT NULL DEFAULT 0 CHECK (refunded_cents >= 0),
    created_at         timestamptz NOT NULL DEFAULT now(),
    paid_at            timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_refund_within_amount CHECK (refunded_cents <= amount_cents)
);
CREATE INDEX orders_event ON orders (event_id, created_at);
CREATE INDEX orders_pending ON orders (created_at) WHERE status = 'pending_payment';

-- Every provider event once: the unique key makes duplicate webhooks harmless.
CREATE TABLE payment_events (
    id                 bigserial PRIMARY KEY,
    provider           text NOT NULL,
    provider_event_id  text NOT NULL,
    order_id           uuid REFERENCES orders (id),
    type               text NOT NULL,
    payload            jsonb NOT NULL,
    received_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (provider, provider_event_id)
);
CREATE INDEX payment_events_order ON payment_events (order_id);

CREATE TABLE refunds (
    id                  uuid PRIMARY KEY,
    order_id            uuid NOT NULL REFERENCES orders (id),
    amount_cents        bigint NOT NULL CHECK (amount_cents > 0),
    reason              text NOT NULL,
    actor               text NOT NULL,
    status              text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    provider_refund_id  text UNIQUE,
    last_error          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_order ON refunds (order_id);

CREATE TABLE tickets (
    id            uuid PRIMARY KEY,
    order_id      uuid NOT NULL REFERENCES orders (id),
    event_id      uuid NOT NULL REFERENCES events (id),
    tier_id       uuid NOT NULL REFERENCES tiers (id),
    seat_no       integer NOT NULL CHECK (seat_no >= 1),
    code          text NOT NULL UNIQUE,
    holder_email  text NOT NULL,
    holder_name   text NOT NULL,
    status        text NOT NULL DEFAULT 'valid'
                  CHECK (status IN ('valid', 'transferred', 'revoked', 'refunded')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (order_id, seat_no)
);
CREATE INDEX tickets_event ON tickets (event_id);

-- The order audit trail: every transition, in the transaction that made it.
CREATE TABLE order_events (
    id        bigserial PRIMARY KEY,
    order_id  uuid REFERENCES orders (id),
    hold_id   uuid REFERENCES holds (id),
    actor     text NOT NULL,
    action    text NOT NULL,
    before    jsonb,
    after     jsonb,
    at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT order_events_about_something CHECK (order_id IS NOT NULL OR hold_id IS NOT NULL)
);
CREATE INDEX order_events_order ON order_events (order_id, at);
CREATE INDEX order_events_hold ON order_events (hold_id, at);

-- Messages to NATS, written with the change that caused them and relayed afterwards;
-- the relay publishes with Nats-Msg-Id = id so JetStream drops a re-publish.
CREATE TABLE outbox (
    id            uuid PRIMARY KEY,
    subject       text NOT NULL,
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (created_at) WHERE published_at IS NULL;

-- Scheduled and retried work, claimed with FOR UPDATE SKIP LOCKED.
CREATE TABLE jobs (
    id          uuid PRIMARY KEY,
    kind        text NOT NULL,
    payload     jsonb NOT NULL,
    run_at      timestamptz NOT NULL DEFAULT now(),
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text,
    done_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_due ON jobs (run_at) WHERE done_at IS NULL;
