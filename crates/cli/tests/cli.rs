//! Integration tests of the `takedown` binary, one module per subcommand.

#[path = "cli/bank.rs"]
mod bank;
#[path = "cli/child.rs"]
mod child;
#[path = "cli/demo.rs"]
mod demo;
#[path = "cli/durability.rs"]
mod durability;
#[path = "cli/hash.rs"]
mod hash;
#[path = "cli/import_export.rs"]
mod import_export;
#[path = "cli/postgres.rs"]
mod postgres;
#[path = "cli/stream.rs"]
mod stream;
