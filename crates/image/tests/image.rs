//! Integration tests of takedown-image: reference hashes and hostile input.

#[path = "image/bad_input.rs"]
mod bad_input;
#[path = "image/reference.rs"]
mod reference;
