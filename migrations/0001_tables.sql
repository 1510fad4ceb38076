-- faculty's state tables (the embedded default keeps the same tables as sled trees).
-- One row per key of a named table: the catalog ("teachers"), datasets' metadata ("datasets"),
-- rankings, metric memos and cached-output index ("outputs"), students' cards ("students"), jobs and
-- their checkpoints. Values are the JSON (or binary blocks) the library writes; keys are ordered bytes.
CREATE TABLE IF NOT EXISTS kv (
    tree  TEXT  NOT NULL,
    key   BYTEA NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (tree, key)
);
