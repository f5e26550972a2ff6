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

use takedown_store::{SqliteStore, Store};

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
            );
        }
    };
    (@tests $backend:ty; $($group:ident :: $test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                $group::$test::<$backend>();
            }
        )*
    };
}

conformance!(sqlite, crate::Sqlite);
