//! Hash banks: named lists of PDQ hashes, and the [`BankStore`] trait that keeps them.

use std::fmt;
use std::ops::ControlFlow;
use std::str::FromStr;

use takedown_event::Timestamp;
use takedown_pdq::{PdqHash, Quality};

use crate::Error;

/// The longest label the store keeps, in bytes.
pub const MAX_LABEL_LEN: usize = 256;
/// The most labels one entry may carry.
pub const MAX_LABELS: usize = 64;
/// The longest entry source text the store keeps, in bytes.
pub const MAX_SOURCE_LEN: usize = 1024;
/// The longest bank description the store keeps, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 4096;

/// A bank's name: 1-64 characters from `[A-Za-z0-9._-]`, starting with a letter or digit.
///
/// Names are compared exactly, so `NCMEC` and `ncmec` are two banks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BankName(String);

impl BankName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BankName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for BankName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let t = s.trim();
        let ok_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        let starts_ok = t.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
        if !starts_ok || t.len() > 64 || !t.bytes().all(ok_char) {
            return Err(Error::BankName(s.to_owned()));
        }
        Ok(BankName(t.to_owned()))
    }
}

/// The Hamming distance up to which a bank's hashes count as matches, 0 to 256 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MatchRadius(u16);

impl MatchRadius {
    /// The radius the industry uses for PDQ: 31 bits.
    pub const DEFAULT: MatchRadius = MatchRadius(31);

    /// Wraps a radius, failing outside 0..=256.
    pub fn new(bits: i64) -> Result<Self, Error> {
        u16::try_from(bits)
            .ok()
            .filter(|b| *b <= 256)
            .map(MatchRadius)
            .ok_or(Error::Radius(bits))
    }

    /// The radius in bits.
    pub fn bits(self) -> u32 {
        u32::from(self.0)
    }
}

impl Default for MatchRadius {
    fn default() -> Self {
        MatchRadius::DEFAULT
    }
}

impl fmt::Display for MatchRadius {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for MatchRadius {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bits: i64 = s.trim().parse().map_err(|_| Error::Radius(-1))?;
        MatchRadius::new(bits)
    }
}

/// The stable id of one bank entry.
///
/// Ids are unique across the whole store and never reused, even after the
/// entry or its bank is deleted, so an index may key on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId(pub u64);

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A bank's change counter.
///
/// Every transaction that changes a bank's entries gives it a new, larger
/// version. Versions come from one counter for the whole store, so a bank that
/// is deleted and created again never repeats a version an index has seen.
/// Settings (enabled, radius, description) do not change the version, because
/// they do not change what an index holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BankVersion(pub u64);

impl fmt::Display for BankVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A bank as listed: its settings and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bank {
    /// The bank's name.
    pub name: BankName,
    /// Whether matching consults this bank.
    pub enabled: bool,
    /// The match radius for this bank's hashes.
    pub radius: MatchRadius,
    /// When the bank was created.
    pub created: Timestamp,
    /// Free text describing the bank's origin.
    pub description: String,
    /// The number of entries.
    pub entries: u64,
    /// The version of the latest change to the entries.
    pub version: BankVersion,
}

/// One hash in a bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankEntry {
    /// The entry's stable id.
    pub id: EntryId,
    /// The hash.
    pub hash: PdqHash,
    /// The hash's quality score.
    pub quality: Quality,
    /// Where the hash came from (a file name, a list URL, a case number).
    pub source: String,
    /// Labels, sorted and free of duplicates.
    pub labels: Vec<String>,
    /// When the hash was first added.
    pub added: Timestamp,
}

/// A hash to add to a bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// The hash.
    pub hash: PdqHash,
    /// The hash's quality score.
    pub quality: Quality,
    /// Where the hash came from; at most [`MAX_SOURCE_LEN`] bytes.
    pub source: String,
    /// Labels; each is trimmed, and duplicates are dropped.
    pub labels: Vec<String>,
}

impl NewEntry {
    /// An entry with no source text and no labels.
    pub fn new(hash: PdqHash, quality: Quality) -> Self {
        NewEntry {
            hash,
            quality,
            source: String::new(),
            labels: Vec::new(),
        }
    }
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddReport {
    /// Hashes that were new to the bank.
    pub added: u64,
    /// Hashes already in the bank (or repeated in the import) whose entry was kept and whose labels were merged.
    pub merged: u64,
    /// The bank's version after the import.
    pub version: BankVersion,
}

/// What a removal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoveReport {
    /// Entries removed; ids or hashes not in the bank are ignored.
    pub removed: u64,
    /// The bank's version after the removal.
    pub version: BankVersion,
}

/// How a bank changed since a version an index was built at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BankChanges {
    /// The changes, to apply in order: first drop `removed`, then insert or
    /// replace `upserted`.
    Delta {
        /// The version the delta starts after.
        from: BankVersion,
        /// The version the delta brings the index to.
        to: BankVersion,
        /// Entries added or changed after `from`, ordered by id.
        upserted: Vec<BankEntry>,
        /// Ids removed after `from`, ordered by id. Some may never have been
        /// in the index (added and removed after `from`); ignore those.
        removed: Vec<EntryId>,
    },
    /// The history back to the requested version is gone (pruned, or the bank
    /// was deleted and created again): rebuild from a full scan.
    Rebuild {
        /// The bank's current version.
        version: BankVersion,
    },
}

/// Storage for hash banks.
///
/// Methods take `&self` and implementations are `Send + Sync`, so one store is
/// shared by every thread. Calls block; async callers should run them on a
/// blocking thread pool.
pub trait BankStore: Send + Sync {
    /// Creates an empty, enabled bank with the default radius.
    ///
    /// Fails with [`Error::BankExists`] if the name is taken.
    fn create_bank(&self, name: &BankName, description: &str) -> Result<Bank, Error>;

    /// All banks, ordered by name.
    fn banks(&self) -> Result<Vec<Bank>, Error>;

    /// One bank, or `None` if there is no bank with that name.
    fn bank(&self, name: &BankName) -> Result<Option<Bank>, Error>;

    /// Deletes a bank and all its entries. Returns whether the bank existed.
    fn delete_bank(&self, name: &BankName) -> Result<bool, Error>;

    /// Enables or disables a bank for matching.
    fn set_bank_enabled(&self, name: &BankName, enabled: bool) -> Result<Bank, Error>;

    /// Changes a bank's match radius.
    fn set_bank_radius(&self, name: &BankName, radius: MatchRadius) -> Result<Bank, Error>;

    /// Changes a bank's description.
    fn set_bank_description(&self, name: &BankName, description: &str) -> Result<Bank, Error>;

    /// Adds entries from a stream in one transaction: either every entry is
    /// stored or, if the stream yields an error or an entry is invalid,
    /// nothing is.
    ///
    /// A hash already in the bank, or repeated in the stream, keeps its
    /// existing entry (id, source, added time): the labels are merged and the
    /// higher quality kept. Wrap foreign errors in [`Error::Import`].
    fn import_entries(
        &self,
        bank: &BankName,
        entries: &mut dyn Iterator<Item = Result<NewEntry, Error>>,
    ) -> Result<AddReport, Error>;

    /// Adds a slice of entries in one transaction; see [`BankStore::import_entries`].
    fn add_entries(&self, bank: &BankName, entries: &[NewEntry]) -> Result<AddReport, Error> {
        self.import_entries(bank, &mut entries.iter().cloned().map(Ok))
    }

    /// Removes entries by id, in one transaction.
    fn remove_entries(&self, bank: &BankName, ids: &[EntryId]) -> Result<RemoveReport, Error>;

    /// Removes entries by hash, in one transaction.
    fn remove_hashes(&self, bank: &BankName, hashes: &[PdqHash]) -> Result<RemoveReport, Error>;

    /// The entry holding exactly this hash, if any.
    fn entry_by_hash(&self, bank: &BankName, hash: &PdqHash) -> Result<Option<BankEntry>, Error>;

    /// The entries with these ids, ordered by id; ids not in the bank are skipped.
    fn entries_by_id(&self, bank: &BankName, ids: &[EntryId]) -> Result<Vec<BankEntry>, Error>;

    /// Up to `limit` entries with ids above `after`, ordered by id.
    fn entries_page(
        &self,
        bank: &BankName,
        after: Option<EntryId>,
        limit: usize,
    ) -> Result<Vec<BankEntry>, Error>;

    /// Streams every entry, ordered by id, from one consistent snapshot, and
    /// returns the version of that snapshot. The callback may stop early with
    /// [`ControlFlow::Break`].
    ///
    /// An index built from the scan is current as of the returned version;
    /// pass it to [`BankStore::changes_since`] later to catch up.
    fn scan_entries(
        &self,
        bank: &BankName,
        f: &mut dyn FnMut(BankEntry) -> ControlFlow<()>,
    ) -> Result<BankVersion, Error>;

    /// The changes since `version`, from one consistent snapshot.
    fn changes_since(&self, bank: &BankName, version: BankVersion) -> Result<BankChanges, Error>;

    /// Forgets removal history up to and including `version`, to bound its size.
    /// Indexes older than that must rebuild. Returns the number of tombstones dropped.
    fn prune_history(&self, bank: &BankName, version: BankVersion) -> Result<u64, Error>;
}

/// Checks and normalises labels: trimmed, non-empty, bounded, sorted and deduplicated.
pub(crate) fn normalize_labels(labels: &[String]) -> Result<Vec<String>, Error> {
    if labels.len() > MAX_LABELS {
        return Err(Error::Label(format!("{} labels", labels.len())));
    }
    let mut out = Vec::with_capacity(labels.len());
    for l in labels {
        let t = l.trim();
        if t.is_empty() || t.len() > MAX_LABEL_LEN || t.chars().any(char::is_control) {
            return Err(Error::Label(l.clone()));
        }
        out.push(t.to_owned());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Merges two normalised label lists, failing if the union is too long.
pub(crate) fn merge_labels(a: &[String], b: &[String]) -> Result<Vec<String>, Error> {
    let mut out: Vec<String> = a.iter().chain(b.iter()).cloned().collect();
    out.sort();
    out.dedup();
    if out.len() > MAX_LABELS {
        return Err(Error::Label(format!("{} labels after merging", out.len())));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bank_names() {
        assert_eq!("NCMEC_v2".parse::<BankName>().unwrap().as_str(), "NCMEC_v2");
        assert_eq!(" a.b-c ".parse::<BankName>().unwrap().as_str(), "a.b-c");
        for bad in ["", "-x", ".x", "a b", "a/b", "ä", &"x".repeat(65)] {
            assert!(bad.parse::<BankName>().is_err(), "{bad:?}");
        }
        assert!("x".repeat(64).parse::<BankName>().is_ok());
    }

    #[test]
    fn radius_bounds() {
        assert_eq!(MatchRadius::default().bits(), 31);
        assert_eq!(MatchRadius::new(256).unwrap().bits(), 256);
        assert!(MatchRadius::new(257).is_err());
        assert!(MatchRadius::new(-1).is_err());
        assert!("x".parse::<MatchRadius>().is_err());
    }

    #[test]
    fn labels_are_normalised() {
        let l = normalize_labels(&["b ".into(), "a".into(), "b".into()]).unwrap();
        assert_eq!(l, vec!["a", "b"]);
        assert!(normalize_labels(&[" ".into()]).is_err());
        assert!(normalize_labels(&["a\nb".into()]).is_err());
        assert!(normalize_labels(&vec!["a".to_owned(); 65]).is_err());
        assert_eq!(
            merge_labels(&["a".into()], &["c".into(), "a".into()]).unwrap(),
            vec!["a", "c"]
        );
    }
}
