//! Matching one query against many banks.

use std::sync::Arc;

use takedown_index::{EntryId, Index, Query, Radius, Search};
use takedown_pdq::{Quality, Transform};

use crate::Error;

/// One bank as the matcher sees it.
#[derive(Debug)]
pub struct BankIndex {
    /// The bank's name, reported in hits.
    pub name: Arc<str>,
    /// Whether default matching (no banks named) consults it.
    pub enabled: bool,
    /// Its match radius.
    pub radius: Radius,
    /// Its entries.
    pub index: Index,
}

/// A match of a query against one bank entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchHit {
    /// The bank holding the entry.
    pub bank: Arc<str>,
    /// The entry's id in that bank.
    pub entry_id: EntryId,
    /// The query transform that came closest.
    pub transform: Transform,
    /// Its distance to the entry.
    pub distance: u32,
}

/// What to match against, and how strictly.
#[derive(Debug, Clone)]
pub struct MatchOptions {
    /// Banks to consult by name, enabled or not; `None` means every enabled bank.
    pub banks: Option<Vec<String>>,
    /// A radius overriding every bank's own.
    pub radius: Option<Radius>,
    /// Query hashes of lower quality are refused.
    pub min_quality: Quality,
}

impl Default for MatchOptions {
    fn default() -> Self {
        MatchOptions {
            banks: None,
            radius: None,
            min_quality: Quality::MATCH_THRESHOLD,
        }
    }
}

/// Many banks, each with its own exact index, enabled flag and radius.
#[derive(Debug, Default)]
pub struct Matcher {
    banks: Vec<BankIndex>,
}

impl Matcher {
    /// A matcher without banks.
    pub fn new() -> Self {
        Matcher::default()
    }

    /// Adds a bank, replacing one of the same name.
    pub fn add(&mut self, bank: BankIndex) {
        self.banks.retain(|b| b.name != bank.name);
        self.banks.push(bank);
    }

    /// The banks loaded.
    pub fn banks(&self) -> &[BankIndex] {
        &self.banks
    }

    /// Every entry within radius of `query` in the selected banks, ordered by
    /// bank (as added), then distance, then entry id.
    ///
    /// `quality` is the query image's PDQ quality when known (a bare hash
    /// has none); below `options.min_quality` the query is refused.
    pub fn find(
        &self,
        query: &Query,
        quality: Option<Quality>,
        options: &MatchOptions,
    ) -> Result<Vec<MatchHit>, Error> {
        if let Some(q) = quality.filter(|q| *q < options.min_quality) {
            return Err(Error::LowQuality {
                quality: q,
                min: options.min_quality,
            });
        }
        let selected: Vec<&BankIndex> = match &options.banks {
            None => self.banks.iter().filter(|b| b.enabled).collect(),
            Some(names) => names
                .iter()
                .map(|n| {
                    self.banks
                        .iter()
                        .find(|b| &*b.name == n.as_str())
                        .ok_or_else(|| Error::NoSuchBank(n.clone()))
                })
                .collect::<Result<_, _>>()?,
        };
        let mut out = Vec::new();
        for bank in selected {
            let radius = options.radius.unwrap_or(bank.radius);
            out.extend(
                bank.index
                    .search(query, radius)
                    .into_iter()
                    .map(|h| MatchHit {
                        bank: bank.name.clone(),
                        entry_id: h.id,
                        transform: h.transform,
                        distance: h.distance,
                    }),
            );
        }
        Ok(out)
    }
}
