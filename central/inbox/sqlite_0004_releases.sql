-- A gap is asked for again after a growing wait (next_request), and handed to a person once
-- it has been asked for too often. Seqs a store says it will never send (an outbox rebuilt
-- after damage, rows purged there) are kept here: the store's audit of why a gap closed.
ALTER TABLE gaps ADD COLUMN next_request TEXT;
CREATE TABLE releases (
    id INTEGER PRIMARY KEY,
    store TEXT NOT NULL,
    from_seq INTEGER NOT NULL,
    to_seq INTEGER NOT NULL,
    cause TEXT NOT NULL,
    reason TEXT NOT NULL,
    batch_id TEXT,
    received_at TEXT NOT NULL,
    UNIQUE (store, from_seq, to_seq, cause)
);
CREATE INDEX releases_store ON releases (store, received_at);
