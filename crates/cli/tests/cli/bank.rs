//! `takedown bank` and `takedown match` end to end.

use std::path::Path;
use std::process::{Command, Output};

const SHARED: &str = "../../../shared/testdata/pdq";
const BRIDGE: &str = "data/reg-test-input/dih/bridge-1-original.jpg";

fn run(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_takedown"))
        .args(args)
        .env("TAKEDOWN_DATA", data)
        .output()
        .expect("run takedown")
}

fn ok(data: &Path, args: &[&str]) -> String {
    let o = run(data, args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8")
}

/// The reference hashes of the bridge test image, in transform order.
fn bridge_dihedral() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(format!(
        "{SHARED}/expected/pdqhash-pypi-pillow-dihedral.csv"
    ))
    .expect("csv");
    let header: Vec<&str> = text.lines().next().expect("header").split(',').collect();
    let (xi, hi, ii) = (
        header
            .iter()
            .position(|h| *h == "xform")
            .expect("xform column"),
        header
            .iter()
            .position(|h| *h == "hash")
            .expect("hash column"),
        header
            .iter()
            .position(|h| *h == "image")
            .expect("image column"),
    );
    text.lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.len() > xi.max(hi).max(ii) && f[ii] == BRIDGE)
        .map(|f| (f[xi].to_owned(), f[hi].to_owned()))
        .collect()
}

#[test]
fn create_import_match_export_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    ok(
        data,
        &["bank", "create", "known", "--description", "test list"],
    );
    assert!(!run(data, &["bank", "create", "known"]).status.success());

    // A list with one bad line: rejected as a whole by default.
    let list = dir.path().join("list.csv");
    let hay = std::fs::read_to_string(format!("{SHARED}/data/reg-test-input/haystack.txt"))
        .expect("haystack");
    let mut csv = String::from("hash,quality,labels\n");
    for (i, h) in hay.lines().take(500).enumerate() {
        csv.push_str(&format!("{h},{},l{}\n", 60 + i % 40, i % 3));
    }
    csv.push_str("nothex,90,x\n");
    std::fs::write(&list, &csv).expect("write list");
    let o = run(
        data,
        &["bank", "import", "known", list.to_str().expect("path")],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("line 502"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(ok(data, &["bank", "list"]).contains("known,true,31,0,"));

    // With --skip-bad the good lines go in.
    let o = run(
        data,
        &[
            "bank",
            "import",
            "known",
            "--skip-bad",
            list.to_str().expect("path"),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("skipped list.csv:502"));
    let listing = ok(data, &["bank", "list"]);
    let count: u64 = listing
        .lines()
        .nth(1)
        .expect("row")
        .split(',')
        .nth(3)
        .expect("entries")
        .parse()
        .expect("n");
    assert!(count > 400 && count <= 500, "{listing}");

    // A hash query is matched as given; results agree with brute force.
    let q = hay.lines().next().expect("first hash");
    let out = ok(data, &["match", "--radius", "32", q]);
    let qh: takedown_pdq::PdqHash = q.parse().expect("hash");
    let expected = hay
        .lines()
        .take(500)
        .filter(|h| {
            h.parse::<takedown_pdq::PdqHash>()
                .expect("hash")
                .distance(&qh)
                <= 32
        })
        .collect::<std::collections::HashSet<_>>()
        .len();
    assert_eq!(out.lines().count(), expected, "{out}");
    assert!(
        out.lines()
            .all(|l| l.starts_with(&format!("{q},known,")) && l.contains(",orig,"))
    );

    // Export round trip.
    let exported = ok(data, &["bank", "export", "known", "--format", "hashes"]);
    assert_eq!(exported.lines().count() as u64, count);

    ok(data, &["bank", "delete", "known"]);
    assert_eq!(ok(data, &["bank", "list"]).lines().count(), 1);
    assert!(!run(data, &["match", "--bank", "known", q]).status.success());
}

#[test]
fn image_queries_use_all_orientations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let dih = bridge_dihedral();
    assert!(!dih.is_empty());
    // Bank only the rot90 hash; the original image must match through rot90.
    let (xform, hash) = dih
        .iter()
        .find(|(x, _)| x == "rot90")
        .expect("rot90 row")
        .clone();
    let list = dir.path().join("one.txt");
    std::fs::write(&list, format!("{hash}\n")).expect("write");
    ok(data, &["bank", "create", "b"]);
    ok(data, &["bank", "import", "b", list.to_str().expect("path")]);
    let img = format!("{SHARED}/{BRIDGE}");
    let out = ok(data, &["match", &img]);
    let line = out.lines().next().unwrap_or_default();
    assert!(
        line.contains(",b,") && line.contains(&format!(",{xform},")),
        "{out}"
    );
    let distance: u32 = line
        .rsplit(',')
        .next()
        .unwrap_or_default()
        .parse()
        .expect("distance");
    assert!(distance <= 8, "{out}");
    // Without the other orientations it does not match.
    assert_eq!(ok(data, &["match", "--no-dihedral", &img]), "");
}

#[test]
fn match_walks_folders_past_files_that_are_not_images() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (_, hash) = bridge_dihedral()
        .into_iter()
        .find(|(x, _)| x == "orig")
        .expect("orig row");
    let list = dir.path().join("one.txt");
    std::fs::write(&list, format!("{hash}\n")).expect("write");
    ok(&data, &["bank", "create", "b"]);
    ok(
        &data,
        &["bank", "import", "b", list.to_str().expect("path")],
    );
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("mkdir");
    std::fs::copy(format!("{SHARED}/{BRIDGE}"), images.join("bridge.jpg")).expect("copy");
    let notes = images.join("README.txt");
    std::fs::write(&notes, "not an image\n").expect("write");
    // Found in a folder, the text file is passed over and the image matches.
    let out = ok(&data, &["match", images.to_str().expect("path")]);
    assert!(out.lines().any(|l| l.contains(",b,")), "{out}");
    // Named on the command line, it is an error.
    let o = run(&data, &["match", notes.to_str().expect("path")]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("README.txt"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
