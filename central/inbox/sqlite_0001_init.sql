-- Inbox schema 1 (SQLite): records once by key, their state history, each store's
-- stream (receipts above the gap-free watermark, gaps), the fleet, exceptions, refusals.
CREATE TABLE records (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    store TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    link_key TEXT,
    batch_id TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    received_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_by TEXT,
    lease_until TEXT,
    next_attempt_at TEXT
);
CREATE INDEX records_work ON records (state, id);
CREATE INDEX records_link ON records (link_key) WHERE link_key IS NOT NULL;
CREATE INDEX records_store_seq ON records (store, seq);
CREATE TABLE record_states (
    id INTEGER PRIMARY KEY,
    record_id INTEGER NOT NULL REFERENCES records (id),
    state TEXT NOT NULL,
    at TEXT NOT NULL,
    relay_id TEXT,
    detail TEXT
);
CREATE INDEX record_states_record ON record_states (record_id);
CREATE TABLE receipts (
    store TEXT NOT NULL,
    seq INTEGER NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (store, seq)
);
CREATE TABLE gaps (
    store TEXT NOT NULL,
    from_seq INTEGER NOT NULL,
    to_seq INTEGER NOT NULL,
    first_seen TEXT NOT NULL,
    last_requested TEXT,
    requests INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (store, from_seq)
);
CREATE TABLE stores (
    store TEXT PRIMARY KEY,
    state TEXT NOT NULL DEFAULT 'unknown',
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    agent_id TEXT,
    agent_version TEXT,
    backlog_rows INTEGER,
    oldest_unacked_seconds REAL,
    contiguous_seq INTEGER NOT NULL DEFAULT 0,
    max_seq INTEGER NOT NULL DEFAULT 0,
    records INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE exceptions (
    id INTEGER PRIMARY KEY,
    store TEXT NOT NULL,
    seq INTEGER,
    key TEXT,
    record_id INTEGER REFERENCES records (id),
    reason TEXT NOT NULL,
    payload TEXT,
    dedupe TEXT UNIQUE,
    created_at TEXT NOT NULL,
    resolved_at TEXT
);
CREATE TABLE refusals (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    topic_store TEXT NOT NULL,
    envelope_store TEXT,
    batch_id TEXT,
    reason TEXT NOT NULL,
    relay_id TEXT,
    at TEXT NOT NULL
);
