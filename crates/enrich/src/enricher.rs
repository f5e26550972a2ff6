//! The combined enricher: an optional AS source and an optional country
//! source, loaded from files and answering one address at a time.

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ipnet::IpNet;
use takedown_event::{Asn, CountryCode, Network};
use tracing::{debug, info, warn};

use crate::cache::{self, CacheUse};
use crate::csvfmt::{self, CsvKind, Sinks};
use crate::mmdb::Mmdb;
use crate::{Error, NameId, Names, PrefixTable, PrefixTableBuilder};

/// The directory under the data directory that enrichment files live in.
pub const ENRICH_SUBDIR: &str = "enrich";

/// What the AS table stores per range: the AS number and its interned name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AsValue {
    /// The origin AS.
    pub asn: Asn,
    /// The AS name in the enricher's [`Names`] table ([`NameId::NONE`]: no name).
    pub name: NameId,
}

/// Which kinds of data a loaded source contributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// AS numbers and names.
    Asn,
    /// Countries.
    Country,
    /// Both (an MMDB file whose records carry AS and country fields).
    Both,
}

/// One loaded file, for logs and status output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The file name (or the name given for an in-memory source).
    pub name: String,
    /// `"mmdb"` or `"csv"`.
    pub format: &'static str,
    /// What the file contributed.
    pub kind: SourceKind,
    /// Ranges or networks added to the tables.
    pub ranges: usize,
    /// The MMDB `database_type`, for MMDB files.
    pub database_type: Option<String>,
}

/// Collects sources, then builds an [`Enricher`].
///
/// Sources may overlap: per address, the most specific range wins, and
/// between equally specific ranges the source added first wins.
#[derive(Debug, Default)]
pub struct EnricherBuilder {
    asn: PrefixTableBuilder<AsValue>,
    names: Names,
    country: PrefixTableBuilder<CountryCode>,
    sources: Vec<Source>,
}

impl EnricherBuilder {
    /// A builder with no sources.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a range CSV. `kind` forces the layout; `None` infers it from the
    /// column count (4 or more: AS; 3: country). `name` labels errors, and a
    /// name containing `ipv6` makes decimal ends IPv6.
    pub fn add_csv<R: Read>(
        &mut self,
        reader: R,
        name: &str,
        kind: Option<CsvKind>,
    ) -> Result<&Source, Error> {
        let sinks = Sinks {
            asn: &mut self.asn,
            names: &mut self.names,
            country: &mut self.country,
        };
        let (kind, ranges) = csvfmt::load(reader, name, kind, sinks)?;
        Ok(self.push_source(Source {
            name: name.to_owned(),
            format: "csv",
            kind: match kind {
                CsvKind::Asn => SourceKind::Asn,
                CsvKind::Country => SourceKind::Country,
            },
            ranges,
            database_type: None,
        }))
    }

    /// Adds an MMDB file's networks. The `database_type` picks what is taken:
    /// one naming `ASN` contributes AS data only, one naming `Country` or
    /// `City` contributes countries only, and any other contributes every
    /// field its records carry.
    pub fn add_mmdb(&mut self, bytes: &[u8], name: &str) -> Result<&Source, Error> {
        let db = Mmdb::parse(bytes)?;
        let dbtype = db.metadata().database_type.clone();
        let lower = dbtype.to_ascii_lowercase();
        let (want_asn, want_cc) = if lower.contains("asn") {
            (true, false)
        } else if lower.contains("country") || lower.contains("city") {
            (false, true)
        } else {
            (true, true)
        };
        let (mut n_asn, mut n_cc) = (0usize, 0usize);
        let mut failure = None;
        let asn_table = &mut self.asn;
        let cc_table = &mut self.country;
        let names = &mut self.names;
        db.networks(|net, rec| {
            if failure.is_some() {
                return;
            }
            if let (true, Some(asn)) = (want_asn, rec.asn) {
                let name = rec.as_name.map_or(NameId::NONE, |s| names.intern(s));
                match asn_table.insert_net(net, AsValue { asn, name }) {
                    Ok(()) => n_asn += 1,
                    Err(e) => failure = Some(e),
                }
            }
            if let (true, Some(cc)) = (want_cc, rec.country) {
                match cc_table.insert_net(net, cc) {
                    Ok(()) => n_cc += 1,
                    Err(e) => failure = Some(e),
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        let kind = match (n_asn > 0, n_cc > 0) {
            (true, true) => SourceKind::Both,
            (false, true) => SourceKind::Country,
            (true, false) => SourceKind::Asn,
            (false, false) if want_cc && !want_asn => SourceKind::Country,
            (false, false) => SourceKind::Asn,
        };
        Ok(self.push_source(Source {
            name: name.to_owned(),
            format: "mmdb",
            kind,
            ranges: n_asn + n_cc,
            database_type: Some(dbtype),
        }))
    }

    /// Adds one file by extension: `.mmdb` or `.csv` (case-insensitive).
    /// Returns `None` for other files, which are left alone.
    pub fn add_file(&mut self, path: &Path) -> Result<Option<&Source>, Error> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("mmdb") => {
                let bytes = std::fs::read(path).map_err(io)?;
                self.add_mmdb(&bytes, &name).map(Some)
            }
            Some("csv") => {
                let file = std::fs::File::open(path).map_err(io)?;
                self.add_csv(std::io::BufReader::new(file), &name, None)
                    .map(Some)
            }
            _ => {
                debug!(file = %path.display(), "Not an enrichment file; skipped.");
                Ok(None)
            }
        }
    }

    /// Adds every `.mmdb` and `.csv` file directly in `dir`, in file-name
    /// order. Returns the number of files loaded.
    pub fn add_dir(&mut self, dir: &Path) -> Result<usize, Error> {
        let files = cache::source_files(dir).map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
        self.add_files(&files)
    }

    fn add_files(&mut self, files: &[PathBuf]) -> Result<usize, Error> {
        let mut loaded = 0;
        for p in files {
            if self.add_file(p)?.is_some() {
                loaded += 1;
            }
        }
        Ok(loaded)
    }

    fn push_source(&mut self, s: Source) -> &Source {
        info!(
            file = %s.name,
            format = s.format,
            kind = ?s.kind,
            ranges = s.ranges,
            database_type = s.database_type.as_deref().unwrap_or(""),
            "Enrichment source loaded."
        );
        self.sources.push(s);
        let last = self.sources.len() - 1;
        &self.sources[last]
    }

    /// Flattens everything added into the lookup tables.
    pub fn build(self) -> Enricher {
        let mut names = self.names;
        names.freeze();
        Enricher {
            asn: (!self.asn.is_empty()).then(|| self.asn.build()),
            country: (!self.country.is_empty()).then(|| self.country.build()),
            names,
            sources: self.sources,
            cache: CacheUse::NotUsed,
        }
    }
}

/// The result of one lookup, borrowing the AS name from the enricher.
///
/// `Copy` and allocation-free, for the per-event hot path. The AS name is
/// kept as an interned id and resolved by [`Enrichment::as_name`] only when
/// asked for, so lookups that need just the number never touch the name
/// text. [`Enrichment::to_network`] builds the owned [`Network`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Enrichment<'a> {
    /// The AS source's matched prefix (the largest CIDR block inside the
    /// matched range that holds the address).
    pub prefix: Option<IpNet>,
    /// The origin AS.
    pub asn: Option<Asn>,
    /// The AS name's id in the enricher's name table.
    pub as_name_id: NameId,
    /// The country.
    pub country: Option<CountryCode>,
    names: Option<&'a Names>,
}

impl<'a> Enrichment<'a> {
    /// The AS name, borrowed from the enricher.
    #[inline]
    pub fn as_name(&self) -> Option<&'a str> {
        self.names.and_then(|n| n.name(self.as_name_id))
    }

    /// The owned form attached to events.
    pub fn to_network(&self) -> Network {
        Network {
            prefix: self.prefix,
            asn: self.asn,
            as_name: self.as_name().map(str::to_owned),
            country: self.country,
        }
    }

    /// True when no source knew the address.
    pub fn is_empty(&self) -> bool {
        self.prefix.is_none() && self.asn.is_none() && self.country.is_none()
    }
}

impl PartialEq for Enrichment<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.prefix == other.prefix
            && self.asn == other.asn
            && self.as_name() == other.as_name()
            && self.country == other.country
    }
}

impl Eq for Enrichment<'_> {}

/// Maps addresses to prefix, AS and country. Immutable and `Sync`: share
/// one behind an `Arc` across threads.
///
/// Two enrichers are equal when they hold the same tables, names and
/// sources, however they were obtained.
#[derive(Debug, Clone)]
pub struct Enricher {
    asn: Option<PrefixTable<AsValue>>,
    country: Option<PrefixTable<CountryCode>>,
    names: Names,
    sources: Vec<Source>,
    cache: CacheUse,
}

impl PartialEq for Enricher {
    fn eq(&self, other: &Self) -> bool {
        self.asn == other.asn
            && self.country == other.country
            && self.names == other.names
            && self.sources == other.sources
    }
}

impl Eq for Enricher {}

impl Default for Enricher {
    fn default() -> Self {
        EnricherBuilder::new().build()
    }
}

impl Enricher {
    /// Loads every `.mmdb` and `.csv` file in `<data_dir>/enrich/`, through
    /// the table cache (see [`Enricher::from_dir`]). A missing directory
    /// yields an enricher that knows no address (and logs how to fetch data).
    pub fn from_data_dir(data_dir: &Path) -> Result<Self, Error> {
        let dir = data_dir.join(ENRICH_SUBDIR);
        if !dir.is_dir() {
            warn!(
                dir = %dir.display(),
                "No enrichment directory; events get no AS or country. Run scripts/fetch-enrichment.sh DATA_DIR to fetch public data."
            );
            return Ok(Self::default());
        }
        Self::from_dir(&dir, true)
    }

    /// Loads every `.mmdb` and `.csv` file directly in `dir`, in file-name
    /// order.
    ///
    /// With `use_cache`, the built tables are read from the cache file
    /// [`CACHE_FILE`](crate::CACHE_FILE) in `dir` when it was written for
    /// exactly the files now present (same names, sizes and times) and is
    /// intact; otherwise they are built from the files and the cache is
    /// (re)written for the next load. A directory that cannot be written
    /// just goes without the cache. [`Enricher::cache_use`] tells which
    /// happened.
    pub fn from_dir(dir: &Path, use_cache: bool) -> Result<Self, Error> {
        let io = |source| Error::Io {
            path: dir.display().to_string(),
            source,
        };
        let started = Instant::now();
        let files = cache::source_files(dir).map_err(io)?;
        if files.is_empty() {
            warn!(dir = %dir.display(), "Enrichment directory holds no .mmdb or .csv file.");
            return Ok(Self::default());
        }
        if !use_cache {
            let mut b = EnricherBuilder::new();
            b.add_files(&files)?;
            return Ok(b.build());
        }
        // The stamp is taken before the files are read: a file changed
        // during the build then no longer matches the saved stamp, and the
        // next load rebuilds.
        let stamp = cache::stamp(&files).map_err(io)?;
        let cache_path = dir.join(cache::CACHE_FILE);
        let miss = match cache::load(&cache_path, &stamp) {
            Ok(t) => {
                info!(
                    cache = %cache_path.display(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "Enrichment tables read from the cache."
                );
                return Ok(Enricher {
                    asn: t.asn,
                    country: t.country,
                    names: t.names,
                    sources: t.sources,
                    cache: CacheUse::Hit,
                });
            }
            Err(miss) => miss,
        };
        let mut b = EnricherBuilder::new();
        b.add_files(&files)?;
        let mut enricher = b.build();
        let bytes = cache::encode(
            &stamp,
            enricher.asn.as_ref(),
            enricher.country.as_ref(),
            &enricher.names,
            &enricher.sources,
        );
        let saved = match cache::save(dir, &bytes) {
            Ok(()) => true,
            Err(e) => {
                info!(
                    dir = %dir.display(),
                    error = %e,
                    "Cannot write the enrichment table cache; each start will parse the source files."
                );
                false
            }
        };
        info!(
            ?miss,
            saved,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Enrichment tables built from the source files."
        );
        enricher.cache = CacheUse::Rebuilt { miss, saved };
        Ok(enricher)
    }

    /// How the tables were obtained: built, read from the cache, or rebuilt
    /// because the cache could not be used.
    pub fn cache_use(&self) -> CacheUse {
        self.cache
    }

    /// Looks up `ip` without allocating. IPv4-mapped IPv6 addresses are
    /// looked up as IPv4.
    #[inline]
    pub fn enrich(&self, ip: IpAddr) -> Enrichment<'_> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let mut out = Enrichment::default();
        if let Some(m) = self.asn.as_ref().and_then(|t| t.lookup(ip)) {
            out.prefix = Some(m.prefix);
            out.asn = Some(m.value.asn);
            out.as_name_id = m.value.name;
            out.names = Some(&self.names);
        }
        if let Some(t) = &self.country {
            let cc = match ip {
                IpAddr::V4(a) => t.value_v4(a),
                IpAddr::V6(a) => t.lookup_v6(a).map(|m| m.value),
            };
            out.country = cc;
        }
        out
    }

    /// Looks up `ip` and returns the owned [`Network`].
    pub fn lookup(&self, ip: IpAddr) -> Network {
        self.enrich(ip).to_network()
    }

    /// The AS table, when an AS source was loaded.
    pub fn asn_table(&self) -> Option<&PrefixTable<AsValue>> {
        self.asn.as_ref()
    }

    /// The country table, when a country source was loaded.
    pub fn country_table(&self) -> Option<&PrefixTable<CountryCode>> {
        self.country.as_ref()
    }

    /// The interned AS names.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// The files loaded, in load order.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// True when no source contributed any range.
    pub fn is_empty(&self) -> bool {
        self.asn.is_none() && self.country.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_precedence_between_sources() {
        let mut b = EnricherBuilder::new();
        b.add_csv(
            "10.0.0.0,10.255.255.255,64500,Wide\n".as_bytes(),
            "a.csv",
            None,
        )
        .unwrap();
        b.add_csv(
            "10.1.0.0,10.1.255.255,64501,Narrow\n".as_bytes(),
            "b.csv",
            None,
        )
        .unwrap();
        let e = b.build();
        let n = e.lookup("10.1.2.3".parse().unwrap());
        assert_eq!(n.asn, Some(Asn(64501)));
        assert_eq!(n.as_name.as_deref(), Some("Narrow"));
        assert_eq!(n.prefix.unwrap().to_string(), "10.1.0.0/16");
        assert_eq!(n.country, None);
        let n = e.enrich("::ffff:10.2.0.1".parse().unwrap());
        assert_eq!(n.asn, Some(Asn(64500)));
        assert!(e.enrich("192.0.2.1".parse().unwrap()).is_empty());
    }

    #[test]
    fn empty_enricher_is_empty() {
        let e = Enricher::default();
        assert!(e.is_empty());
        assert!(e.enrich("1.1.1.1".parse().unwrap()).is_empty());
    }
}
