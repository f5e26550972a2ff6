//! Integration tests: golden outputs of the reference core, and the fast path
//! against a plain transcription of the reference.

#![allow(clippy::unwrap_used, unreachable_pub, missing_docs)]

mod it {
    pub mod fixtures;
    pub mod golden;
    pub mod reference;
    pub mod vs_reference;
}
