-- outbox-relay sqlite store: the outbox table and its indexes.
--
-- This is the output of `outbox-relay schema sqlite` for the default
-- configuration (table "outbox", no column.* renames); the relay creates
-- the same at start-up unless store.create_schema = false. See
-- docs/sqlite-schema.md for what each column means.
--
-- The application writes the first block of columns, in the same
-- transaction as its business rows:
--
--   INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload)
--   VALUES ('order', '1042', 'OrderCreated', '{"order_id":1042}');

CREATE TABLE IF NOT EXISTS "outbox" (
    -- written by the application
    "id" INTEGER PRIMARY KEY AUTOINCREMENT, -- commit order
    "event_id" TEXT NOT NULL DEFAULT ( -- uuid v4
        lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2)))
        || '-4' || substr(lower(hex(randomblob(2))), 2)
        || '-' || substr('89ab', 1 + (random() & 3), 1)
        || substr(lower(hex(randomblob(2))), 2)
        || '-' || lower(hex(randomblob(6)))),
    "aggregate_type" TEXT NOT NULL,
    "aggregate_id" TEXT NOT NULL, -- ordering and partition key
    "event_type" TEXT NOT NULL,
    "payload" BLOB NOT NULL, -- bytes or text
    "topic" TEXT, -- explicit destination, wins over the template
    "headers" TEXT -- JSON object of string values
        CHECK ("headers" IS NULL OR json_type("headers") = 'object'),
    "created_at" INTEGER NOT NULL DEFAULT ( -- unix microseconds
        CAST(round((julianday('now') - 2440587.5) * 86400000.0)
        AS INTEGER) * 1000),
    -- owned by the relay
    "attempts" INTEGER NOT NULL DEFAULT 0, -- failed attempts
    "next_attempt_at" INTEGER NOT NULL DEFAULT 0, -- unix us
    "locked_by" TEXT, -- lease owner (earlier relays; now: claims)
    "locked_until" INTEGER, -- their lease end, unix us
    "published_at" INTEGER, -- unix us
    "dead_at" INTEGER, -- unix us
    "last_error" TEXT,
    "dead_reason" TEXT,
    "dead_destination" TEXT
);

CREATE INDEX IF NOT EXISTS "outbox_pending" ON "outbox" ("id")
    WHERE "published_at" IS NULL AND "dead_at" IS NULL;

CREATE INDEX IF NOT EXISTS "outbox_key" ON "outbox" ("aggregate_id", "id")
    WHERE "published_at" IS NULL AND "dead_at" IS NULL
    AND ("locked_until" IS NOT NULL OR "next_attempt_at" > 0);

CREATE INDEX IF NOT EXISTS "outbox_dead" ON "outbox" ("id")
    WHERE "dead_at" IS NOT NULL;

CREATE INDEX IF NOT EXISTS "outbox_published" ON "outbox" ("published_at")
    WHERE "published_at" IS NOT NULL;

CREATE TABLE IF NOT EXISTS "outbox_claims" (
    "claim_id" INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused
    "owner" TEXT NOT NULL, -- the relay (store.owner)
    "expires_at" INTEGER NOT NULL, -- lease end, unix us
    "ids" TEXT NOT NULL, -- JSON array: the events claimed
    "keys" TEXT NOT NULL -- JSON array: their aggregate_ids
);

CREATE TRIGGER IF NOT EXISTS "outbox_no_row_leases"
    BEFORE UPDATE OF "locked_until" ON "outbox"
    WHEN NEW."locked_until" IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'outbox-relay: leases live in the claims table now: upgrade this relay (docs/sqlite-schema.md, Upgrading)');
END;
