//! Integration tests: list formats, the matcher, and index synchronisation.
#![allow(clippy::unwrap_used)]

#[path = "it/formats.rs"]
mod formats;
#[path = "it/matching.rs"]
mod matching;
