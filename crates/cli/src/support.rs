//! What several subcommands need alike: the store, enrichment data, the bank
//! index folder, progress bars and the expansion of folders into files.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use takedown_enrich::Enricher;
use takedown_ingest::Lookup;
use takedown_store::{PgStore, SqliteStore, Store};
use tracing::{info, warn};

use crate::Global;

/// The store a command works on: the SQLite file in the data directory, or
/// PostgreSQL when `--store` (`TAKEDOWN_STORE`) names a server.
pub(crate) enum OpenStore {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PgStore>),
}

impl OpenStore {
    /// The store behind the common traits.
    pub(crate) fn shared(&self) -> Arc<dyn Store> {
        match self {
            OpenStore::Sqlite(s) => Arc::clone(s) as Arc<dyn Store>,
            OpenStore::Postgres(p) => Arc::clone(p) as Arc<dyn Store>,
        }
    }

    /// The SQLite store, for what only it has (such as tuning its merges).
    pub(crate) fn sqlite(&self) -> Option<&Arc<SqliteStore>> {
        match self {
            OpenStore::Sqlite(s) => Some(s),
            OpenStore::Postgres(_) => None,
        }
    }
}

/// Opens the store the global options name, creating it if needed.
pub(crate) fn open_store(global: &Global, data: &Path) -> anyhow::Result<OpenStore> {
    match global.store_url() {
        Some(url) => {
            let store = PgStore::connect(url).with_context(|| {
                "opening the PostgreSQL store named by --store (TAKEDOWN_STORE); check the \
                 connection string, or leave it unset to use the data directory"
            })?;
            Ok(OpenStore::Postgres(Arc::new(store)))
        }
        None => Ok(OpenStore::Sqlite(Arc::new(open_sqlite(data)?))),
    }
}

/// Opens (creating if needed) the SQLite store in the data directory.
pub(crate) fn open_sqlite(data: &Path) -> anyhow::Result<SqliteStore> {
    SqliteStore::open(data).with_context(|| {
        format!(
            "opening the store in {}; choose another directory with --data DIR or TAKEDOWN_DATA",
            data.display()
        )
    })
}

/// The directory holding bank index files.
pub(crate) fn index_dir(data: &Path) -> PathBuf {
    data.join("index")
}

/// The async runtime of the long-running commands (sinkhole, ingest,
/// import), with a worker per core.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Loads enrichment data from `<data>/enrich/`, or `None` (with a warning)
/// when there is none, so that events are still recorded, unattributed.
pub(crate) fn load_enricher(data: &Path) -> anyhow::Result<Option<Arc<dyn Lookup>>> {
    let dir = data.join(takedown_enrich::ENRICH_SUBDIR);
    let enricher = Enricher::from_data_dir(data)
        .with_context(|| format!("loading enrichment data from {}", dir.display()))?;
    if enricher.is_empty() {
        // A missing directory was already reported by the loader; an empty one was not.
        if dir.is_dir() {
            warn!(
                dir = %dir.display(),
                "No enrichment data: events are stored without AS, prefix or country. \
                 Fetch data with scripts/fetch-enrichment.sh DATA_DIR."
            );
        }
        return Ok(None);
    }
    info!(
        n_sources = enricher.sources().len(),
        "Enrichment data loaded."
    );
    Ok(Some(Arc::new(enricher)))
}

/// A progress bar of `len` steps drawn on stderr with `template`, hidden
/// when `show` is false or stderr is no terminal, so that logs and pipes
/// never receive bar frames.
pub(crate) fn progress_bar(len: u64, template: &str, show: bool) -> ProgressBar {
    if !show || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    // The templates are constants of this crate; the default style is only a
    // safety net should one ever fail to parse.
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// One file found by [`expand_paths`].
pub(crate) struct FoundFile {
    /// The file.
    pub(crate) path: PathBuf,
    /// Named on the command line rather than found in a folder, so it is
    /// reported even if it turns out not to be an image.
    pub(crate) explicit: bool,
}

/// Expands folders into the files below them (recursively, sorted by path);
/// other paths are kept as given. Entries that cannot be read while walking
/// are described in `errors`.
pub(crate) fn expand_paths(paths: &[PathBuf], errors: &mut Vec<String>) -> Vec<FoundFile> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            for entry in walkdir::WalkDir::new(p).sort_by_file_name() {
                match entry {
                    Ok(e) if e.file_type().is_file() => files.push(FoundFile {
                        path: e.into_path(),
                        explicit: false,
                    }),
                    Ok(_) => {}
                    Err(e) => {
                        let at = e.path().map(Path::to_path_buf).unwrap_or_else(|| p.clone());
                        errors.push(format!("{}: {e}", at.display()));
                    }
                }
            }
        } else {
            files.push(FoundFile {
                path: p.clone(),
                explicit: true,
            });
        }
    }
    files
}
