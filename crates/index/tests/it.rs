//! Integration tests: every index against a brute-force oracle, upstream
//! regression inputs, and the file format.
#![allow(clippy::unwrap_used)]

#[path = "it/common.rs"]
mod common;
#[path = "it/file.rs"]
mod file;
#[path = "it/oracle.rs"]
mod oracle;
#[path = "it/regression.rs"]
mod regression;
