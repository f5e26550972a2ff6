//! `takedown hash` end to end.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SHARED: &str = "../../../shared/testdata/pdq";

fn takedown(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_takedown"))
        .args(args)
        .env(
            "TAKEDOWN_DATA",
            std::env::temp_dir().join("takedown-cli-hash-test"),
        )
        .output()
        .expect("run takedown")
}

fn shared(rel: &str) -> String {
    Path::new(SHARED).join(rel).to_string_lossy().into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("utf-8 stdout")
}

fn reference() -> Vec<(String, String, String)> {
    let text =
        std::fs::read_to_string(shared("expected/pdqhash-pypi-pillow-fullsize.csv")).expect("csv");
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_owned(), f[1].to_owned(), f[2].to_owned())
        })
        .collect()
}

#[test]
fn hashes_files_as_reference() {
    let rows = reference();
    let paths: Vec<String> = rows.iter().map(|r| shared(&r.2)).collect();
    let mut args = vec!["hash"];
    args.extend(paths.iter().map(String::as_str));
    let out = takedown(&args);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), rows.len());
    for (line, (hash, quality, _)) in lines.iter().zip(&rows) {
        let f: Vec<&str> = line.splitn(3, ',').collect();
        assert_eq!((f[0], f[1]), (hash.as_str(), quality.as_str()), "{line}");
    }
    assert_eq!(lines[0].split(',').nth(2), Some(paths[0].as_str()));
}

#[test]
fn walks_folders_in_order_and_skips_non_images() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sub = dir.path().join("b-sub");
    std::fs::create_dir(&sub).expect("mkdir");
    std::fs::copy(shared("data/misc-images/wee.jpg"), sub.join("z.jpg")).expect("copy");
    std::fs::copy(
        shared("data/misc-images/modes/L.png"),
        dir.path().join("a.png"),
    )
    .expect("copy");
    std::fs::copy(
        shared("data/misc-images/modes/F.webp"),
        dir.path().join("c.dat"),
    )
    .expect("copy");
    std::fs::write(dir.path().join("notes.txt"), "not an image").expect("write");
    let out = takedown(&["hash", dir.path().to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    let names: Vec<PathBuf> = text
        .lines()
        .map(|l| PathBuf::from(l.splitn(3, ',').nth(2).expect("path")))
        .collect();
    assert_eq!(
        names,
        vec![
            dir.path().join("a.png"),
            sub.join("z.jpg"),
            dir.path().join("c.dat")
        ]
    );
    assert!(
        text.lines()
            .next()
            .expect("line")
            .starts_with("f8f8f0cee0f4a84f06370a22038f63f0")
    );
    assert!(
        out.stderr.is_empty(),
        "nothing on stderr when not a terminal"
    );
}

#[test]
fn bad_files_are_reported_and_the_rest_hashed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = std::fs::read(shared("data/bridge-mods/aaa-orig.jpg")).expect("read");
    let cut = dir.path().join("cut.jpg");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).expect("write");
    let text = dir.path().join("text.jpg");
    std::fs::write(&text, "hello").expect("write");
    let good = shared("data/misc-images/wee.jpg");
    let missing = dir.path().join("missing.png");
    let out = takedown(&[
        "hash",
        cut.to_str().expect("utf-8"),
        &good,
        text.to_str().expect("utf-8"),
        missing.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "error: {}: JPEG image is truncated",
            cut.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("error: {}: not a supported image", text.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!("error: {}: cannot read", missing.display())),
        "{err}"
    );
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1);
    assert!(
        text.starts_with("6227401f601ff4ccafcc9fad4b0d95d371a2eb7265a3285234d228ca94deeb2d,100,")
    );
}

#[test]
fn dihedral_prints_eight_lines_in_reference_order() {
    let img = shared("data/reg-test-input/dih/bridge-1-original.jpg");
    let out = takedown(&["hash", "--dihedral", &img]);
    assert!(out.status.success());
    let expected =
        std::fs::read_to_string(shared("expected/pdqhash-pypi-pillow-dihedral.csv")).expect("csv");
    let want: Vec<String> = expected
        .lines()
        .filter(|l| l.ends_with("bridge-1-original.jpg"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            format!("{},{},{},{}", f[1], f[2], img, f[0])
        })
        .collect();
    let text = stdout(&out);
    let got: Vec<&str> = text.lines().collect();
    assert_eq!(got, want);
}

#[test]
fn json_lines_carry_hash_quality_and_dihedral() {
    let img = shared("data/misc-images/wee.jpg");
    let out = takedown(&["hash", "--format", "json", "--dihedral", &img]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("json");
    assert_eq!(v["path"], img.as_str());
    assert_eq!(
        v["hash"],
        "6227401f601ff4ccafcc9fad4b0d95d371a2eb7265a3285234d228ca94deeb2d"
    );
    assert_eq!(v["quality"], 100);
    assert_eq!(v["dihedral"]["orig"], v["hash"]);
    assert_eq!(v["dihedral"].as_object().expect("object").len(), 8);
}

#[test]
fn max_pixels_refuses_large_images() {
    let img = shared("data/bridge-mods/aaa-orig.jpg");
    let out = takedown(&["hash", "--max-pixels", "1000", &img]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1600x1004 pixels exceeds the limit of 1000"),
        "{err}"
    );
}

#[test]
fn rgb_colour_converts_palettes() {
    let img = shared("data/misc-images/modes/P.png");
    let pytx = stdout(&takedown(&["hash", &img]));
    let rgb = stdout(&takedown(&["hash", "--colour", "rgb", &img]));
    assert!(
        pytx.starts_with("70f870eee8f4ea458a178a3002cf67f0"),
        "{pytx}"
    );
    assert_ne!(pytx, rgb);
}
