//! One module per subcommand. Each exposes `Args` and `run(args, &Global)`.

pub(crate) mod bank;
pub(crate) mod demo;
pub(crate) mod export;
pub(crate) mod hash;
pub(crate) mod import;
pub(crate) mod ingest;
pub(crate) mod match_;
pub(crate) mod sinkhole;
