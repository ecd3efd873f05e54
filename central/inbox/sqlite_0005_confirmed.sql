-- Inbox schema 3 (SQLite): the total a target itself stated for a posted sale, which
-- reconciliation sets beside the POS's.
ALTER TABLE deliveries ADD COLUMN confirmed TEXT;
