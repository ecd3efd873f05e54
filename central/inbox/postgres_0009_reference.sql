-- Inbox schema 9: reference data for the stores. The latest state of every entity a feed
-- read (a customer, an item with all its prices), so central can fan it out and answer a
-- store's resync, what each store was last queued of each entity (its own scoped body's
-- digest), so a change that leaves a store's copy as it was queues nothing for it, each
-- store's resync request answered once, and the store cross-reference (each store's ids
-- across systems), loaded from CSV.
CREATE TABLE reference_entities (
    entity TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    version TEXT NOT NULL,
    body TEXT NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX reference_entities_kind ON reference_entities (kind, entity);
CREATE TABLE reference_sent (
    store TEXT NOT NULL,
    entity TEXT NOT NULL,
    digest TEXT NOT NULL,
    queued_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (store, entity)
);
CREATE TABLE reference_resyncs (
    store TEXT NOT NULL,
    scope TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    answered_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (store, scope)
);
CREATE TABLE store_xref (
    store TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    commercetools_store TEXT NOT NULL DEFAULT '',
    commercetools_channel TEXT NOT NULL DEFAULT '',
    customer_group TEXT NOT NULL DEFAULT '',
    currency TEXT NOT NULL DEFAULT '',
    adobe_source TEXT NOT NULL DEFAULT '',
    salesforce_location TEXT NOT NULL DEFAULT '',
    oms_store TEXT NOT NULL DEFAULT '',
    updated_at TIMESTAMPTZ NOT NULL
);
