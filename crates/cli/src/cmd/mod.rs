//! One module per subcommand. Each exposes `Args` and `run(args, &Global)`.

pub mod hash;
