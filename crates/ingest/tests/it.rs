//! Integration tests of takedown-ingest: importers against golden files,
//! property tests of the parsers, and the pipeline over a real store.
//!
//! Set `TAKEDOWN_BLESS=1` to rewrite golden files after an intended change.
#![allow(clippy::unwrap_used)]

#[path = "it/import.rs"]
mod import;
#[path = "it/live.rs"]
mod live;
#[path = "it/props.rs"]
mod props;
