-- Work that processes claim: distillation jobs ("job_leases") and ranking shards ("rank_shard_leases").
-- A row is an item of a queue; owner and until are its lease, compared with the database's clock (so the
-- machines' clocks need not agree). A process takes the oldest item no live lease holds with
-- FOR UPDATE SKIP LOCKED (processes claiming at once skip each other's rows instead of waiting), renews
-- the lease while it works, and deletes the row when the item is done. Queue length, for an autoscaler:
-- SELECT count(*) FROM queue WHERE owner IS NULL OR until < now().
CREATE TABLE IF NOT EXISTS queue (
    queue   TEXT        NOT NULL,
    id      TEXT        NOT NULL,
    owner   TEXT,
    until   TIMESTAMPTZ,
    created TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (queue, id)
);
CREATE INDEX IF NOT EXISTS queue_by_age ON queue (queue, created, id);
