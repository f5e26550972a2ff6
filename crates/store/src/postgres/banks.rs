//! [`BankStore`] over PostgreSQL.

use std::collections::HashMap;
use std::ops::ControlFlow;

use postgres::types::ToSql;
use postgres::{GenericClient, Row, Transaction};
use takedown_event::Timestamp;
use takedown_pdq::{PdqHash, Quality};

use super::{PgStore, col, snapshot, to_i64, to_u64};
use crate::Error;
use crate::bank::{
    AddReport, Bank, BankChanges, BankEntry, BankName, BankStore, BankVersion, EntryId,
    MAX_DESCRIPTION_LEN, MAX_SOURCE_LEN, MatchRadius, NewEntry, RemoveReport, merge_labels,
    normalize_labels,
};

const BANK_COLUMNS: &str = "name, enabled, radius, created, description, entry_count, version";
const ENTRY_COLUMNS: &str = "id, hash, quality, source, labels, added";

/// Entries sent to the server per statement during imports and removals.
const CHUNK: usize = 1024;

/// Rows fetched per round trip while streaming a scan.
const SCAN_BATCH: i32 = 1024;

fn bank_from_row(r: &Row) -> Result<Bank, Error> {
    let name: String = col(r, 0)?;
    let radius: i32 = col(r, 2)?;
    Ok(Bank {
        name: name
            .parse()
            .map_err(|_| Error::Corrupt(format!("bank name {name:?}")))?,
        enabled: col(r, 1)?,
        radius: MatchRadius::new(i64::from(radius))
            .map_err(|_| Error::Corrupt(format!("radius {radius}")))?,
        created: Timestamp(col(r, 3)?),
        description: col(r, 4)?,
        entries: to_u64(col(r, 5)?, "entry count")?,
        version: BankVersion(to_u64(col(r, 6)?, "bank version")?),
    })
}

fn entry_from_row(r: &Row) -> Result<BankEntry, Error> {
    let hash: &[u8] = col(r, 1)?;
    let quality: i16 = col(r, 2)?;
    let bytes: [u8; 32] = hash
        .try_into()
        .map_err(|_| Error::Corrupt(format!("hash of {} bytes", hash.len())))?;
    Ok(BankEntry {
        id: EntryId(to_u64(col(r, 0)?, "entry id")?),
        hash: PdqHash(bytes),
        quality: Quality::new(i64::from(quality))
            .map_err(|_| Error::Corrupt(format!("quality {quality}")))?,
        source: col(r, 3)?,
        labels: col(r, 4)?,
        added: Timestamp(col(r, 5)?),
    })
}

fn bank_row(c: &mut impl GenericClient, name: &BankName) -> Result<Option<Bank>, Error> {
    c.query_opt(
        &format!("SELECT {BANK_COLUMNS} FROM banks WHERE name = $1"),
        &[&name.as_str()],
    )
    .map_err(Error::postgres("reading a bank"))?
    .as_ref()
    .map(bank_from_row)
    .transpose()
}

/// The bank's row id; inside a write, also locks the bank against a concurrent delete.
fn bank_id(c: &mut impl GenericClient, name: &BankName, lock: bool) -> Result<i64, Error> {
    let sql = if lock {
        "SELECT id FROM banks WHERE name = $1 FOR UPDATE"
    } else {
        "SELECT id FROM banks WHERE name = $1"
    };
    let row = c
        .query_opt(sql, &[&name.as_str()])
        .map_err(Error::postgres("looking up a bank"))?
        .ok_or_else(|| Error::NoSuchBank(name.to_string()))?;
    col(&row, 0)
}

/// Allocates the next store-wide version. The counter's row stays locked
/// until the transaction ends, so versions commit in the order they are handed out.
fn next_version(tx: &mut Transaction<'_>) -> Result<i64, Error> {
    let row = tx
        .query_one(
            "UPDATE meta SET value = value + 1 WHERE key = 'version_seq' RETURNING value",
            &[],
        )
        .map_err(Error::postgres("allocating a bank version"))?;
    col(&row, 0)
}

/// Ends a change to bank `id`: when it `changed`, stamps the bank with the
/// new `version` and moves its entry count by `count_delta`; otherwise leaves
/// the bank alone. Returns the bank's version either way.
fn settle_version(
    tx: &mut Transaction<'_>,
    id: i64,
    version: i64,
    changed: bool,
    count_delta: i64,
) -> Result<u64, Error> {
    let row = if changed {
        tx.query_one(
            "UPDATE banks SET version = $1, entry_count = entry_count + $2 WHERE id = $3
             RETURNING version",
            &[&version, &count_delta, &id],
        )
    } else {
        tx.query_one("SELECT version FROM banks WHERE id = $1", &[&id])
    }
    .map_err(Error::postgres("updating a bank"))?;
    to_u64(col(&row, 0)?, "bank version")
}

fn check_description(d: &str) -> Result<(), Error> {
    if d.len() > MAX_DESCRIPTION_LEN {
        return Err(Error::DescriptionTooLong(d.len()));
    }
    Ok(())
}

fn commit(tx: Transaction<'_>) -> Result<(), Error> {
    tx.commit().map_err(Error::postgres("committing"))
}

/// Labels travel to the server joined by newlines, which labels never hold,
/// so a list of label lists fits a one-dimensional array.
fn join_labels(labels: &[String]) -> String {
    labels.join("\n")
}

/// What an import knows about one hash of the current chunk.
enum Slot {
    /// Already in the bank: the stored quality and labels, and the merged ones.
    Stored {
        id: i64,
        quality: i16,
        labels: Vec<String>,
        new_quality: i16,
        new_labels: Vec<String>,
    },
    /// New in this import: its place in the chunk's insert list.
    New(usize),
}

/// A hash new to the bank, to insert.
struct Fresh {
    hash: Vec<u8>,
    quality: i16,
    source: String,
    labels: Vec<String>,
}

/// Totals of an import so far.
#[derive(Default)]
struct Tally {
    added: u64,
    merged: u64,
    changed: u64,
}

/// Folds one chunk of validated entries into the bank.
fn import_chunk(
    tx: &mut Transaction<'_>,
    bank: i64,
    version: i64,
    now: i64,
    chunk: &mut Vec<(NewEntry, Vec<String>)>,
    tally: &mut Tally,
) -> Result<(), Error> {
    if chunk.is_empty() {
        return Ok(());
    }
    let hashes: Vec<&[u8]> = chunk.iter().map(|(e, _)| &e.hash.0[..]).collect();
    let mut slots: HashMap<[u8; 32], Slot> = HashMap::with_capacity(chunk.len());
    for r in tx
        .query(
            "SELECT id, hash, quality, labels FROM bank_entries
             WHERE bank_id = $1 AND hash = ANY($2)",
            &[&bank, &hashes],
        )
        .map_err(Error::postgres("looking up hashes"))?
    {
        let hash: &[u8] = col(&r, 1)?;
        let hash: [u8; 32] = hash
            .try_into()
            .map_err(|_| Error::Corrupt(format!("hash of {} bytes", hash.len())))?;
        let quality: i16 = col(&r, 2)?;
        let labels: Vec<String> = col(&r, 3)?;
        slots.insert(
            hash,
            Slot::Stored {
                id: col(&r, 0)?,
                quality,
                new_quality: quality,
                new_labels: labels.clone(),
                labels,
            },
        );
    }
    let mut fresh: Vec<Fresh> = Vec::new();
    for (e, labels) in chunk.drain(..) {
        let quality = i16::from(e.quality.get());
        match slots.get_mut(&e.hash.0) {
            None => {
                slots.insert(e.hash.0, Slot::New(fresh.len()));
                fresh.push(Fresh {
                    hash: e.hash.0.to_vec(),
                    quality,
                    source: e.source,
                    labels,
                });
                tally.added += 1;
            }
            Some(Slot::New(i)) => {
                tally.merged += 1;
                if let Some(f) = fresh.get_mut(*i) {
                    f.labels = merge_labels(&f.labels, &labels)?;
                    f.quality = f.quality.max(quality);
                }
            }
            Some(Slot::Stored {
                new_quality,
                new_labels,
                ..
            }) => {
                tally.merged += 1;
                *new_labels = merge_labels(new_labels, &labels)?;
                *new_quality = (*new_quality).max(quality);
            }
        }
    }
    if !fresh.is_empty() {
        let h: Vec<&[u8]> = fresh.iter().map(|f| &f.hash[..]).collect();
        let q: Vec<i16> = fresh.iter().map(|f| f.quality).collect();
        let s: Vec<&str> = fresh.iter().map(|f| f.source.as_str()).collect();
        let l: Vec<String> = fresh.iter().map(|f| join_labels(&f.labels)).collect();
        // Ids are handed out in the order the entries arrived.
        tx.execute(
            "INSERT INTO bank_entries (bank_id, hash, quality, source, labels, added, version)
             SELECT $1, t.hash, t.quality, t.source, string_to_array(t.labels, E'\\n'), $6, $7
             FROM unnest($2::bytea[], $3::int2[], $4::text[], $5::text[])
                 WITH ORDINALITY AS t (hash, quality, source, labels, n)
             ORDER BY t.n",
            &[&bank, &h, &q, &s, &l, &now, &version],
        )
        .map_err(Error::postgres("adding entries"))?;
    }
    let (mut ids, mut qs, mut ls) = (Vec::new(), Vec::new(), Vec::new());
    for slot in slots.values() {
        if let Slot::Stored {
            id,
            quality,
            labels,
            new_quality,
            new_labels,
        } = slot
            && (quality != new_quality || labels != new_labels)
        {
            ids.push(*id);
            qs.push(*new_quality);
            ls.push(join_labels(new_labels));
        }
    }
    if !ids.is_empty() {
        tally.changed += ids.len() as u64;
        tx.execute(
            "UPDATE bank_entries AS e
             SET quality = t.quality, labels = string_to_array(t.labels, E'\\n'), version = $4
             FROM unnest($1::int8[], $2::int2[], $3::text[]) AS t (id, quality, labels)
             WHERE e.id = t.id",
            &[&ids, &qs, &ls, &version],
        )
        .map_err(Error::postgres("merging entries"))?;
    }
    Ok(())
}

/// What a removal matches entries by.
enum Keys<'a> {
    Ids(&'a [EntryId]),
    Hashes(&'a [PdqHash]),
}

impl PgStore {
    fn update_bank(
        &self,
        name: &BankName,
        set: &str,
        value: &(dyn ToSql + Sync),
    ) -> Result<Bank, Error> {
        self.with(|c| {
            let row = c
                .query_opt(
                    &format!(
                        "UPDATE banks SET {set} = $1 WHERE name = $2 RETURNING {BANK_COLUMNS}"
                    ),
                    &[value, &name.as_str()],
                )
                .map_err(Error::postgres("updating a bank"))?
                .ok_or_else(|| Error::NoSuchBank(name.to_string()))?;
            bank_from_row(&row)
        })
    }

    fn remove(&self, bank: &BankName, keys: Keys<'_>) -> Result<RemoveReport, Error> {
        self.with(|c| {
            let mut tx = c
                .transaction()
                .map_err(Error::postgres("starting a write transaction"))?;
            let id = bank_id(&mut tx, bank, true)?;
            let version = next_version(&mut tx)?;
            let mut removed = 0u64;
            // Deletes the entries whose `column` is one of `values` and
            // records a tombstone for each.
            let mut delete = |tx: &mut Transaction<'_>,
                              column: &str,
                              values: &(dyn ToSql + Sync)|
             -> Result<(), Error> {
                let rows = tx
                    .query(
                        &format!(
                            "DELETE FROM bank_entries WHERE bank_id = $1 AND {column} = ANY($2)
                             RETURNING id"
                        ),
                        &[&id, values],
                    )
                    .map_err(Error::postgres("removing entries"))?;
                let ids: Vec<i64> = rows.iter().map(|r| col(r, 0)).collect::<Result<_, _>>()?;
                if ids.is_empty() {
                    return Ok(());
                }
                removed += ids.len() as u64;
                tx.execute(
                    "INSERT INTO bank_tombstones (bank_id, version, entry_id)
                     SELECT $1, $2, unnest($3::int8[]) ON CONFLICT DO NOTHING",
                    &[&id, &version, &ids],
                )
                .map_err(Error::postgres("recording a removal"))?;
                Ok(())
            };
            match keys {
                Keys::Ids(all) => {
                    for chunk in all.chunks(CHUNK) {
                        let ids: Vec<i64> = chunk.iter().map(|e| to_i64(e.0)).collect();
                        delete(&mut tx, "id", &ids)?;
                    }
                }
                Keys::Hashes(all) => {
                    for chunk in all.chunks(CHUNK) {
                        let hashes: Vec<&[u8]> = chunk.iter().map(|h| &h.0[..]).collect();
                        delete(&mut tx, "hash", &hashes)?;
                    }
                }
            }
            let version = settle_version(&mut tx, id, version, removed > 0, -to_i64(removed))?;
            commit(tx)?;
            Ok(RemoveReport {
                removed,
                version: BankVersion(version),
            })
        })
    }
}

impl BankStore for PgStore {
    fn create_bank(&self, name: &BankName, description: &str) -> Result<Bank, Error> {
        check_description(description)?;
        let bank = self.with(|c| {
            let mut tx = c
                .transaction()
                .map_err(Error::postgres("starting a write transaction"))?;
            let version = next_version(&mut tx)?;
            // The version lock serialises bank creation, so this check
            // cannot race another creation of the same name.
            if bank_row(&mut tx, name)?.is_some() {
                return Err(Error::BankExists(name.to_string()));
            }
            let radius = i32::try_from(MatchRadius::DEFAULT.bits()).unwrap_or(i32::MAX);
            let row = tx
                .query_one(
                    &format!(
                        "INSERT INTO banks (name, enabled, radius, created, description,
                             entry_count, version, history_floor)
                         VALUES ($1, true, $2, $3, $4, 0, $5, $5)
                         RETURNING {BANK_COLUMNS}"
                    ),
                    &[
                        &name.as_str(),
                        &radius,
                        &Timestamp::now().micros(),
                        &description,
                        &version,
                    ],
                )
                .map_err(Error::postgres("creating a bank"))?;
            let bank = bank_from_row(&row)?;
            commit(tx)?;
            Ok(bank)
        })?;
        tracing::info!(bank = %name, "Bank created.");
        Ok(bank)
    }

    fn banks(&self) -> Result<Vec<Bank>, Error> {
        self.with(|c| {
            c.query(
                &format!("SELECT {BANK_COLUMNS} FROM banks ORDER BY name"),
                &[],
            )
            .map_err(Error::postgres("listing banks"))?
            .iter()
            .map(bank_from_row)
            .collect()
        })
    }

    fn bank(&self, name: &BankName) -> Result<Option<Bank>, Error> {
        self.with(|c| bank_row(c, name))
    }

    fn delete_bank(&self, name: &BankName) -> Result<bool, Error> {
        let existed = self.with(|c| {
            c.execute("DELETE FROM banks WHERE name = $1", &[&name.as_str()])
                .map_err(Error::postgres("deleting a bank"))
        })? > 0;
        if existed {
            tracing::info!(bank = %name, "Bank deleted.");
        }
        Ok(existed)
    }

    fn set_bank_enabled(&self, name: &BankName, enabled: bool) -> Result<Bank, Error> {
        self.update_bank(name, "enabled", &enabled)
    }

    fn set_bank_radius(&self, name: &BankName, radius: MatchRadius) -> Result<Bank, Error> {
        let bits = i32::try_from(radius.bits()).unwrap_or(i32::MAX);
        self.update_bank(name, "radius", &bits)
    }

    fn set_bank_description(&self, name: &BankName, description: &str) -> Result<Bank, Error> {
        check_description(description)?;
        self.update_bank(name, "description", &description)
    }

    fn import_entries(
        &self,
        bank: &BankName,
        entries: &mut dyn Iterator<Item = Result<NewEntry, Error>>,
    ) -> Result<AddReport, Error> {
        let report = self.with(|c| {
            let mut tx = c
                .transaction()
                .map_err(Error::postgres("starting a write transaction"))?;
            let id = bank_id(&mut tx, bank, true)?;
            let version = next_version(&mut tx)?;
            let now = Timestamp::now().micros();
            let mut tally = Tally::default();
            let mut chunk = Vec::with_capacity(CHUNK);
            // Any error returns before the commit, and the dropped
            // transaction rolls every chunk back.
            for item in entries {
                let e = item?;
                if e.source.len() > MAX_SOURCE_LEN {
                    return Err(Error::SourceTooLong(e.source.len()));
                }
                let labels = normalize_labels(&e.labels)?;
                chunk.push((e, labels));
                if chunk.len() == CHUNK {
                    import_chunk(&mut tx, id, version, now, &mut chunk, &mut tally)?;
                }
            }
            import_chunk(&mut tx, id, version, now, &mut chunk, &mut tally)?;
            let changed = tally.added + tally.changed > 0;
            let version = settle_version(&mut tx, id, version, changed, to_i64(tally.added))?;
            commit(tx)?;
            Ok(AddReport {
                added: tally.added,
                merged: tally.merged,
                version: BankVersion(version),
            })
        })?;
        tracing::info!(%bank, added = report.added, merged = report.merged, version = %report.version, "Entries imported.");
        Ok(report)
    }

    fn remove_entries(&self, bank: &BankName, ids: &[EntryId]) -> Result<RemoveReport, Error> {
        self.remove(bank, Keys::Ids(ids))
    }

    fn remove_hashes(&self, bank: &BankName, hashes: &[PdqHash]) -> Result<RemoveReport, Error> {
        self.remove(bank, Keys::Hashes(hashes))
    }

    fn entry_by_hash(&self, bank: &BankName, hash: &PdqHash) -> Result<Option<BankEntry>, Error> {
        self.with(|c| {
            let id = bank_id(c, bank, false)?;
            c.query_opt(
                &format!(
                    "SELECT {ENTRY_COLUMNS} FROM bank_entries WHERE bank_id = $1 AND hash = $2"
                ),
                &[&id, &&hash.0[..]],
            )
            .map_err(Error::postgres("looking up a hash"))?
            .as_ref()
            .map(entry_from_row)
            .transpose()
        })
    }

    fn entries_by_id(&self, bank: &BankName, ids: &[EntryId]) -> Result<Vec<BankEntry>, Error> {
        self.with(|c| {
            let mut tx = snapshot(c)?;
            let id = bank_id(&mut tx, bank, false)?;
            let mut sorted: Vec<i64> = ids.iter().map(|e| to_i64(e.0)).collect();
            sorted.sort_unstable();
            sorted.dedup();
            let mut out = Vec::with_capacity(sorted.len().min(65_536));
            for chunk in sorted.chunks(CHUNK) {
                for r in tx
                    .query(
                        &format!(
                            "SELECT {ENTRY_COLUMNS} FROM bank_entries
                             WHERE bank_id = $1 AND id = ANY($2) ORDER BY id"
                        ),
                        &[&id, &chunk],
                    )
                    .map_err(Error::postgres("reading entries"))?
                {
                    out.push(entry_from_row(&r)?);
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
        self.with(|c| {
            let id = bank_id(c, bank, false)?;
            let after = after.map_or(-1, |e| to_i64(e.0));
            let limit = to_i64(limit as u64);
            c.query(
                &format!(
                    "SELECT {ENTRY_COLUMNS} FROM bank_entries
                     WHERE bank_id = $1 AND id > $2 ORDER BY id LIMIT $3"
                ),
                &[&id, &after, &limit],
            )
            .map_err(Error::postgres("reading entries"))?
            .iter()
            .map(entry_from_row)
            .collect()
        })
    }

    fn scan_entries(
        &self,
        bank: &BankName,
        f: &mut dyn FnMut(BankEntry) -> ControlFlow<()>,
    ) -> Result<BankVersion, Error> {
        self.with(|c| {
            // One snapshot, so the version and the entries agree even while
            // a writer commits.
            let mut tx = snapshot(c)?;
            let b = bank_row(&mut tx, bank)?.ok_or_else(|| Error::NoSuchBank(bank.to_string()))?;
            let id = bank_id(&mut tx, bank, false)?;
            let portal = tx
                .bind(
                    &format!(
                        "SELECT {ENTRY_COLUMNS} FROM bank_entries WHERE bank_id = $1 ORDER BY id"
                    ),
                    &[&id],
                )
                .map_err(Error::postgres("scanning entries"))?;
            loop {
                let rows = tx
                    .query_portal(&portal, SCAN_BATCH)
                    .map_err(Error::postgres("scanning entries"))?;
                let last = rows.len() < SCAN_BATCH as usize;
                for r in &rows {
                    if f(entry_from_row(r)?).is_break() {
                        return Ok(b.version);
                    }
                }
                if last {
                    return Ok(b.version);
                }
            }
        })
    }

    fn changes_since(&self, bank: &BankName, version: BankVersion) -> Result<BankChanges, Error> {
        self.with(|c| {
            let mut tx = snapshot(c)?;
            let row = tx
                .query_opt(
                    "SELECT id, version, history_floor FROM banks WHERE name = $1",
                    &[&bank.as_str()],
                )
                .map_err(Error::postgres("reading a bank"))?
                .ok_or_else(|| Error::NoSuchBank(bank.to_string()))?;
            let id: i64 = col(&row, 0)?;
            let current = BankVersion(to_u64(col(&row, 1)?, "bank version")?);
            let floor = BankVersion(to_u64(col(&row, 2)?, "history floor")?);
            if version < floor || version > current {
                return Ok(BankChanges::Rebuild { version: current });
            }
            let v = to_i64(version.0);
            let upserted = tx
                .query(
                    &format!(
                        "SELECT {ENTRY_COLUMNS} FROM bank_entries
                         WHERE bank_id = $1 AND version > $2 ORDER BY id"
                    ),
                    &[&id, &v],
                )
                .map_err(Error::postgres("reading changes"))?
                .iter()
                .map(entry_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            let removed = tx
                .query(
                    "SELECT DISTINCT entry_id FROM bank_tombstones
                     WHERE bank_id = $1 AND version > $2 ORDER BY entry_id",
                    &[&id, &v],
                )
                .map_err(Error::postgres("reading changes"))?
                .iter()
                .map(|r| Ok(EntryId(to_u64(col(r, 0)?, "entry id")?)))
                .collect::<Result<Vec<_>, Error>>()?;
            Ok(BankChanges::Delta {
                from: version,
                to: current,
                upserted,
                removed,
            })
        })
    }

    fn prune_history(&self, bank: &BankName, version: BankVersion) -> Result<u64, Error> {
        self.with(|c| {
            let mut tx = c
                .transaction()
                .map_err(Error::postgres("starting a write transaction"))?;
            let id = bank_id(&mut tx, bank, true)?;
            let v = to_i64(version.0);
            let n = tx
                .execute(
                    "DELETE FROM bank_tombstones WHERE bank_id = $1 AND version <= $2",
                    &[&id, &v],
                )
                .map_err(Error::postgres("pruning history"))?;
            tx.execute(
                "UPDATE banks SET history_floor = GREATEST(history_floor, LEAST($2, version))
                 WHERE id = $1",
                &[&id, &v],
            )
            .map_err(Error::postgres("pruning history"))?;
            commit(tx)?;
            Ok(n)
        })
    }
}
