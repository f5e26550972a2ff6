//! The store conformance suite: every test runs against every [`Store`] implementation.
//!
//! A backend describes how to make an empty store and how to reopen it; the
//! `conformance!` macro instantiates every suite test for it. Adding a backend
//! is one `conformance!` line plus its [`Backend`] impl.

#![allow(clippy::unwrap_used)]

mod it {
    pub(crate) mod banks;
    pub(crate) mod records;
}

use std::io::Write as _;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use takedown_store::{PgStore, SqliteStore, Store};

/// How the suite creates and reopens one kind of store.
pub(crate) trait Backend {
    /// The store under test.
    type S: Store;
    /// Where one test's data lives; dropping it deletes the data.
    type Place;
    /// A fresh, empty place.
    fn place() -> Self::Place;
    /// Opens (or reopens) the store at `place`.
    fn open(place: &Self::Place) -> Self::S;
    /// Whether the backend can run here. A backend that needs a server says
    /// why it is skipped, or fails if it is required.
    fn available() -> bool {
        true
    }
}

/// The embedded SQLite store, in a temporary directory.
pub(crate) struct Sqlite;

impl Backend for Sqlite {
    type S = SqliteStore;
    type Place = tempfile::TempDir;

    fn place() -> Self::Place {
        tempfile::tempdir().unwrap()
    }

    fn open(place: &Self::Place) -> SqliteStore {
        SqliteStore::open(place.path()).unwrap()
    }
}

/// The server the PostgreSQL tests use, as a libpq connection string.
const POSTGRES_ENV: &str = "TAKEDOWN_TEST_POSTGRES";
/// Set to 1 to fail, rather than skip, when no server is given.
const REQUIRE_POSTGRES_ENV: &str = "TAKEDOWN_REQUIRE_POSTGRES";

/// The PostgreSQL store, each test in a schema of its own on the server
/// named by `TAKEDOWN_TEST_POSTGRES`.
pub(crate) struct Postgres;

/// One test's schema; dropping it drops the schema and everything in it.
pub(crate) struct PgPlace {
    server: String,
    schema: String,
}

impl PgPlace {
    /// The server's connection string, with the schema as the search path.
    fn url(&self) -> String {
        let opt = format!("-c search_path={}", self.schema);
        if self.server.starts_with("postgres://") || self.server.starts_with("postgresql://") {
            let sep = if self.server.contains('?') { '&' } else { '?' };
            format!(
                "{}{sep}options={}",
                self.server,
                opt.replace(' ', "%20").replace('=', "%3D")
            )
        } else {
            format!("{} options='{opt}'", self.server)
        }
    }
}

impl Drop for PgPlace {
    fn drop(&mut self) {
        let dropped =
            ::postgres::Client::connect(&self.server, ::postgres::NoTls).and_then(|mut c| {
                c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            });
        if let Err(e) = dropped {
            let _ = writeln!(
                std::io::stderr(),
                "could not drop test schema {}: {e}",
                self.schema
            );
        }
    }
}

impl Backend for Postgres {
    type S = PgStore;
    type Place = PgPlace;

    fn place() -> PgPlace {
        static N: AtomicU64 = AtomicU64::new(0);
        let server = std::env::var(POSTGRES_ENV).unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let schema = format!(
            "takedown_test_{}_{}_{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin =
            ::postgres::Client::connect(&server, ::postgres::NoTls).unwrap_or_else(|e| {
                panic!("cannot reach the server in {POSTGRES_ENV} ({e:?}): is it running?")
            });
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .unwrap();
        PgPlace { server, schema }
    }

    fn open(place: &PgPlace) -> PgStore {
        PgStore::connect(&place.url()).unwrap()
    }

    fn available() -> bool {
        if std::env::var_os(POSTGRES_ENV).is_some_and(|v| !v.is_empty()) {
            return true;
        }
        let how = format!(
            "set {POSTGRES_ENV} to a libpq connection string of a server where the user may create schemas; \
             scripts/postgres-test-server.sh starts a throwaway one and prints the line to export"
        );
        if std::env::var(REQUIRE_POSTGRES_ENV).is_ok_and(|v| v == "1") {
            panic!("{REQUIRE_POSTGRES_ENV}=1 but no PostgreSQL server is given: {how}");
        }
        // Straight to the terminal, past the test harness's capture, once per run.
        static NOTICE: Once = Once::new();
        NOTICE.call_once(|| {
            let _ = writeln!(
                std::io::stderr(),
                "note: skipping the PostgreSQL conformance tests: {how}"
            );
        });
        false
    }
}

/// Instantiates every suite test for one backend, in a module of that name.
macro_rules! conformance {
    ($module:ident, $backend:ty) => {
        mod $module {
            use super::it::*;
            conformance!(@tests $backend;
                banks::create_list_delete,
                banks::names_and_settings,
                banks::add_fold_and_remove,
                banks::import_is_all_or_nothing,
                banks::invalid_entry_rolls_back,
                banks::versions_and_deltas,
                banks::recreated_bank_forces_rebuild,
                banks::prune_history_forces_rebuild,
                banks::scan_is_ordered_and_stoppable,
                banks::banks_are_isolated,
                banks::persist_across_reopen,
                records::fold_keeps_extremes_and_latest_sample,
                records::dns_never_makes_records,
                records::out_of_order_equals_sorted,
                records::folding_is_order_independent_property,
                records::partner_filters_isolate,
                records::other_filters_and_pagination,
                records::nat_suspicion,
                records::footprint_rollups,
                records::events_round_trip_and_persist,
                records::concurrent_writers_and_delta_pulls,
            );
        }
    };
    (@tests $backend:ty; $($group:ident :: $test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                if <$backend as crate::Backend>::available() {
                    $group::$test::<$backend>();
                }
            }
        )*
    };
}

conformance!(sqlite, crate::Sqlite);
conformance!(postgres, crate::Postgres);

#[test]
fn postgres_folds_like_sqlite() {
    if Postgres::available() {
        it::records::backends_agree::<Sqlite, Postgres>();
    }
}

#[test]
fn sqlite_compaction_threshold_only_moves_the_merge() {
    it::records::compaction_threshold_only_moves_the_merge();
}
