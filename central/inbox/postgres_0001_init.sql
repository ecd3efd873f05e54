-- Inbox schema 1 (PostgreSQL): records once by key, their state history, each store's
-- stream (receipts above the gap-free watermark, gaps), the fleet, exceptions, refusals.
CREATE TABLE records (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    store TEXT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    link_key TEXT,
    batch_id TEXT NOT NULL,
    body JSONB NOT NULL,
    state TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_by TEXT,
    lease_until TIMESTAMPTZ,
    next_attempt_at TIMESTAMPTZ
);
CREATE INDEX records_work ON records (state, id);
CREATE INDEX records_link ON records (link_key) WHERE link_key IS NOT NULL;
CREATE INDEX records_store_seq ON records (store, seq);
CREATE TABLE record_states (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    record_id BIGINT NOT NULL REFERENCES records (id),
    state TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    relay_id TEXT,
    detail TEXT
);
CREATE INDEX record_states_record ON record_states (record_id);
CREATE TABLE receipts (
    store TEXT NOT NULL,
    seq BIGINT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (store, seq)
);
CREATE TABLE gaps (
    store TEXT NOT NULL,
    from_seq BIGINT NOT NULL,
    to_seq BIGINT NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL,
    last_requested TIMESTAMPTZ,
    requests INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (store, from_seq)
);
CREATE TABLE stores (
    store TEXT PRIMARY KEY,
    state TEXT NOT NULL DEFAULT 'unknown',
    first_seen TIMESTAMPTZ NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL,
    agent_id TEXT,
    agent_version TEXT,
    backlog_rows INTEGER,
    oldest_unacked_seconds DOUBLE PRECISION,
    contiguous_seq BIGINT NOT NULL DEFAULT 0,
    max_seq BIGINT NOT NULL DEFAULT 0,
    records INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE exceptions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store TEXT NOT NULL,
    seq BIGINT,
    key TEXT,
    record_id BIGINT REFERENCES records (id),
    reason TEXT NOT NULL,
    payload JSONB,
    dedupe TEXT UNIQUE,
    created_at TIMESTAMPTZ NOT NULL,
    resolved_at TIMESTAMPTZ
);
CREATE TABLE refusals (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    topic_store TEXT NOT NULL,
    envelope_store TEXT,
    batch_id TEXT,
    reason TEXT NOT NULL,
    relay_id TEXT,
    at TIMESTAMPTZ NOT NULL
);
