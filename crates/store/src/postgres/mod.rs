//! The PostgreSQL store: plain tables in one schema of a server shared by
//! every takedown process that points at it.

mod banks;
mod events;
mod schema;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use postgres::{Client, Config, IsolationLevel, NoTls, Row, Transaction};

use crate::Error;
use crate::error::postgres_detail;

/// Idle connections kept for reuse; more are opened on demand and closed after use.
const MAX_IDLE: usize = 8;

/// How long opening a connection may take when the connection string does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A [`Store`](crate::Store) in a PostgreSQL database.
///
/// # Connecting
///
/// [`PgStore::connect`] takes a libpq-style connection string, either as a
/// URL (`postgres://takedown@db.example:5432/takedown`) or as key-value pairs
/// (`host=/run/postgresql user=takedown dbname=takedown`; a host starting
/// with `/` is a Unix socket directory). The tables live in the first schema
/// of the session's `search_path`, usually `public`; to keep several stores in
/// one database, give each its own schema with
/// `options='-c search_path=NAME'`. The schema is created or brought up to
/// date on connect. Connections are unencrypted: reach a remote server over a
/// Unix socket, a private network or a tunnel.
///
/// # Concurrency
///
/// The store is `Send + Sync` and keeps a small pool of connections, so reads
/// run in parallel. Several processes may share one database: writers that
/// must be ordered (event appends, which stamp records with a store-wide
/// clock; bank changes, which take versions from a store-wide counter)
/// serialise on a row lock of the counter they advance, held until commit, so
/// counters are committed in the order they were handed out and delta pulls
/// and index catch-ups never miss a change.
///
/// # Durability
///
/// Every event batch and every bank change is one transaction. Sessions run
/// with `synchronous_commit` on (the store raises it if the server's default
/// is `off`), so a call that returned `Ok` has been flushed to the server's
/// write-ahead log and survives a crash of either side.
pub struct PgStore {
    config: Config,
    target: String,
    idle: Mutex<Vec<Client>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database named by `url` and brings its schema up to date.
    pub fn connect(url: &str) -> Result<Self, Error> {
        let mut config: Config = url.parse().map_err(|e| Error::PostgresUrl {
            detail: postgres_detail(&e),
        })?;
        if config.get_application_name().is_none() {
            config.application_name("takedown");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let store = PgStore {
            target: describe(&config),
            config,
            idle: Mutex::new(Vec::new()),
        };
        store.with(schema::migrate)?;
        tracing::debug!(target = %store.target, "Store connected.");
        Ok(store)
    }

    /// The server, user and database this store uses, without any password.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Opens a new session, configured for the store.
    fn open(&self) -> Result<Client, Error> {
        let mut client = self
            .config
            .connect(NoTls)
            .map_err(|cause| Error::PostgresConnect {
                target: self.target.clone(),
                detail: postgres_detail(&cause),
                cause,
            })?;
        // An acknowledged batch must survive a crash. `off` is the one
        // setting that breaks that; stronger settings (`remote_apply`, for
        // a synchronous replica) are the operator's and are kept.
        let row = client
            .query_one("SHOW synchronous_commit", &[])
            .map_err(Error::postgres("reading synchronous_commit"))?;
        let sync: String = row.get(0);
        if sync == "off" {
            client
                .batch_execute("SET synchronous_commit = on")
                .map_err(Error::postgres("enabling synchronous_commit"))?;
        }
        client
            .batch_execute(events::CREATE_STAGE)
            .map_err(Error::postgres("creating the staging table"))?;
        Ok(client)
    }

    /// Runs `f` with a pooled session.
    fn with<T>(&self, f: impl FnOnce(&mut Client) -> Result<T, Error>) -> Result<T, Error> {
        let pooled = lock(&self.idle).pop();
        let mut client = match pooled {
            Some(c) if !c.is_closed() => c,
            _ => self.open()?,
        };
        let out = f(&mut client);
        // A transaction left open by an error was rolled back when it
        // dropped, so the session is clean; a broken one is not kept.
        if !client.is_closed() {
            let mut idle = lock(&self.idle);
            if idle.len() < MAX_IDLE {
                idle.push(client);
            }
        }
        out
    }
}

/// `user@host:port/dbname` for messages; the password is never shown.
fn describe(config: &Config) -> String {
    use postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    let host = if hosts.is_empty() {
        "localhost".to_owned()
    } else {
        hosts.join(",")
    };
    let port = if ports.is_empty() {
        "5432".to_owned()
    } else {
        ports.join(",")
    };
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("(default user)"),
        config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("(default database)")
    )
}

/// Locks a mutex, recovering from poisoning: the pool holds only idle sessions.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads column `i`, failing instead of panicking on an unexpected type.
fn col<'a, T: postgres::types::FromSql<'a>>(r: &'a Row, i: usize) -> Result<T, Error> {
    r.try_get(i).map_err(Error::postgres("reading a row"))
}

/// Starts a read-only transaction that sees one snapshot throughout.
fn snapshot(client: &mut Client) -> Result<Transaction<'_>, Error> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(Error::postgres("starting a read"))
}

/// Converts a stored integer that must be non-negative.
fn to_u64(v: i64, what: &str) -> Result<u64, Error> {
    u64::try_from(v).map_err(|_| Error::Corrupt(format!("negative {what} {v}")))
}

/// Converts a count or id for binding; values above `i64::MAX` cannot be stored.
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_never_show_passwords() {
        let c: Config = "postgres://ingest:s3cret@db.example:6543/takedown"
            .parse()
            .unwrap();
        assert_eq!(describe(&c), "ingest@db.example:6543/takedown");
        let c: Config = "host=/run/postgresql user=td password=s3cret"
            .parse()
            .unwrap();
        assert_eq!(describe(&c), "td@/run/postgresql:5432/td");
    }

    #[test]
    fn connection_errors_say_what_to_do() {
        let err = PgStore::connect("host=h port=notaport").unwrap_err();
        assert!(matches!(err, Error::PostgresUrl { .. }), "{err}");
        assert!(err.to_string().contains("postgres://USER@HOST"), "{err}");
        assert!(err.to_string().contains("port"), "{err}");
        // A socket directory that does not exist fails at once, without a server.
        let err = PgStore::connect("host=/nonexistent/takedown user=td password=s3cret dbname=x")
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::PostgresConnect { .. }), "{msg}");
        assert!(msg.contains("td@/nonexistent/takedown:5432/x"), "{msg}");
        assert!(msg.contains("is the server running"), "{msg}");
        // The cause is spelled out, not just "error connecting to server".
        assert!(msg.contains("No such file or directory"), "{msg}");
        assert!(!msg.contains("s3cret"), "{msg}");
    }
}
