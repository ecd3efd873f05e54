-- Inbox schema 2 (SQLite): one delivery per record and target with its retry state,
-- the audit trail of every step, and exceptions that name their target and response.
CREATE TABLE deliveries (
    record_id INTEGER NOT NULL REFERENCES records (id),
    target TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    claimed_by TEXT,
    lease_until TEXT,
    route TEXT NOT NULL,
    seq INTEGER NOT NULL,
    subject TEXT,
    ref TEXT,
    last_status INTEGER,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    posted_at TEXT,
    PRIMARY KEY (record_id, target)
);
CREATE INDEX deliveries_due ON deliveries (target, state, next_attempt_at);
CREATE INDEX deliveries_subject ON deliveries (target, subject, seq) WHERE subject IS NOT NULL;
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    record_id INTEGER NOT NULL REFERENCES records (id),
    target TEXT,
    step TEXT NOT NULL,
    at TEXT NOT NULL,
    status INTEGER,
    detail TEXT,
    relay_id TEXT
);
CREATE INDEX audit_record ON audit (record_id, id);
CREATE INDEX audit_at ON audit (at);
ALTER TABLE exceptions ADD COLUMN target TEXT;
ALTER TABLE exceptions ADD COLUMN status INTEGER;
ALTER TABLE exceptions ADD COLUMN response TEXT;
ALTER TABLE exceptions ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE exceptions ADD COLUMN resolution TEXT;
ALTER TABLE exceptions ADD COLUMN resolved_by TEXT;
CREATE INDEX exceptions_open ON exceptions (resolved_at, id);
