-- Inbox schema 3 (PostgreSQL): the total a target itself stated for a posted sale, which
-- reconciliation sets beside the POS's.
ALTER TABLE deliveries ADD COLUMN confirmed TEXT;
