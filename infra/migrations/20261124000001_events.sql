-- Events and their tiers. Inventory truth lives here: the CHECK on tiers refuses an
-- oversell whatever the application does.

CREATE TABLE events (
    id                     uuid PRIMARY KEY,
    slug                   text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,63}$'),
    title                  text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    starts_at              timestamptz NOT NULL,
    ends_at                timestamptz NOT NULL,
    timezone               text NOT NULL,
    meeting                jsonb NOT NULL,
    refund_policy          jsonb NOT NULL,
    status                 text NOT NULL DEFAULT 'scheduled'
                           CHECK (status IN ('scheduled', 'cancelled')),
    hold_ttl_seconds       integer NOT NULL DEFAULT 600 CHECK (hold_ttl_seconds BETWEEN 60 AND 3600),
    queue_mode             text NOT NULL
                           CHECK (queue_mode IN ('off', 'prequeue', 'on', 'paused', 'sold_out', 'closed')),
    queue_rate_per_minute  integer NOT NULL CHECK (queue_rate_per_minute BETWEEN 0 AND 1000000),
    queue_max_active       integer NOT NULL CHECK (queue_max_active BETWEEN 1 AND 1000000),
    admission_ttl_seconds  integer NOT NULL CHECK (admission_ttl_seconds BETWEEN 30 AND 86400),
    queue_opens_at         timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_ends_after_start CHECK (ends_at > starts_at),
    CONSTRAINT events_prequeue_has_opening CHECK (queue_mode <> 'prequeue' OR queue_opens_at IS NOT NULL)
);

CREATE TABLE tiers (
    id             uuid PRIMARY KEY,
    event_id       uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    code           text NOT NULL CHECK (code ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
    name           text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    price_cents    bigint NOT NULL CHECK (price_cents >= 0),
    currency       text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    capacity       integer NOT NULL CHECK (capacity >= 0),
    sold           integer NOT NULL DEFAULT 0 CHECK (sold >= 0),
    held           integer NOT NULL DEFAULT 0 CHECK (held >= 0),
    max_per_order  integer NOT NULL DEFAULT 10 CHECK (max_per_order BETWEEN 1 AND 100),
    position       integer NOT NULL,
    CONSTRAINT tiers_no_oversell CHECK (sold + held <= capacity),
    UNIQUE (event_id, code)
);

-- Operators' API tokens; only a SHA-256 of the token is kept.
CREATE TABLE operator_tokens (
    id            uuid PRIMARY KEY,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    role          text NOT NULL CHECK (role IN ('admin', 'operator', 'host')),
    token_hash    bytea NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);

-- Every operator action: who, what, on what, before, after, why.
CREATE TABLE operator_audit (
    id        bigserial PRIMARY KEY,
    actor     text NOT NULL,
    action    text NOT NULL,
    event_id  uuid REFERENCES events (id) ON DELETE SET NULL,
    subject   text NOT NULL,
    before    jsonb,
    after     jsonb,
    reason    text,
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX operator_audit_event_at ON operator_audit (event_id, at DESC);
