//! Hashes of the shared PDQ test images must equal the reference pipeline's
//! (Pillow 13 decode, python-threatexchange array semantics, PyPI pdqhash) bit for bit.

use std::path::{Path, PathBuf};

use takedown_image::{Colour, Options, hash_file};

const ROOT: &str = "../../../shared/testdata/pdq";

fn root() -> PathBuf {
    PathBuf::from(ROOT)
}

fn rows(csv: &str) -> Vec<csv::StringRecord> {
    let path = root().join("expected").join(csv);
    let mut reader =
        csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    reader.records().map(|r| r.expect("csv row")).collect()
}

#[test]
fn full_size_hashes_and_qualities_match_reference() {
    let rows = rows("pdqhash-pypi-pillow-fullsize.csv");
    assert!(
        rows.len() >= 49,
        "expected the whole reference list, got {}",
        rows.len()
    );
    let mut failures = Vec::new();
    for row in &rows {
        let (hash, quality, image) = (&row[0], &row[1], &row[2]);
        let got = hash_file(&root().join(image), &Options::default())
            .unwrap_or_else(|e| panic!("{image}: {e}"));
        let want: u8 = quality.parse().expect("quality");
        if got.hash.to_string() != hash || got.quality.get() != want {
            failures.push(format!(
                "{image}: got {},{} want {hash},{want}",
                got.hash,
                got.quality.get()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn dihedral_hashes_match_reference() {
    let rows = rows("pdqhash-pypi-pillow-dihedral.csv");
    assert_eq!(rows.len(), 80);
    let options = Options {
        dihedral: true,
        ..Options::default()
    };
    let mut failures = Vec::new();
    for group in rows.chunks(8) {
        let image = &group[0][3];
        let got =
            hash_file(&root().join(image), &options).unwrap_or_else(|e| panic!("{image}: {e}"));
        let d = got.dihedral.expect("dihedral requested");
        assert_eq!(got.hash, d.hashes[0]);
        for (row, (t, h)) in group.iter().zip(d.iter()) {
            assert_eq!(&row[0], t.as_str(), "transform order");
            if h.to_string() != row[1] || d.quality.get().to_string() != row[2] {
                failures.push(format!(
                    "{image} {}: got {h},{} want {},{}",
                    t.as_str(),
                    d.quality.get(),
                    &row[1],
                    &row[2]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Under the convert-to-RGB policy, every colour mode of the same photo hashes close
/// to the original (the reference array semantics do not: palette indices and raw CMYK
/// land far away).
#[test]
fn rgb_policy_converts_every_mode() {
    let modes = root().join("data/misc-images/modes");
    let rgb = Options {
        colour: Colour::Rgb,
        ..Options::default()
    };
    let original = hash_file(&modes.join("original.jpg"), &rgb).expect("original");
    for name in [
        "1.png",
        "CMYK.jpg",
        "L.png",
        "LA.png",
        "P.png",
        "RGBA.png",
        "RGB.jpg",
        "YCbCr.jpg",
    ] {
        let got = hash_file(&modes.join(name), &rgb).expect(name);
        let d = got.hash.distance(&original.hash);
        assert!(d <= 40, "{name}: {d} bits from the original");
        assert!(
            got.quality.get() >= 90,
            "{name}: quality {}",
            got.quality.get()
        );
    }
    let pytx = Options::default();
    let cmyk = hash_file(&modes.join("CMYK.jpg"), &pytx).expect("cmyk");
    assert!(
        cmyk.hash.distance(&original.hash) > 200,
        "raw CMYK hashes as an inverted image"
    );
}

#[test]
fn rgb_policy_matches_pillow_convert_golden() {
    // Hashes of Pillow 13 `convert("RGB")` pixels through PyPI pdqhash, made by
    // bench/compare_pixels.py's reference path; see tests/data/README.md.
    let path = Path::new("tests/data/pillow-convert-rgb.csv");
    let mut reader = csv::Reader::from_path(path).expect("golden csv");
    let rgb = Options {
        colour: Colour::Rgb,
        ..Options::default()
    };
    let mut n = 0;
    for row in reader.records() {
        let row = row.expect("row");
        let got = hash_file(&root().join(&row[2]), &rgb).expect("hash");
        assert_eq!(
            (got.hash.to_string(), got.quality.get().to_string()),
            (row[0].to_owned(), row[1].to_owned()),
            "{}",
            &row[2]
        );
        n += 1;
    }
    assert!(n >= 49);
}
