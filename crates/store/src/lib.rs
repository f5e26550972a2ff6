//! Storage for takedown: hash banks, sinkhole events and infected-host records.
//!
//! [`BankStore`] keeps hash banks ([`Bank`], [`BankEntry`]) with a change
//! counter ([`BankVersion`]) so on-disk indexes can catch up incrementally.
//! [`EventStore`] keeps the event log and folds it, batch by batch, into
//! per-(address, family, day) host records, with partner-scoped queries
//! ([`RecordFilter`], [`NetworkSet`]) and rollups. [`SqliteStore`] implements
//! both over one embedded SQLite file; [`PgStore`] implements them over a
//! PostgreSQL database that several takedown processes can share. One
//! conformance suite (`tests/it.rs`) checks every implementation.
//!
//! ```
//! use takedown_pdq::{PdqHash, Quality};
//! use takedown_event::{Event, EventKind};
//! use takedown_store::{BankName, BankStore, EventStore, NewEntry, RecordFilter, SqliteStore};
//!
//! let dir = tempfile::tempdir()?;
//! let store = SqliteStore::open(dir.path())?;
//! let name: BankName = "known-bad".parse()?;
//! store.create_bank(&name, "an example list")?;
//! let hash: PdqHash = "f".repeat(64).parse()?;
//! let report = store.add_entries(&name, &[NewEntry::new(hash, Quality::new(100)?)])?;
//! assert_eq!(report.added, 1);
//! assert_eq!(store.bank(&name)?.map(|b| b.entries), Some(1));
//!
//! let checkin = Event::new(
//!     "2026-11-29T10:00:00Z".parse()?,
//!     EventKind::Http,
//!     "192.0.2.7:51000".parse()?,
//!     "198.51.100.1:80".parse()?,
//!     "sh1".parse()?,
//! );
//! store.append_events(&[checkin.clone(), checkin])?;
//! let page = store.host_records(&RecordFilter::default(), None, 100)?;
//! assert_eq!(page.records.len(), 1);
//! assert_eq!(page.records[0].count, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod bank;
mod column;
mod error;
mod fold;
mod postgres;
mod record;
mod sqlite;

pub use self::postgres::PgStore;
pub use bank::{
    AddReport, Bank, BankChanges, BankEntry, BankName, BankStore, BankVersion, EntryId,
    MAX_DESCRIPTION_LEN, MAX_LABEL_LEN, MAX_LABELS, MAX_SOURCE_LEN, MatchRadius, NewEntry,
    RemoveReport,
};
pub use error::Error;
pub use record::{
    AppendReport, Cursor, EventCount, EventId, EventQuery, EventStore, FootprintRow, MAX_CIDRS,
    MAX_PAGE, NetworkSet, RecordFilter, RecordPage, Window, record_id,
};
pub use sqlite::{AGENT_K, AGENT_NAT, DB_FILE, PORT_NAT, PORT_WINDOW_SECS, SqliteStore};

/// Everything a takedown store keeps; implemented by every store that implements the parts.
pub trait Store: BankStore + EventStore {}

impl<T: BankStore + EventStore> Store for T {}
