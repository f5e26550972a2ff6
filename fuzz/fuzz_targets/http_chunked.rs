//! The sinkhole's chunked-body decoder on arbitrary input, fed in pieces.
//!
//! Checks the decoder's promises: it never consumes more than it is given,
//! never passes on more decoded bytes than it consumed, and gives the same
//! verdict whether the body arrives at once or split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use takedown_sinkhole::http::{ChunkedDecoder, ChunkedStatus};

fn run(data: &[u8], split: usize, limit: u64) -> (usize, ChunkedStatus, usize) {
    let mut decoder = ChunkedDecoder::new(limit);
    let mut consumed = 0;
    let mut decoded = 0;
    let mut status = ChunkedStatus::More;
    for piece in data.chunks(split.max(1)) {
        let (n, s) = decoder.feed(piece, |d| decoded += d.len());
        assert!(n <= piece.len());
        consumed += n;
        status = s;
        if s != ChunkedStatus::More {
            break;
        }
    }
    assert!(decoded <= consumed);
    (consumed, status, decoded)
}

fuzz_target!(|input: &[u8]| {
    let Some((&split, data)) = input.split_first() else {
        return;
    };
    let limit = 4096;
    let whole = run(data, data.len(), limit);
    let pieces = run(data, usize::from(split % 16) + 1, limit);
    assert_eq!(whole, pieces);
});
