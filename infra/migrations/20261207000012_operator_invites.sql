-- Invitations (issue 19): an admin invites an operator or a host by email from the
-- console's People page. The invitation is a link, of which only a hash is kept, with
-- which the person chooses their own password, once, within a week; until then the
-- account's password hash is one nothing can match.
CREATE TABLE operator_invites (
    token_hash   bytea PRIMARY KEY,
    operator_id  uuid NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz
);
CREATE INDEX operator_invites_operator ON operator_invites (operator_id);
