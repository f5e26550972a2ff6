//! Upstream MIH regression inputs: 1350 haystack hashes, 100 needles, and
//! the clusterings the 2019 reference run printed for them.

use takedown_index::{EntryId, FlatIndex, Index, MihIndex, Plan, Query, Radius, Search};
use takedown_pdq::{PdqHash, Transform};

use crate::common::oracle;

const DATA: &str = "../../../shared/testdata/pdq";

fn read_hashes(name: &str) -> Vec<PdqHash> {
    let text = std::fs::read_to_string(format!("{DATA}/data/reg-test-input/{name}")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.parse().unwrap())
        .collect()
}

fn haystack() -> Vec<(EntryId, PdqHash)> {
    read_hashes("haystack.txt")
        .into_iter()
        .enumerate()
        .map(|(i, h)| (EntryId(i as u64 + 1), h))
        .collect()
}

#[test]
fn needles_match_brute_force() {
    let hay = haystack();
    assert_eq!(hay.len(), 1350);
    let needles = read_hashes("needles.txt");
    assert_eq!(needles.len(), 100);
    let mih = MihIndex::build(hay.iter().copied()).unwrap();
    let index = Index::build(hay.iter().copied()).unwrap();
    let flat = FlatIndex::build(hay.iter().copied()).unwrap();
    let mut total = 0;
    // Needles, and the haystack hashes themselves, which have many
    // neighbours within 32 bits.
    for q in needles.iter().chain(hay.iter().map(|(_, h)| h)) {
        for r in [0, 31, 32] {
            let r = Radius::new(r).unwrap();
            let want = oracle(&hay, &[(Transform::Orig, *q)], r);
            total += want.len();
            let query = Query::new(*q);
            let mut probed = Vec::new();
            mih.search_with(&query, r, Plan::Probe, &mut probed);
            takedown_index::sort_hits(&mut probed);
            assert_eq!(probed, want);
            assert_eq!(index.search(&query, r), want);
            assert_eq!(flat.search(&query, r), want);
        }
    }
    assert!(
        total > 4000,
        "the regression set should exercise real matches, got {total}"
    );
}

/// The reference `clusterize256 -d D` output: scanning hashes in file order,
/// each not-yet-clustered hash opens a cluster holding every not-yet-clustered
/// hash within D of it (in file order). Reproducing it needs exact radius
/// results at 0, 32, 64 and 96 bits.
#[test]
fn clusterize_matches_reference_output() {
    let expected = std::fs::read_to_string(format!(
        "{DATA}/expected/java-reg_test-expected-out-2019.txt"
    ))
    .unwrap();
    let hay = haystack();
    let mih = MihIndex::build(hay.iter().copied()).unwrap();
    for d in [0u32, 32, 64, 96] {
        let header = format!(
            "clusterize256 {}-d {d} ./reg_test/input/haystack.txt",
            if d >= 64 { "-b " } else { "" }
        );
        let start = expected
            .find(&header)
            .unwrap_or_else(|| panic!("section {header} missing"));
        let want: Vec<&str> = expected[start..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with("clidx="))
            .collect();
        assert_eq!(want.len(), 1350);

        let mut got = Vec::new();
        let mut taken = vec![false; hay.len()];
        let mut cluster = 0;
        for (i, (_, h)) in hay.iter().enumerate() {
            if taken[i] {
                continue;
            }
            let mut hits = Vec::new();
            mih.search_with(
                &Query::new(*h),
                Radius::new(d).unwrap(),
                Plan::Probe,
                &mut hits,
            );
            let mut members: Vec<usize> = hits
                .iter()
                .map(|x| x.id.0 as usize - 1)
                .filter(|&j| !taken[j])
                .collect();
            members.sort_unstable();
            cluster += 1;
            for &j in &members {
                taken[j] = true;
                let other = hay[j].1;
                got.push(format!(
                    "clidx={cluster},clusz={},hash1={h},hash2={other},d={},idx={}",
                    members.len(),
                    h.distance(&other),
                    j + 1
                ));
            }
        }
        assert_eq!(got, want, "clusterize at d={d}");
    }
}
