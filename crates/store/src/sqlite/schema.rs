//! The SQLite schema and its migrations, versioned with `PRAGMA user_version`.

use rusqlite::Connection;

use crate::Error;

/// Migration `i` brings the schema from version `i` to `i + 1`.
///
/// Never edit a released migration; append a new one.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
-- version_seq: the store-wide bank version counter.
-- clock: the last `modified` stamp handed to host records, so it never runs backwards.
-- event_seq: the id of the last logged event.
INSERT INTO meta (key, value) VALUES ('version_seq', 0), ('clock', 0), ('event_seq', 0);

CREATE TABLE banks (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE,
    enabled       INTEGER NOT NULL,
    radius        INTEGER NOT NULL,
    created       INTEGER NOT NULL,
    description   TEXT NOT NULL,
    entry_count   INTEGER NOT NULL,
    version       INTEGER NOT NULL,
    -- Changes are known only after this version; older indexes must rebuild.
    history_floor INTEGER NOT NULL
);

CREATE TABLE bank_entries (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    bank_id INTEGER NOT NULL REFERENCES banks (id) ON DELETE CASCADE,
    hash    BLOB NOT NULL,
    quality INTEGER NOT NULL,
    source  TEXT NOT NULL,
    labels  TEXT NOT NULL,
    added   INTEGER NOT NULL,
    version INTEGER NOT NULL
);
CREATE UNIQUE INDEX bank_entries_hash ON bank_entries (bank_id, hash);
CREATE INDEX bank_entries_order ON bank_entries (bank_id, id);
CREATE INDEX bank_entries_version ON bank_entries (bank_id, version);

CREATE TABLE bank_tombstones (
    bank_id  INTEGER NOT NULL REFERENCES banks (id) ON DELETE CASCADE,
    version  INTEGER NOT NULL,
    entry_id INTEGER NOT NULL,
    PRIMARY KEY (bank_id, version, entry_id)
) WITHOUT ROWID;

-- The event log: each batch's events as one or more encoded segments (see
-- `segment.rs`), one row per segment instead of one per event. Event ids are
-- `first_id` plus the position in the segment; `min_ts` and `max_ts` let
-- time-bounded scans skip segments without decoding them.
CREATE TABLE event_segments (
    first_id INTEGER PRIMARY KEY,
    n        INTEGER NOT NULL,
    min_ts   INTEGER NOT NULL,
    max_ts   INTEGER NOT NULL,
    data     BLOB NOT NULL
);

CREATE TABLE host_records (
    day          INTEGER NOT NULL,
    ip           BLOB NOT NULL,
    -- The empty string stands for an unattributed family.
    family       TEXT NOT NULL,
    first_seen   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    sample_rank  INTEGER NOT NULL,
    prefix       TEXT,
    asn          INTEGER,
    as_name      TEXT,
    country      TEXT,
    sample_url   TEXT,
    sample_host  TEXT,
    sample_agent TEXT,
    dst_port     INTEGER NOT NULL,
    agents       BLOB NOT NULL,
    port_window  INTEGER NOT NULL,
    ports        BLOB NOT NULL,
    nat          INTEGER NOT NULL,
    modified     INTEGER NOT NULL,
    PRIMARY KEY (day, ip, family)
) WITHOUT ROWID;
-- Delta pulls walk this index. Queries by AS, country or prefix narrow by
-- day (the primary key) or by `modified` and filter the rest: every extra
-- index would be paid on each of the hundreds of thousands of upserts per
-- second, while partner queries run a few times per hour.
CREATE INDEX host_records_modified ON host_records (modified);

-- Each batch appends its folded records here as one encoded blob of `n`
-- deltas (see `Delta` in `events.rs`), and a compaction merges them into
-- host_records in key order. Appending is one sequential row per batch;
-- merging many batches at once writes each record page once instead of once
-- per batch, and a record seen in many batches is updated once.
CREATE TABLE record_deltas (
    id       INTEGER PRIMARY KEY,
    n        INTEGER NOT NULL,
    modified INTEGER NOT NULL,
    data     BLOB NOT NULL
);

CREATE TABLE event_counts (
    day    INTEGER NOT NULL,
    kind   INTEGER NOT NULL,
    family TEXT NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (day, kind, family)
) WITHOUT ROWID;
"#];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`SCHEMA_VERSION`], one transaction per migration.
///
/// The version is read inside each write transaction, so two processes
/// opening the same new file at once apply each migration exactly once.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), Error> {
    loop {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(Error::sqlite("starting a schema migration"))?;
        let found: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(Error::sqlite("reading the schema version"))?;
        if found > SCHEMA_VERSION {
            return Err(Error::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let Some(sql) = usize::try_from(found).ok().and_then(|i| MIGRATIONS.get(i)) else {
            return Ok(());
        };
        tx.execute_batch(sql)
            .map_err(Error::sqlite("applying a schema migration"))?;
        tx.pragma_update(None, "user_version", found + 1)
            .map_err(Error::sqlite("recording the schema version"))?;
        tx.commit()
            .map_err(Error::sqlite("committing a schema migration"))?;
        tracing::info!(version = found + 1, "Schema migrated.");
    }
}
