//! Parsers: line numbers, every format, round trips, and arbitrary input.

use proptest::prelude::*;
use takedown_bank::{Error, Format, Parser, Record, fold, parse_str, write};
use takedown_pdq::{PdqHash, Quality};

const H: &str = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";

fn line_of(r: &Result<Record, Error>) -> Option<u64> {
    match r {
        Err(Error::Line { line, .. }) => Some(*line),
        _ => None,
    }
}

#[test]
fn csv_reports_bad_lines_by_number() {
    let text = std::fs::read_to_string("tests/data/mixed.csv").unwrap();
    let results: Vec<_> = parse_str(Format::Csv, &text).collect();
    assert_eq!(results.len(), 5);
    let good = results[0].as_ref().unwrap();
    assert_eq!(good.hash, H.parse::<PdqHash>().unwrap());
    assert_eq!(good.quality, Some(Quality::new(100).unwrap()));
    assert_eq!(good.source.as_deref(), Some("case-1"));
    assert_eq!(good.labels, ["a", "b"]);
    assert_eq!(
        results.iter().map(line_of).collect::<Vec<_>>(),
        [None, Some(5), Some(6), Some(7), None]
    );
    let msg = results[1].as_ref().unwrap_err().to_string();
    assert!(msg.contains("63 characters"), "{msg}");
    let last = results[4].as_ref().unwrap();
    assert_eq!(last.source.as_deref(), Some("x, y"));
    // Duplicates (upper-case hex is the same hash) fold into one.
    let folded = fold(results.into_iter().filter_map(Result::ok));
    assert_eq!(folded.len(), 1);
    assert_eq!(folded[0].labels, ["a", "b", "c"]);
}

#[test]
fn hma_style_csv_with_signal_types() {
    let text = std::fs::read_to_string("tests/data/hma.csv").unwrap();
    let results: Vec<_> = parse_str(Format::Csv, &text).collect();
    assert_eq!(results[0].as_ref().unwrap().labels, ["bad", "worse"]);
    let err = results[1].as_ref().unwrap_err().to_string();
    assert!(err.starts_with("line 3:") && err.contains("md5"), "{err}");
}

#[test]
fn headerless_csv_takes_labels_from_extra_columns() {
    let r: Vec<_> = parse_str(Format::Csv, &format!("{H},x,y\n{H}\n")).collect();
    assert_eq!(r[0].as_ref().unwrap().labels, ["x", "y"]);
    assert!(r[1].as_ref().unwrap().labels.is_empty());
}

#[test]
fn other_formats() {
    let json = format!(
        "{{\"hash\":\"{H}\",\"quality\":80,\"labels\":[\"l\"],\"source\":\"s\"}}\n{{\"signal\":\"{H}\",\"tags\":[\"t\"]}}\n{{\"hash\":1}}\nnot json\n"
    );
    let r: Vec<_> = parse_str(Format::JsonLines, &json).collect();
    assert_eq!(
        r[0].as_ref().unwrap().quality,
        Some(Quality::new(80).unwrap())
    );
    assert_eq!(r[1].as_ref().unwrap().labels, ["t"]);
    assert_eq!(line_of(&r[2]), Some(3));
    assert_eq!(line_of(&r[3]), Some(4));

    let list = format!(
        "hash={H},meta\n{H},77,photo.jpg\nhash={H},norm=128,delta=0,quality=100,filename=a.jpg\n"
    );
    let r: Vec<_> = parse_str(Format::HashList, &list)
        .map(Result::unwrap)
        .collect();
    assert_eq!(r[0].source.as_deref(), Some("meta"));
    assert_eq!(
        (r[1].quality.map(Quality::get), r[1].source.as_deref()),
        (Some(77), Some("photo.jpg"))
    );
    assert_eq!(
        (r[2].quality.map(Quality::get), r[2].source.as_deref()),
        (Some(100), Some("a.jpg"))
    );

    let sig = format!("pdq {H}\nmd5 abc\npdq\n");
    let r: Vec<_> = parse_str(Format::SignalList, &sig).collect();
    assert!(r[0].is_ok());
    assert_eq!(line_of(&r[1]), Some(2));
    assert_eq!(line_of(&r[2]), Some(3));

    // The upstream haystack is a plain hash list.
    let hay =
        std::fs::read_to_string("../../../shared/testdata/pdq/data/reg-test-input/haystack.txt")
            .unwrap();
    assert_eq!(
        parse_str(Format::HashList, &hay)
            .filter(Result::is_ok)
            .count(),
        1350
    );
}

#[test]
fn empty_and_overlong_input() {
    for f in Format::ALL {
        let r: Vec<_> = parse_str(f, "").collect();
        assert!(matches!(r.as_slice(), [Err(Error::Empty)]), "{f}");
        let blank: Vec<_> = parse_str(f, "\n \n\n").collect();
        assert!(matches!(blank.as_slice(), [Err(Error::Empty)]), "{f}");
        if f != Format::JsonLines {
            let r: Vec<_> = parse_str(f, "\n# only a comment\n\n").collect();
            assert!(matches!(r.as_slice(), [Err(Error::Empty)]), "{f}");
        }
    }
    let long = format!("{}\n{H}\n", "a".repeat(200_000));
    let r: Vec<_> = Parser::new(Format::HashList, long.as_bytes()).collect();
    assert_eq!(line_of(&r[0]), Some(1));
    assert!(r[1].is_ok());
}

fn record() -> impl Strategy<Value = Record> {
    (
        any::<[u8; 32]>(),
        prop::option::of(0i64..=100),
        prop::collection::vec("[a-zA-Z0-9 ,\"._-]{1,12}", 0..4),
        prop::option::of("[a-zA-Z0-9 ,\"./_-]{1,20}"),
    )
        .prop_map(|(h, q, labels, source)| Record {
            hash: PdqHash(h),
            quality: q.map(|q| Quality::new(q).unwrap()),
            labels: labels
                .into_iter()
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect(),
            source: source
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
        })
}

proptest! {
    #[test]
    fn parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = takedown_bank::fuzz_parse(&data);
    }

    #[test]
    fn parsers_never_panic_on_near_valid_text(lines in prop::collection::vec("[0-9a-fA-F,=;\" pdqhs]{0,80}", 0..20)) {
        let _ = takedown_bank::fuzz_parse(lines.join("\n").as_bytes());
    }

    #[test]
    fn round_trips(records in prop::collection::vec(record(), 1..20)) {
        for format in [Format::Csv, Format::JsonLines] {
            let mut buf = Vec::new();
            write(format, records.clone(), &mut buf).unwrap();
            let back: Vec<Record> = Parser::new(format, buf.as_slice()).map(Result::unwrap).collect();
            let mut want = records.clone();
            if format == Format::Csv {
                for r in &mut want {
                    r.labels.retain(|l| !l.contains(';'));
                }
            }
            prop_assert_eq!(back, want);
        }
        for format in [Format::HashList, Format::SignalList] {
            let mut buf = Vec::new();
            write(format, records.clone(), &mut buf).unwrap();
            let back: Vec<Record> = Parser::new(format, buf.as_slice()).map(Result::unwrap).collect();
            prop_assert_eq!(back.iter().map(|r| r.hash).collect::<Vec<_>>(), records.iter().map(|r| r.hash).collect::<Vec<_>>());
            if format == Format::HashList {
                prop_assert_eq!(back.iter().map(|r| r.quality).collect::<Vec<_>>(), records.iter().map(|r| r.quality).collect::<Vec<_>>());
            }
        }
    }
}
