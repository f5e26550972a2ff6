//! The embedded SQLite store: one file, `takedown.db`, in the data directory.

mod banks;
mod events;
mod schema;
mod segment;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::Error;

pub use events::{AGENT_K, AGENT_NAT, PORT_NAT, PORT_WINDOW_SECS};

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "takedown.db";

/// How long a statement waits for another connection's lock before failing with [`Error::Busy`].
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle reader connections kept for reuse; more are opened on demand and closed after use.
const MAX_IDLE_READERS: usize = 4;

/// A [`Store`](crate::Store) in one SQLite file.
///
/// # Concurrency
///
/// The store is `Send + Sync`. Writes go through one connection behind a
/// mutex, so they are serialised in the process (SQLite allows one writer at a
/// time anyway); reads take a connection from a small pool and run in
/// parallel with each other and with the writer, thanks to WAL mode. Another
/// process may open the same file; its writes wait up to a busy timeout.
/// Record queries first merge pending record deltas (see
/// [`SqliteStore::compact`]), which briefly takes the writer.
///
/// # Durability
///
/// The journal is in WAL mode with `synchronous=FULL`: every committed
/// transaction (one event batch, one bank import) is fsynced before the call
/// returns, so an acknowledged batch survives a process kill and a power loss.
/// `NORMAL` would survive a process kill but could lose the last batches on
/// power loss; with group commit the fsync is paid once per batch, so `FULL`
/// costs little.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Record deltas appended by this process since its last compaction.
    pending: AtomicU64,
    /// Pending deltas at which an append compacts.
    compact_at: AtomicU64,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, in the file [`DB_FILE`],
    /// and brings its schema up to date.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
        Self::open_file(&dir.join(DB_FILE))
    }

    /// Opens (creating if needed) the store in the database file `path`.
    pub fn open_file(path: &Path) -> Result<Self, Error> {
        let mut writer = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(Error::sqlite("opening the database"))?;
        configure(&writer, true)?;
        events::register_functions(&writer)?;
        schema::migrate(&mut writer)?;
        // Deltas left by an earlier process count towards the next
        // compaction, so restarts cannot pile them up without bound.
        let pending: i64 = writer
            .query_row("SELECT COALESCE(SUM(n), 0) FROM record_deltas", [], |r| {
                r.get(0)
            })
            .map_err(Error::sqlite("counting pending record deltas"))?;
        tracing::debug!(path = %path.display(), "Store opened.");
        Ok(SqliteStore {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            pending: AtomicU64::new(u64::try_from(pending).unwrap_or(0)),
            compact_at: AtomicU64::new(events::COMPACT_AT),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the writer connection, holding it exclusively.
    fn write<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T, Error>) -> Result<T, Error> {
        let mut conn = lock(&self.writer);
        f(&mut conn)
    }

    /// Runs `f` with a reader connection from the pool.
    fn read<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T, Error>) -> Result<T, Error> {
        let pooled = lock(&self.readers).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(Error::sqlite("opening a reader connection"))?;
                configure(&c, false)?;
                c
            }
        };
        let out = f(&mut conn);
        // A connection left inside a transaction by an error is rolled back
        // when its `Transaction` drops, so it is safe to reuse.
        let mut pool = lock(&self.readers);
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        out
    }
}

/// Locks a mutex, recovering from poisoning: a panic inside a transaction
/// rolls it back as the transaction drops, so the connection stays consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Applies the per-connection settings.
fn configure(conn: &Connection, writer: bool) -> Result<(), Error> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(Error::sqlite("setting the busy timeout"))?;
    conn.set_prepared_statement_cache_capacity(64);
    let pragmas = if writer {
        // WAL lets readers run beside the writer. A large autocheckpoint keeps
        // checkpoints off the hot path of every few batches.
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -65536;
         PRAGMA wal_autocheckpoint = 16384;"
    } else {
        "PRAGMA foreign_keys = ON;
         PRAGMA query_only = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -16384;"
    };
    conn.execute_batch(pragmas)
        .map_err(Error::sqlite("configuring the connection"))?;
    Ok(())
}

/// Converts a stored integer that must be non-negative.
fn to_u64(v: i64, what: &str) -> Result<u64, Error> {
    u64::try_from(v).map_err(|_| Error::Corrupt(format!("negative {what} {v}")))
}

/// Converts a count or id for binding; values above `i64::MAX` cannot occur in SQLite.
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
