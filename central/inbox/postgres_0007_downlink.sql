-- Inbox schema 7: the way down. Each store's downlink queue with its own gap-free seq
-- (down_stores holds the last seq given out: its row is locked while a message is queued,
-- so two relays never give out one seq twice or skip one), every message once per key,
-- and the durable cursors of the order sources.
CREATE TABLE down_stores (
    store TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE downlink (
    store TEXT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    order_number TEXT,
    promised_by TIMESTAMPTZ,
    body TEXT NOT NULL,
    queued_at TIMESTAMPTZ NOT NULL,
    sent_at TIMESTAMPTZ,
    sends INTEGER NOT NULL DEFAULT 0,
    settled_at TIMESTAMPTZ,
    fulfilled TEXT,
    fulfilled_at TIMESTAMPTZ,
    PRIMARY KEY (store, seq),
    UNIQUE (store, key)
);
CREATE INDEX downlink_pending ON downlink (store, seq) WHERE settled_at IS NULL;
CREATE INDEX downlink_orders ON downlink (store, order_number, seq);
CREATE TABLE source_cursors (
    name TEXT PRIMARY KEY,
    position TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
