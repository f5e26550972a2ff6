//! Hostile and broken input: errors, never panics or huge allocations.

use std::path::PathBuf;

use proptest::prelude::*;
use takedown_image::{Error, Limits, Options, decode, hash_bytes};

fn shared(path: &str) -> Vec<u8> {
    let p = PathBuf::from("../../../shared/testdata/pdq").join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const SAMPLES: &[&str] = &[
    "data/bridge-mods/aaa-orig.jpg",
    "data/misc-images/small.jpg",
    "data/misc-images/modes/CMYK.jpg",
    "data/misc-images/modes/L.png",
    "data/misc-images/modes/P.png",
    "data/misc-images/modes/F.webp",
    "pytx-resources/I16.png",
];

#[test]
fn truncated_files_fail_cleanly() {
    for name in SAMPLES {
        let bytes = shared(name);
        for frac in [0.0, 0.001, 0.01, 0.1, 0.5, 0.9, 0.99] {
            let cut = ((bytes.len() as f64) * frac) as usize;
            let r = decode(&bytes[..cut], &Limits::default());
            assert!(r.is_err(), "{name} cut at {cut} of {} decoded", bytes.len());
        }
    }
}

#[test]
fn truncation_is_reported_as_such() {
    let bytes = shared("data/bridge-mods/aaa-orig.jpg");
    let err = decode(&bytes[..bytes.len() / 2], &Limits::default()).expect_err("truncated");
    assert!(matches!(err, Error::Truncated { .. }), "{err}");
    assert!(err.to_string().contains("truncated"));
    let bytes = shared("data/misc-images/modes/L.png");
    let err = decode(&bytes[..bytes.len() / 2], &Limits::default()).expect_err("truncated");
    assert!(
        matches!(err, Error::Truncated { .. } | Error::Corrupt { .. }),
        "{err}"
    );
}

#[test]
fn unknown_format_is_named() {
    let err = decode(b"this is a text file, not an image", &Limits::default()).expect_err("text");
    assert!(matches!(err, Error::UnknownFormat));
    assert!(decode(b"", &Limits::default()).is_err());
}

#[test]
fn corrupt_bytes_in_the_middle_do_not_panic() {
    for name in SAMPLES {
        let mut bytes = shared(name);
        let mut x: u32 = 12345;
        for _ in 0..200 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let i = 2 + (x as usize >> 3) % (bytes.len() - 2);
            bytes[i] ^= (x >> 24) as u8 | 1;
        }
        let _ = hash_bytes(&bytes, &Options::default());
    }
}

fn assert_too_large(bytes: &[u8], what: &str) {
    let err = decode(bytes, &Limits::default()).expect_err(what);
    assert!(matches!(err, Error::TooLarge { .. }), "{what}: {err}");
    assert!(err.to_string().contains("--max-pixels"), "{what}: {err}");
}

fn png_crc(kind: &[u8], data: &[u8]) -> u32 {
    // Bitwise CRC-32 (the PNG polynomial), enough for a test header.
    let mut crc = !0u32;
    for &b in kind.iter().chain(data) {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn png_bomb_header_is_refused_before_allocation() {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(b"IHDR");
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&png_crc(b"IHDR", &ihdr).to_be_bytes());
    assert_too_large(&png, "PNG 100000x100000");
}

#[test]
fn jpeg_bomb_header_is_refused_before_allocation() {
    // SOI, DQT, SOF0 60000x60000 (libjpeg's own ceiling is 65500) with 3 components,
    // no Huffman tables: the size check must come first.
    let mut jpeg = vec![0xFF, 0xD8];
    jpeg.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x43, 0x00]);
    jpeg.extend(std::iter::repeat_n(1u8, 64));
    jpeg.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08, 0xEA, 0x60, 0xEA, 0x60, 0x03]);
    jpeg.extend_from_slice(&[1, 0x22, 0, 2, 0x11, 0, 3, 0x11, 0]);
    jpeg.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x0C, 0x03, 1, 0, 2, 0, 3, 0, 0, 63, 0]);
    jpeg.extend_from_slice(&[0; 64]);
    assert_too_large(&jpeg, "JPEG 60000x60000");
}

#[test]
fn gif_bomb_header_is_refused_before_allocation() {
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0x80, 0, 0, 0, 0, 0, 255, 255, 255]);
    gif.extend_from_slice(&[
        0x2C, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x02, 0x02, 0x4C, 0x01, 0x00, 0x3B,
    ]);
    assert_too_large(&gif, "GIF 65535x65535");
}

#[test]
fn webp_bomb_header_is_refused_before_allocation() {
    // A lossless (VP8L) header claiming 16384x16384.
    let mut chunk = vec![0x2F];
    let (w, h) = (16383u32, 16383u32);
    let bits = w | (h << 14);
    chunk.extend_from_slice(&bits.to_le_bytes());
    chunk.extend_from_slice(&[0; 16]);
    let mut webp = b"RIFF".to_vec();
    webp.extend_from_slice(&((4 + 8 + chunk.len()) as u32).to_le_bytes());
    webp.extend_from_slice(b"WEBPVP8L");
    webp.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
    webp.extend_from_slice(&chunk);
    let err = decode(
        &webp,
        &Limits {
            max_pixels: 1 << 20,
        },
    )
    .expect_err("webp bomb");
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
}

#[test]
fn bmp_bomb_header_is_refused_before_allocation() {
    let mut bmp = b"BM".to_vec();
    bmp.extend_from_slice(&[0; 8]);
    bmp.extend_from_slice(&54u32.to_le_bytes());
    bmp.extend_from_slice(&40u32.to_le_bytes());
    bmp.extend_from_slice(&60_000i32.to_le_bytes());
    bmp.extend_from_slice(&60_000i32.to_le_bytes());
    bmp.extend_from_slice(&1u16.to_le_bytes());
    bmp.extend_from_slice(&24u16.to_le_bytes());
    bmp.extend_from_slice(&[0; 24]);
    assert_too_large(&bmp, "BMP 60000x60000");
}

#[test]
fn tiff_bomb_header_is_refused_before_allocation() {
    // Little-endian TIFF, one IFD: width, height 1000000, 8-bit grey, one strip.
    let mut t = b"II*\0".to_vec();
    t.extend_from_slice(&8u32.to_le_bytes());
    let entries: &[(u16, u16, u32, u32)] = &[
        (256, 4, 1, 1_000_000),
        (257, 4, 1, 1_000_000),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 200),
        (277, 3, 1, 1),
        (278, 4, 1, 1_000_000),
        (279, 4, 1, 16),
    ];
    t.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for &(tag, ty, n, v) in entries {
        t.extend_from_slice(&tag.to_le_bytes());
        t.extend_from_slice(&ty.to_le_bytes());
        t.extend_from_slice(&n.to_le_bytes());
        t.extend_from_slice(&v.to_le_bytes());
    }
    t.extend_from_slice(&0u32.to_le_bytes());
    t.resize(216, 0);
    assert_too_large(&t, "TIFF 1000000x1000000");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(
        magic in prop::sample::select(vec![
            b"\xFF\xD8\xFF".to_vec(), b"\x89PNG\r\n\x1a\n".to_vec(), b"GIF89a".to_vec(),
            b"RIFF\0\0\0\0WEBPVP8 ".to_vec(), b"BM".to_vec(), b"II*\0".to_vec(), vec![],
        ]),
        tail in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = magic;
        bytes.extend_from_slice(&tail);
        let _ = hash_bytes(&bytes, &Options { limits: Limits { max_pixels: 1 << 20 }, ..Options::default() });
    }
}
