-- Inbox schema 6: the due deliveries of a target in seq order, so a worker's claim walks
-- the first rows of an index instead of sorting every pending delivery (a backlog of a
-- million records made each claim a full scan).
CREATE INDEX deliveries_queue ON deliveries (target, seq, record_id)
    WHERE state IN ('pending', 'retrying');
