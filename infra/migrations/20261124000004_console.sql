-- The console: operator accounts and sessions, and the indexes that make "find any
-- buyer among thousands" a one-box search.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE operators (
    id             uuid PRIMARY KEY,
    email          text NOT NULL UNIQUE,
    name           text NOT NULL,
    role           text NOT NULL CHECK (role IN ('admin', 'operator', 'host')),
    password_hash  text NOT NULL,
    -- Hosts see only their events.
    event_ids      uuid[] NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    disabled_at    timestamptz
);

-- Server-side sessions: revocable, the cookie holds only a random id (hashed here).
CREATE TABLE operator_sessions (
    id_hash      bytea PRIMARY KEY,
    operator_id  uuid NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX operator_sessions_operator ON operator_sessions (operator_id);

-- Failed logins, for throttling by account and by client.
CREATE TABLE login_attempts (
    id        bigserial PRIMARY KEY,
    email     text NOT NULL,
    client    text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_attempts_email_at ON login_attempts (email, at);

-- API tokens may be limited to some events (hosts).
ALTER TABLE operator_tokens ADD COLUMN event_ids uuid[] NOT NULL DEFAULT '{}';

-- Search: prefix and fuzzy matching on what support people are given.
CREATE INDEX orders_buyer_email_trgm ON orders USING gin (lower(buyer_email) gin_trgm_ops);
CREATE INDEX orders_buyer_name_trgm ON orders USING gin (lower(buyer_name) gin_trgm_ops);
CREATE INDEX orders_buyer_email_prefix ON orders (lower(buyer_email) text_pattern_ops);
CREATE INDEX tickets_holder_email_trgm ON tickets USING gin (lower(holder_email) gin_trgm_ops);
CREATE INDEX tickets_code_prefix ON tickets (code text_pattern_ops);

-- Operator actions by idempotency key: a double-click, a retried request or a re-run
-- of a bulk fix does the work once and returns the first answer.
CREATE TABLE operator_actions (
    key          text PRIMARY KEY,
    actor        text NOT NULL,
    action       text NOT NULL,
    subject      text NOT NULL,
    result       jsonb NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);
