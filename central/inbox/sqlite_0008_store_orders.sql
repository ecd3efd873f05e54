-- Inbox schema 8: what each store says of the orders it holds. Its heartbeat reports the
-- downlink messages committed at the store and not yet written to the POS, and how many
-- of them waited past the agent's alert time. NULL until a heartbeat reports them.
ALTER TABLE stores ADD COLUMN orders_waiting INTEGER;
ALTER TABLE stores ADD COLUMN orders_alert INTEGER;
