//! Keeping a bank's index file current with the store.
//!
//! Each bank's index lives in `DIR/<bank>.tdx`, with the store version it
//! reflects in `DIR/<bank>.version`. Loading opens the file and applies only
//! the store's changes since that version; a missing, damaged or too-old
//! file is rebuilt from a full scan. The index is written before its
//! version, so a crash in between only replays changes, which is harmless.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use takedown_index::{EntryId, Index};
use takedown_store::{Bank, BankChanges, BankName, BankStore, BankVersion};
use tracing::{debug, info, warn};

use crate::Error;

/// What [`load_index`] had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// The file was current.
    Current,
    /// Changes since the file's version were applied.
    Updated {
        /// Entries added or replaced.
        upserted: usize,
        /// Entries removed.
        removed: usize,
    },
    /// The index was built from a full scan.
    Rebuilt,
}

fn paths(dir: &Path, bank: &BankName) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{bank}.tdx")),
        dir.join(format!("{bank}.version")),
    )
}

fn read_version(path: &Path) -> Option<BankVersion> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(BankVersion)
}

fn write_version(path: &Path, v: BankVersion) -> Result<(), Error> {
    let tmp = path.with_extension("version.tmp");
    std::fs::write(&tmp, format!("{v}\n"))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Loads `bank`'s index from `dir`, bringing it up to date with `store` and
/// saving it back when it changed.
pub fn load_index(
    store: &dyn BankStore,
    bank: &Bank,
    dir: &Path,
) -> Result<(Index, Refresh), Error> {
    std::fs::create_dir_all(dir)?;
    let (index_path, version_path) = paths(dir, &bank.name);
    let existing = match (read_version(&version_path), index_path.exists()) {
        (Some(v), true) => match Index::open(&index_path) {
            Ok(index) => Some((index, v)),
            Err(e) => {
                warn!(bank = %bank.name, error = %e, "Index file unusable; rebuilding.");
                None
            }
        },
        _ => None,
    };
    if let Some((mut index, v)) = existing {
        if v == bank.version {
            debug!(bank = %bank.name, %v, "Index current.");
            return Ok((index, Refresh::Current));
        }
        match store.changes_since(&bank.name, v)? {
            BankChanges::Delta {
                to,
                upserted,
                removed,
                ..
            } => {
                for id in &removed {
                    index.remove(EntryId(id.0));
                }
                for e in &upserted {
                    index.insert(EntryId(e.id.0), e.hash)?;
                }
                index.save(&index_path)?;
                write_version(&version_path, to)?;
                info!(bank = %bank.name, upserted = upserted.len(), removed = removed.len(), "Index updated.");
                return Ok((
                    index,
                    Refresh::Updated {
                        upserted: upserted.len(),
                        removed: removed.len(),
                    },
                ));
            }
            BankChanges::Rebuild { .. } => {}
        }
    }
    let mut entries = Vec::new();
    let version = store.scan_entries(&bank.name, &mut |e| {
        entries.push((EntryId(e.id.0), e.hash));
        ControlFlow::Continue(())
    })?;
    let index = Index::build(entries)?;
    index.save(&index_path)?;
    write_version(&version_path, version)?;
    info!(bank = %bank.name, n_entries = index_len(&index), "Index rebuilt.");
    Ok((index, Refresh::Rebuilt))
}

fn index_len(index: &Index) -> usize {
    takedown_index::Search::len(index)
}

/// Deletes a bank's index files, if any.
pub fn remove_index(dir: &Path, bank: &BankName) -> Result<(), Error> {
    let (a, b) = paths(dir, bank);
    for p in [a, b] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
