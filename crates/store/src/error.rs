//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A bank name was empty, too long, or used characters outside `[A-Za-z0-9._-]`.
    #[error(
        "invalid bank name {0:?}: use 1-64 characters from A-Z, a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
    )]
    BankName(String),
    /// A match radius was outside 0..=256.
    #[error("invalid match radius {0}: expected 0 to 256 bits")]
    Radius(i64),
    /// An entry label was empty, too long or held control characters.
    #[error(
        "invalid label {0:?}: labels are 1-256 bytes of text without control characters, at most 64 per entry"
    )]
    Label(String),
    /// An entry's source text was longer than the store keeps.
    #[error("entry source is {0} bytes long: shorten it to at most 1024 bytes")]
    SourceTooLong(usize),
    /// A bank description was longer than the store keeps.
    #[error("bank description is {0} bytes long: shorten it to at most 4096 bytes")]
    DescriptionTooLong(usize),
    /// A bank with this name already exists.
    #[error("bank {0:?} already exists: pick another name or delete the old bank first")]
    BankExists(String),
    /// No bank has this name.
    #[error("no bank named {0:?}: list the banks to see which exist")]
    NoSuchBank(String),
    /// The caller's entry source failed during an import; nothing was written.
    #[error("import aborted, the bank is unchanged: {0}")]
    Import(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A network set held more prefixes than one query may test.
    #[error(
        "{0} distinct prefixes in one network set: merge them into fewer, shorter prefixes (at most 8192)"
    )]
    TooManyCidrs(usize),
    /// A pagination cursor was not one this store handed out.
    #[error("invalid cursor {0:?}: pass back a cursor exactly as a previous page returned it")]
    Cursor(String),
    /// A host record id was not of the form the store hands out.
    #[error("invalid record id {0:?}: expected DAY_FAMILY_IP as the store returns it")]
    RecordId(String),
    /// Another process or connection held the database longer than the busy timeout.
    #[error("the database is busy ({context}): another process may be writing; retry or stop it")]
    Busy {
        /// What the store was doing.
        context: &'static str,
    },
    /// An SQLite call failed.
    #[error("{context}: {source}")]
    Sqlite {
        /// What the store was doing.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// A PostgreSQL connection string could not be parsed.
    #[error(
        "invalid PostgreSQL connection string ({detail}): write it as postgres://USER@HOST:PORT/DATABASE or as 'host=HOST port=PORT user=USER dbname=DATABASE'"
    )]
    PostgresUrl {
        /// What is wrong with it.
        detail: String,
    },
    /// The PostgreSQL server could not be reached, or refused the login.
    #[error(
        "cannot connect to PostgreSQL at {target} ({detail}): is the server running, and do the host, port, user and database in the connection string exist?"
    )]
    PostgresConnect {
        /// The server, user and database, without any password.
        target: String,
        /// Why the connection failed.
        detail: String,
        /// The underlying error.
        cause: postgres::Error,
    },
    /// The PostgreSQL session's `search_path` names no schema that exists.
    #[error(
        "no PostgreSQL schema to keep the store in: create the schema named by the search_path, or fix options='-c search_path=NAME' in the connection string"
    )]
    PostgresNoSchema,
    /// A PostgreSQL statement failed.
    #[error("{context}: {detail}")]
    Postgres {
        /// What the store was doing.
        context: &'static str,
        /// The server's message, or what failed on the way to the server.
        detail: String,
        /// The underlying error, with its SQLSTATE code if the server sent one.
        cause: postgres::Error,
    },
    /// The data directory or database file could not be created or opened.
    #[error("cannot use data directory {path}: {source}; check that it exists and is writable")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The database was written by a newer version of takedown.
    #[error(
        "database schema version {found} is newer than this build supports ({supported}): upgrade takedown"
    )]
    SchemaTooNew {
        /// The version found in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A stored row did not decode into the types it was written from.
    #[error("corrupt row in the store ({0}): restore from a backup or re-import the data")]
    Corrupt(String),
}

impl Error {
    /// Wraps an SQLite error with what the store was doing, singling out busy databases.
    pub(crate) fn sqlite(context: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
        move |source| match source.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                Error::Busy { context }
            }
            _ => Error::Sqlite { context, source },
        }
    }

    /// Wraps a PostgreSQL error with what the store was doing, singling out
    /// lock timeouts, deadlocks and serialisation failures, which a retry may cure.
    pub(crate) fn postgres(context: &'static str) -> impl FnOnce(postgres::Error) -> Error {
        use postgres::error::SqlState;
        move |source| match source.code() {
            Some(c)
                if *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED
                    || *c == SqlState::LOCK_NOT_AVAILABLE =>
            {
                Error::Busy { context }
            }
            _ => Error::Postgres {
                context,
                detail: postgres_detail(&source),
                cause: source,
            },
        }
    }
}

/// A PostgreSQL error as one line. The client library's own message names
/// only the kind of failure ("db error"), so the server's message, or the
/// chain of causes, is spelled out.
pub(crate) fn postgres_detail(e: &postgres::Error) -> String {
    use std::fmt::Write as _;
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(d) = db.detail() {
            let _ = write!(s, " ({d})");
        }
        if let Some(h) = db.hint() {
            let _ = write!(s, "; hint: {h}");
        }
        return s;
    }
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let _ = write!(s, ": {c}");
        cause = c.source();
    }
    s
}
