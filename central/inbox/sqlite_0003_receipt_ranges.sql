-- Receipts above a store's gap-free watermark are kept as ranges [seq, to_seq], not one row
-- per seq: one record with a huge seq, or a long stream behind one missing seq, stays a few
-- rows. A row of schema 1 is the range of its one seq.
ALTER TABLE receipts ADD COLUMN to_seq INTEGER;
UPDATE receipts SET to_seq = seq;
