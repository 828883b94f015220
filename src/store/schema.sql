-- secintake schema, version 1. Migrations append to src/store/mod.rs::MIGRATIONS; never edit
-- a released step.

-- Every message we were given, raw, before anything else happens to it.
CREATE TABLE messages (
    id          INTEGER PRIMARY KEY,
    sha256      TEXT    NOT NULL,
    message_id  TEXT,                       -- without angle brackets; NULL when absent
    source      TEXT    NOT NULL,           -- 'local', or 'imap:user@host/folder'
    source_ref  TEXT    NOT NULL DEFAULT '',-- file path, or 'UIDVALIDITY:UID'
    received_at INTEGER NOT NULL,           -- Unix seconds
    size        INTEGER NOT NULL,
    raw         BLOB    NOT NULL,
    verdict     TEXT    NOT NULL,
    reason      TEXT,
    project     TEXT,
    case_id     TEXT REFERENCES cases(id),
    from_addr   TEXT    NOT NULL DEFAULT '',
    subject     TEXT    NOT NULL DEFAULT '',
    date        INTEGER,                    -- the Date: header, Unix seconds
    signals     TEXT    NOT NULL DEFAULT '[]' -- JSON: why the verdict
) STRICT;
CREATE UNIQUE INDEX messages_sha256 ON messages(sha256);
CREATE UNIQUE INDEX messages_source_message_id ON messages(source, message_id) WHERE message_id IS NOT NULL;
CREATE INDEX messages_message_id ON messages(message_id);
CREATE INDEX messages_case ON messages(case_id);

CREATE TABLE cases (
    id          TEXT    PRIMARY KEY,        -- 'SEC-2026-0001'
    year        INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    project     TEXT,                       -- NULL: default triage team
    state       TEXT    NOT NULL,
    reporter    TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    appeal      INTEGER NOT NULL DEFAULT 0,
    cve         TEXT    NOT NULL DEFAULT '',-- space-separated CVE ids once allocated
    signals     TEXT    NOT NULL DEFAULT '[]',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (year, seq)
) STRICT;
CREATE INDEX cases_state ON cases(state);
CREATE INDEX cases_project ON cases(project);

-- The case timeline.
CREATE TABLE case_events (
    id          INTEGER PRIMARY KEY,
    case_id     TEXT    NOT NULL REFERENCES cases(id),
    at          INTEGER NOT NULL,
    kind        TEXT    NOT NULL,           -- reported, followup, forwarded, state, delivery_failed, ...
    detail      TEXT    NOT NULL DEFAULT '',
    message     INTEGER REFERENCES messages(id)
) STRICT;
CREATE INDEX case_events_case ON case_events(case_id, id);

-- The transactional outbox: written in the same transaction as the message and case.
CREATE TABLE outbox (
    id            INTEGER PRIMARY KEY,
    kind          TEXT    NOT NULL,         -- ack, forward, reject_html_only, ...
    auto_reply    INTEGER NOT NULL,         -- 1: RFC 3834 automatic reply (null envelope sender)
    case_id       TEXT REFERENCES cases(id),
    message       INTEGER REFERENCES messages(id),
    rfc822_id     TEXT    NOT NULL,         -- our Message-ID, without brackets
    envelope_from TEXT    NOT NULL DEFAULT '', -- '' is the null sender
    recipients    TEXT    NOT NULL,         -- JSON array of addresses
    rate_key      TEXT    NOT NULL DEFAULT '', -- lowercased recipient of an automatic reply
    body          BLOB    NOT NULL,         -- the rendered message
    created_at    INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_attempt  INTEGER NOT NULL,
    sent_at       INTEGER,
    failed_at     INTEGER,
    last_error    TEXT    NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX outbox_due ON outbox(next_attempt) WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX outbox_rfc822_id ON outbox(rfc822_id);
CREATE INDEX outbox_rate ON outbox(rate_key, created_at) WHERE auto_reply = 1;

-- IMAP bookkeeping: what we have seen of each folder.
CREATE TABLE mailbox_state (
    source      TEXT    PRIMARY KEY,
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL
) STRICT;
