//! [`BankStore`] over SQLite.

use std::ops::ControlFlow;

use rusqlite::{OptionalExtension, Row, Transaction, TransactionBehavior, params};
use takedown_event::Timestamp;
use takedown_pdq::{PdqHash, Quality};

use super::{SqliteStore, to_i64, to_u64};
use crate::Error;
use crate::bank::{
    AddReport, Bank, BankChanges, BankEntry, BankName, BankStore, BankVersion, EntryId,
    MAX_DESCRIPTION_LEN, MAX_SOURCE_LEN, MatchRadius, NewEntry, RemoveReport, merge_labels,
    normalize_labels,
};

const BANK_COLUMNS: &str =
    "name, enabled, radius, created, description, entry_count, version FROM banks";
const ENTRY_COLUMNS: &str = "id, hash, quality, source, labels, added FROM bank_entries";

fn bank_from_row(r: &Row<'_>) -> rusqlite::Result<Result<Bank, Error>> {
    let name: String = r.get(0)?;
    let radius: i64 = r.get(2)?;
    let entries: i64 = r.get(5)?;
    let version: i64 = r.get(6)?;
    let bank = (|| {
        Ok(Bank {
            name: name
                .parse()
                .map_err(|_| Error::Corrupt(format!("bank name {name:?}")))?,
            enabled: r.get(1).map_err(Error::sqlite("reading a bank"))?,
            radius: MatchRadius::new(radius)
                .map_err(|_| Error::Corrupt(format!("radius {radius}")))?,
            created: Timestamp(r.get(3).map_err(Error::sqlite("reading a bank"))?),
            description: r.get(4).map_err(Error::sqlite("reading a bank"))?,
            entries: to_u64(entries, "entry count")?,
            version: BankVersion(to_u64(version, "bank version")?),
        })
    })();
    Ok(bank)
}

fn entry_from_row(r: &Row<'_>) -> rusqlite::Result<Result<BankEntry, Error>> {
    let id: i64 = r.get(0)?;
    let hash: Vec<u8> = r.get(1)?;
    let quality: i64 = r.get(2)?;
    let source: String = r.get(3)?;
    let labels: String = r.get(4)?;
    let added: i64 = r.get(5)?;
    Ok((|| {
        let bytes: [u8; 32] = hash
            .as_slice()
            .try_into()
            .map_err(|_| Error::Corrupt(format!("hash of {} bytes", hash.len())))?;
        Ok(BankEntry {
            id: EntryId(to_u64(id, "entry id")?),
            hash: PdqHash(bytes),
            quality: Quality::new(quality)
                .map_err(|_| Error::Corrupt(format!("quality {quality}")))?,
            source,
            labels: split_labels(&labels),
            added: Timestamp(added),
        })
    })())
}

/// Labels are stored joined by newlines; validation keeps newlines out of labels.
fn join_labels(labels: &[String]) -> String {
    labels.join("\n")
}

fn split_labels(s: &str) -> Vec<String> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split('\n').map(str::to_owned).collect()
    }
}

fn bank_id(tx: &rusqlite::Connection, name: &BankName) -> Result<i64, Error> {
    tx.prepare_cached("SELECT id FROM banks WHERE name = ?1")
        .and_then(|mut s| s.query_row([name.as_str()], |r| r.get(0)).optional())
        .map_err(Error::sqlite("looking up a bank"))?
        .ok_or_else(|| Error::NoSuchBank(name.to_string()))
}

fn bank_row(conn: &rusqlite::Connection, name: &BankName) -> Result<Option<Bank>, Error> {
    conn.prepare_cached(&format!("SELECT {BANK_COLUMNS} WHERE name = ?1"))
        .and_then(|mut s| s.query_row([name.as_str()], bank_from_row).optional())
        .map_err(Error::sqlite("reading a bank"))?
        .transpose()
}

/// Allocates the next store-wide version.
fn next_version(tx: &Transaction<'_>) -> Result<i64, Error> {
    tx.prepare_cached("UPDATE meta SET value = value + 1 WHERE key = 'version_seq' RETURNING value")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(Error::sqlite("allocating a bank version"))
}

fn begin(conn: &mut rusqlite::Connection) -> Result<Transaction<'_>, Error> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(Error::sqlite("starting a write transaction"))
}

fn commit(tx: Transaction<'_>) -> Result<(), Error> {
    tx.commit().map_err(Error::sqlite("committing"))
}

/// Ends a change to bank `id`: when it `changed`, stamps the bank with the
/// new `version` and moves its entry count by `count_delta`; otherwise leaves
/// the bank alone. Returns the bank's version either way.
fn settle_version(
    tx: &Transaction<'_>,
    id: i64,
    version: i64,
    changed: bool,
    count_delta: i64,
) -> Result<i64, Error> {
    if changed {
        tx.execute(
            "UPDATE banks SET version = ?1, entry_count = entry_count + ?2 WHERE id = ?3",
            params![version, count_delta, id],
        )
        .map_err(Error::sqlite("updating a bank"))?;
        Ok(version)
    } else {
        tx.query_row("SELECT version FROM banks WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .map_err(Error::sqlite("reading a bank"))
    }
}

fn check_description(d: &str) -> Result<(), Error> {
    if d.len() > MAX_DESCRIPTION_LEN {
        return Err(Error::DescriptionTooLong(d.len()));
    }
    Ok(())
}

impl SqliteStore {
    fn update_bank(
        &self,
        name: &BankName,
        sql: &str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<Bank, Error> {
        self.write(|conn| {
            let tx = begin(conn)?;
            let n = tx
                .execute(sql, params![value, name.as_str()])
                .map_err(Error::sqlite("updating a bank"))?;
            if n == 0 {
                return Err(Error::NoSuchBank(name.to_string()));
            }
            let bank = bank_row(&tx, name)?.ok_or_else(|| Error::NoSuchBank(name.to_string()))?;
            commit(tx)?;
            Ok(bank)
        })
    }

    fn remove_where(
        &self,
        bank: &BankName,
        sql: &str,
        keys: &mut dyn Iterator<Item = Vec<u8>>,
        by_id: &[EntryId],
    ) -> Result<RemoveReport, Error> {
        self.write(|conn| {
            let tx = begin(conn)?;
            let id = bank_id(&tx, bank)?;
            let version = next_version(&tx)?;
            let mut removed = 0u64;
            {
                let mut del = tx
                    .prepare_cached(sql)
                    .map_err(Error::sqlite("preparing a removal"))?;
                let mut tomb = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO bank_tombstones (bank_id, version, entry_id) VALUES (?1, ?2, ?3)",
                    )
                    .map_err(Error::sqlite("preparing a removal"))?;
                let mut gone = |entry: Option<i64>| -> Result<(), Error> {
                    if let Some(entry) = entry {
                        tomb.execute(params![id, version, entry])
                            .map_err(Error::sqlite("recording a removal"))?;
                        removed += 1;
                    }
                    Ok(())
                };
                for e in by_id {
                    let entry = del
                        .query_row(params![id, to_i64(e.0)], |r| r.get::<_, i64>(0))
                        .optional()
                        .map_err(Error::sqlite("removing an entry"))?;
                    gone(entry)?;
                }
                for key in keys {
                    let entry = del
                        .query_row(params![id, key], |r| r.get::<_, i64>(0))
                        .optional()
                        .map_err(Error::sqlite("removing an entry"))?;
                    gone(entry)?;
                }
            }
            let version =
                settle_version(&tx, id, version, removed > 0, -to_i64(removed))?;
            commit(tx)?;
            Ok(RemoveReport {
                removed,
                version: BankVersion(to_u64(version, "bank version")?),
            })
        })
    }
}

impl BankStore for SqliteStore {
    fn create_bank(&self, name: &BankName, description: &str) -> Result<Bank, Error> {
        check_description(description)?;
        self.write(|conn| {
            let tx = begin(conn)?;
            if bank_row(&tx, name)?.is_some() {
                return Err(Error::BankExists(name.to_string()));
            }
            let version = next_version(&tx)?;
            tx.execute(
                "INSERT INTO banks (name, enabled, radius, created, description, entry_count, version, history_floor)
                 VALUES (?1, 1, ?2, ?3, ?4, 0, ?5, ?5)",
                params![
                    name.as_str(),
                    MatchRadius::DEFAULT.bits(),
                    Timestamp::now().micros(),
                    description,
                    version
                ],
            )
            .map_err(Error::sqlite("creating a bank"))?;
            let bank = bank_row(&tx, name)?.ok_or_else(|| Error::NoSuchBank(name.to_string()))?;
            commit(tx)?;
            tracing::info!(bank = %name, "Bank created.");
            Ok(bank)
        })
    }

    fn banks(&self) -> Result<Vec<Bank>, Error> {
        self.read(|conn| {
            let mut s = conn
                .prepare_cached(&format!("SELECT {BANK_COLUMNS} ORDER BY name"))
                .map_err(Error::sqlite("listing banks"))?;
            let rows = s
                .query_map([], bank_from_row)
                .map_err(Error::sqlite("listing banks"))?;
            let mut out = Vec::new();
            for r in rows {
                out.push(r.map_err(Error::sqlite("listing banks"))??);
            }
            Ok(out)
        })
    }

    fn bank(&self, name: &BankName) -> Result<Option<Bank>, Error> {
        self.read(|conn| bank_row(conn, name))
    }

    fn delete_bank(&self, name: &BankName) -> Result<bool, Error> {
        let existed = self.write(|conn| {
            let tx = begin(conn)?;
            let n = tx
                .execute("DELETE FROM banks WHERE name = ?1", [name.as_str()])
                .map_err(Error::sqlite("deleting a bank"))?;
            commit(tx)?;
            Ok(n > 0)
        })?;
        if existed {
            tracing::info!(bank = %name, "Bank deleted.");
        }
        Ok(existed)
    }

    fn set_bank_enabled(&self, name: &BankName, enabled: bool) -> Result<Bank, Error> {
        self.update_bank(
            name,
            "UPDATE banks SET enabled = ?1 WHERE name = ?2",
            &enabled,
        )
    }

    fn set_bank_radius(&self, name: &BankName, radius: MatchRadius) -> Result<Bank, Error> {
        self.update_bank(
            name,
            "UPDATE banks SET radius = ?1 WHERE name = ?2",
            &radius.bits(),
        )
    }

    fn set_bank_description(&self, name: &BankName, description: &str) -> Result<Bank, Error> {
        check_description(description)?;
        self.update_bank(
            name,
            "UPDATE banks SET description = ?1 WHERE name = ?2",
            &description,
        )
    }

    fn import_entries(
        &self,
        bank: &BankName,
        entries: &mut dyn Iterator<Item = Result<NewEntry, Error>>,
    ) -> Result<AddReport, Error> {
        let report = self.write(|conn| {
            let tx = begin(conn)?;
            let id = bank_id(&tx, bank)?;
            let version = next_version(&tx)?;
            let now = Timestamp::now().micros();
            let (mut added, mut merged, mut changed) = (0u64, 0u64, 0u64);
            {
                let mut find = tx
                    .prepare_cached(
                        "SELECT id, quality, labels FROM bank_entries WHERE bank_id = ?1 AND hash = ?2",
                    )
                    .map_err(Error::sqlite("preparing an import"))?;
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO bank_entries (bank_id, hash, quality, source, labels, added, version)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .map_err(Error::sqlite("preparing an import"))?;
                let mut update = tx
                    .prepare_cached(
                        "UPDATE bank_entries SET quality = ?2, labels = ?3, version = ?4 WHERE id = ?1",
                    )
                    .map_err(Error::sqlite("preparing an import"))?;
                for item in entries {
                    let e = item?;
                    if e.source.len() > MAX_SOURCE_LEN {
                        return Err(Error::SourceTooLong(e.source.len()));
                    }
                    let labels = normalize_labels(&e.labels)?;
                    let existing = find
                        .query_row(params![id, &e.hash.0[..]], |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, i64>(1)?,
                                r.get::<_, String>(2)?,
                            ))
                        })
                        .optional()
                        .map_err(Error::sqlite("looking up a hash"))?;
                    match existing {
                        None => {
                            insert
                                .execute(params![
                                    id,
                                    &e.hash.0[..],
                                    e.quality.get(),
                                    e.source,
                                    join_labels(&labels),
                                    now,
                                    version
                                ])
                                .map_err(Error::sqlite("adding an entry"))?;
                            added += 1;
                        }
                        Some((entry, quality, old_labels)) => {
                            merged += 1;
                            let old = split_labels(&old_labels);
                            let new_labels = merge_labels(&old, &labels)?;
                            let new_quality = quality.max(i64::from(e.quality.get()));
                            if new_labels != old || new_quality != quality {
                                update
                                    .execute(params![
                                        entry,
                                        new_quality,
                                        join_labels(&new_labels),
                                        version
                                    ])
                                    .map_err(Error::sqlite("merging an entry"))?;
                                changed += 1;
                            }
                        }
                    }
                }
            }
            let version =
                settle_version(&tx, id, version, added + changed > 0, to_i64(added))?;
            commit(tx)?;
            Ok(AddReport {
                added,
                merged,
                version: BankVersion(to_u64(version, "bank version")?),
            })
        })?;
        tracing::info!(%bank, added = report.added, merged = report.merged, version = %report.version, "Entries imported.");
        Ok(report)
    }

    fn remove_entries(&self, bank: &BankName, ids: &[EntryId]) -> Result<RemoveReport, Error> {
        self.remove_where(
            bank,
            "DELETE FROM bank_entries WHERE bank_id = ?1 AND id = ?2 RETURNING id",
            &mut std::iter::empty(),
            ids,
        )
    }

    fn remove_hashes(&self, bank: &BankName, hashes: &[PdqHash]) -> Result<RemoveReport, Error> {
        self.remove_where(
            bank,
            "DELETE FROM bank_entries WHERE bank_id = ?1 AND hash = ?2 RETURNING id",
            &mut hashes.iter().map(|h| h.0.to_vec()),
            &[],
        )
    }

    fn entry_by_hash(&self, bank: &BankName, hash: &PdqHash) -> Result<Option<BankEntry>, Error> {
        self.read(|conn| {
            let id = bank_id(conn, bank)?;
            conn.prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} WHERE bank_id = ?1 AND hash = ?2"
            ))
            .and_then(|mut s| {
                s.query_row(params![id, &hash.0[..]], entry_from_row)
                    .optional()
            })
            .map_err(Error::sqlite("looking up a hash"))?
            .transpose()
        })
    }

    fn entries_by_id(&self, bank: &BankName, ids: &[EntryId]) -> Result<Vec<BankEntry>, Error> {
        self.read(|conn| {
            let tx = conn
                .transaction()
                .map_err(Error::sqlite("starting a read"))?;
            let id = bank_id(&tx, bank)?;
            let mut sorted: Vec<EntryId> = ids.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            let mut s = tx
                .prepare_cached(&format!(
                    "SELECT {ENTRY_COLUMNS} WHERE bank_id = ?1 AND id = ?2"
                ))
                .map_err(Error::sqlite("reading entries"))?;
            let mut out = Vec::with_capacity(sorted.len());
            for e in sorted {
                if let Some(r) = s
                    .query_row(params![id, to_i64(e.0)], entry_from_row)
                    .optional()
                    .map_err(Error::sqlite("reading entries"))?
                {
                    out.push(r?);
                }
            }
            Ok(out)
        })
    }

    fn entries_page(
        &self,
        bank: &BankName,
        after: Option<EntryId>,
        limit: usize,
    ) -> Result<Vec<BankEntry>, Error> {
        self.read(|conn| {
            let id = bank_id(conn, bank)?;
            let after = after.map_or(-1, |e| to_i64(e.0));
            let mut s = conn
                .prepare_cached(&format!(
                    "SELECT {ENTRY_COLUMNS} WHERE bank_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
                ))
                .map_err(Error::sqlite("reading entries"))?;
            let rows = s
                .query_map(params![id, after, to_i64(limit as u64)], entry_from_row)
                .map_err(Error::sqlite("reading entries"))?;
            let mut out = Vec::with_capacity(limit.min(65_536));
            for r in rows {
                out.push(r.map_err(Error::sqlite("reading entries"))??);
            }
            Ok(out)
        })
    }

    fn scan_entries(
        &self,
        bank: &BankName,
        f: &mut dyn FnMut(BankEntry) -> ControlFlow<()>,
    ) -> Result<BankVersion, Error> {
        self.read(|conn| {
            // One read transaction pins a WAL snapshot, so the version and the
            // entries agree even while a writer commits.
            let tx = conn
                .transaction()
                .map_err(Error::sqlite("starting a read"))?;
            let b = bank_row(&tx, bank)?.ok_or_else(|| Error::NoSuchBank(bank.to_string()))?;
            let id = bank_id(&tx, bank)?;
            let mut s = tx
                .prepare_cached(&format!(
                    "SELECT {ENTRY_COLUMNS} WHERE bank_id = ?1 ORDER BY id"
                ))
                .map_err(Error::sqlite("scanning entries"))?;
            let mut rows = s.query([id]).map_err(Error::sqlite("scanning entries"))?;
            while let Some(r) = rows.next().map_err(Error::sqlite("scanning entries"))? {
                let e = entry_from_row(r).map_err(Error::sqlite("scanning entries"))??;
                if f(e).is_break() {
                    break;
                }
            }
            Ok(b.version)
        })
    }

    fn changes_since(&self, bank: &BankName, version: BankVersion) -> Result<BankChanges, Error> {
        self.read(|conn| {
            let tx = conn
                .transaction()
                .map_err(Error::sqlite("starting a read"))?;
            let (id, current, floor): (i64, i64, i64) = tx
                .query_row(
                    "SELECT id, version, history_floor FROM banks WHERE name = ?1",
                    [bank.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(Error::sqlite("reading a bank"))?
                .ok_or_else(|| Error::NoSuchBank(bank.to_string()))?;
            let current = BankVersion(to_u64(current, "bank version")?);
            let floor = BankVersion(to_u64(floor, "history floor")?);
            if version < floor || version > current {
                return Ok(BankChanges::Rebuild { version: current });
            }
            let v = to_i64(version.0);
            let mut upserted = Vec::new();
            {
                let mut s = tx
                    .prepare_cached(&format!(
                        "SELECT {ENTRY_COLUMNS} WHERE bank_id = ?1 AND version > ?2 ORDER BY id"
                    ))
                    .map_err(Error::sqlite("reading changes"))?;
                let rows = s
                    .query_map(params![id, v], entry_from_row)
                    .map_err(Error::sqlite("reading changes"))?;
                for r in rows {
                    upserted.push(r.map_err(Error::sqlite("reading changes"))??);
                }
            }
            let mut removed = Vec::new();
            {
                let mut s = tx
                    .prepare_cached(
                        "SELECT entry_id FROM bank_tombstones WHERE bank_id = ?1 AND version > ?2",
                    )
                    .map_err(Error::sqlite("reading changes"))?;
                let rows = s
                    .query_map(params![id, v], |r| r.get::<_, i64>(0))
                    .map_err(Error::sqlite("reading changes"))?;
                for r in rows {
                    let e = r.map_err(Error::sqlite("reading changes"))?;
                    removed.push(EntryId(to_u64(e, "entry id")?));
                }
            }
            removed.sort_unstable();
            removed.dedup();
            Ok(BankChanges::Delta {
                from: version,
                to: current,
                upserted,
                removed,
            })
        })
    }

    fn prune_history(&self, bank: &BankName, version: BankVersion) -> Result<u64, Error> {
        self.write(|conn| {
            let tx = begin(conn)?;
            let id = bank_id(&tx, bank)?;
            let v = to_i64(version.0);
            let n = tx
                .execute(
                    "DELETE FROM bank_tombstones WHERE bank_id = ?1 AND version <= ?2",
                    params![id, v],
                )
                .map_err(Error::sqlite("pruning history"))?;
            tx.execute(
                "UPDATE banks SET history_floor = max(history_floor, min(?2, version)) WHERE id = ?1",
                params![id, v],
            )
            .map_err(Error::sqlite("pruning history"))?;
            commit(tx)?;
            Ok(n as u64)
        })
    }
}
