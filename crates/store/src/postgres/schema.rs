//! The PostgreSQL schema and its migrations, versioned in `takedown_schema`.

use postgres::Client;

use crate::Error;

/// Migration `i` brings the schema from version `i` to `i + 1`.
///
/// Never edit a released migration; append a new one. Text columns that are
/// sorted or compared with a cursor use the "C" collation, so their order is
/// byte order whatever the database's locale, as in the SQLite store.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE meta (
    key   text COLLATE "C" PRIMARY KEY,
    value bigint NOT NULL
);
-- version_seq: the store-wide bank version counter.
-- clock: the last `modified` stamp handed to host records, so it never runs backwards.
-- event_seq: the id of the last logged event.
-- Writers advance these under a row lock held until commit, which orders their commits.
INSERT INTO meta (key, value) VALUES ('version_seq', 0), ('clock', 0), ('event_seq', 0);

CREATE TABLE banks (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text COLLATE "C" NOT NULL UNIQUE,
    enabled       boolean NOT NULL,
    radius        integer NOT NULL,
    created       bigint NOT NULL,
    description   text NOT NULL,
    entry_count   bigint NOT NULL,
    version       bigint NOT NULL,
    -- Changes are known only after this version; older indexes must rebuild.
    history_floor bigint NOT NULL
);

-- Entry ids come from an identity sequence, which never hands a value out twice.
CREATE TABLE bank_entries (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bank_id bigint NOT NULL REFERENCES banks (id) ON DELETE CASCADE,
    hash    bytea NOT NULL,
    quality smallint NOT NULL,
    source  text NOT NULL,
    -- Sorted and free of duplicates.
    labels  text[] NOT NULL,
    added   bigint NOT NULL,
    version bigint NOT NULL,
    UNIQUE (bank_id, hash)
);
CREATE INDEX bank_entries_order ON bank_entries (bank_id, id);
CREATE INDEX bank_entries_version ON bank_entries (bank_id, version);

CREATE TABLE bank_tombstones (
    bank_id  bigint NOT NULL REFERENCES banks (id) ON DELETE CASCADE,
    version  bigint NOT NULL,
    entry_id bigint NOT NULL,
    PRIMARY KEY (bank_id, version, entry_id)
);

-- The event log, one row per event. Addresses are stored as 4 or 16 bytes,
-- times as microseconds since the Unix epoch (UTC).
CREATE TABLE events (
    id           bigint PRIMARY KEY,
    ts           bigint NOT NULL,
    -- 0 HTTP, 1 TCP, 2 DNS.
    kind         smallint NOT NULL,
    src_ip       bytea NOT NULL,
    src_port     integer NOT NULL,
    dst_ip       bytea NOT NULL,
    dst_port     integer NOT NULL,
    protocol     text NOT NULL,
    http_method  text,
    http_url     text,
    http_host    text,
    http_agent   text,
    http_referer text,
    tls_sni      text,
    dns_qname    text,
    dns_qtype    text,
    payload      text,
    family       text,
    tag          text,
    sensor       text NOT NULL,
    malformed    boolean NOT NULL,
    -- Whether enrichment ran; the columns after it are its result.
    has_network  boolean NOT NULL,
    prefix       text,
    asn          bigint,
    as_name      text,
    country      text
);
CREATE INDEX events_ts ON events (ts);

CREATE TABLE host_records (
    day          bigint NOT NULL,
    ip           bytea NOT NULL,
    -- The empty string stands for an unattributed family.
    family       text COLLATE "C" NOT NULL,
    first_seen   bigint NOT NULL,
    last_seen    bigint NOT NULL,
    count        bigint NOT NULL,
    -- Breaks ties between samples of equal timestamps, whatever the arrival order.
    sample_rank  bigint NOT NULL,
    prefix       text,
    asn          bigint,
    as_name      text,
    country      text COLLATE "C",
    sample_url   text,
    sample_host  text,
    sample_agent text,
    dst_port     integer NOT NULL,
    -- The smallest distinct 32-bit User-Agent hashes seen, ascending (bottom-k).
    agents       bigint[] NOT NULL,
    -- The latest port window seen, and the distinct source ports in it, ascending.
    port_window  bigint NOT NULL,
    ports        integer[] NOT NULL,
    nat          boolean NOT NULL,
    modified     bigint NOT NULL,
    PRIMARY KEY (day, ip, family)
);
-- Pages and delta pulls walk this index in the page order.
CREATE INDEX host_records_modified ON host_records (modified, day, ip, family);
-- Partner scopes select by AS, country and address range.
CREATE INDEX host_records_asn ON host_records (asn);
CREATE INDEX host_records_country ON host_records (country);
CREATE INDEX host_records_ip ON host_records (ip);

CREATE TABLE event_counts (
    day    bigint NOT NULL,
    kind   smallint NOT NULL,
    family text COLLATE "C" NOT NULL,
    count  bigint NOT NULL,
    PRIMARY KEY (day, kind, family)
);
"#];

/// The schema version this build writes.
pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the schema up to [`SCHEMA_VERSION`], all pending migrations in one transaction.
///
/// An advisory lock keyed on the schema name makes processes that connect
/// to a new schema at once apply each migration exactly once.
pub(super) fn migrate(client: &mut Client) -> Result<(), Error> {
    let mut tx = client
        .transaction()
        .map_err(Error::postgres("starting a schema migration"))?;
    let schema: Option<String> = tx
        .query_one("SELECT current_schema()", &[])
        .map_err(Error::postgres("reading the current schema"))?
        .get(0);
    let Some(schema) = schema else {
        return Err(Error::PostgresNoSchema);
    };
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('takedown schema ' || $1))",
        &[&schema],
    )
    .map_err(Error::postgres("locking the schema for migration"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS takedown_schema (
            version bigint NOT NULL
        )",
    )
    .map_err(Error::postgres("creating the schema version table"))?;
    let found: Option<i64> = tx
        .query_opt("SELECT max(version) FROM takedown_schema", &[])
        .map_err(Error::postgres("reading the schema version"))?
        .and_then(|r| r.get(0));
    let found = found.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let start = usize::try_from(found).unwrap_or(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(start) {
        tx.batch_execute(sql)
            .map_err(Error::postgres("applying a schema migration"))?;
        tracing::info!(%schema, version = i + 1, "Schema migrated.");
    }
    if found < SCHEMA_VERSION {
        tx.execute("DELETE FROM takedown_schema", &[])
            .and_then(|_| {
                tx.execute(
                    "INSERT INTO takedown_schema (version) VALUES ($1)",
                    &[&SCHEMA_VERSION],
                )
            })
            .map_err(Error::postgres("recording the schema version"))?;
    }
    tx.commit()
        .map_err(Error::postgres("committing a schema migration"))
}
