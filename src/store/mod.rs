//! The state seam: named key-value tables that hold the catalog, datasets' metadata, rankings, metric
//! memos, students' cards and the jobs. Embedded default: one sled database under the data directory.
//! With `--database-url postgres://...` the same tables live in PostgreSQL ([`pg`]), so several servers
//! share one state. Callers see [`Store`] and [`Table`] only. The bytes beside the tables (datasets'
//! rows, students' files) go through the blob seam, [`Blobs`]. Tables of large records keep a small
//! list view of each beside it ([`listing`]).
pub mod blob;
pub mod listing;
pub mod pg;

pub use blob::Blobs;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};

/// Where the tables live.
#[derive(Clone)]
enum Backend {
    Sled(sled::Db),
    Pg(Arc<pg::Pg>),
}

/// The state database and the tables faculty keeps in it.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

impl Store {
    /// Opens (or creates) `<data_dir>/state.sled`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        // sled's page cache defaults to 1 GiB; 64 MiB holds the catalog, the score memos and the jobs
        let db = sled::Config::new()
            .path(data_dir.join("state.sled"))
            .cache_capacity(64 << 20)
            .open()?;
        Ok(Self {
            backend: Backend::Sled(db),
        })
    }

    /// The PostgreSQL database at `url` (`postgres://user:password@host:port/db`, optionally
    /// `?schema=NAME` to keep faculty's tables in a schema of their own), migrated to the current schema.
    /// Fails with `store_unavailable` when the server cannot be reached.
    pub fn connect(url: &str) -> Result<Self> {
        Ok(Self {
            backend: Backend::Pg(Arc::new(pg::Pg::connect(url)?)),
        })
    }

    /// `connect(url)` when a database URL is configured, else `open(data_dir)`.
    pub fn from_config(database_url: Option<&str>, data_dir: &Path) -> Result<Self> {
        match database_url {
            Some(url) => Self::connect(url),
            None => Self::open(data_dir),
        }
    }

    /// A throwaway store (for the CLI's one-shot commands).
    pub fn temporary() -> Result<Self> {
        Ok(Self {
            backend: Backend::Sled(sled::Config::new().temporary(true).open()?),
        })
    }

    /// What holds the state, for logs and the health endpoint: `sled` or `postgresql`.
    pub fn kind(&self) -> &'static str {
        match &self.backend {
            Backend::Sled(_) => "sled",
            Backend::Pg(_) => "postgresql",
        }
    }

    pub fn tree(&self, name: &str) -> Result<Table> {
        Ok(match &self.backend {
            Backend::Sled(db) => Table::Sled(db.open_tree(name)?),
            Backend::Pg(pg) => Table::Pg(pg.clone(), name.to_owned()),
        })
    }

    /// Makes every change so far durable (PostgreSQL's are at commit).
    pub fn flush(&self) -> Result<()> {
        if let Backend::Sled(db) = &self.backend {
            db.flush()?;
        }
        Ok(())
    }

    /// Whether other processes may share these tables (PostgreSQL), so that jobs need leases that others
    /// can see and take over.
    /// The PostgreSQL database, when the state lives there (for the work queue, `jobs::lease`).
    pub fn pg(&self) -> Option<Arc<pg::Pg>> {
        match &self.backend {
            Backend::Pg(pg) => Some(pg.clone()),
            Backend::Sled(_) => None,
        }
    }

    pub fn shared(&self) -> bool {
        matches!(self.backend, Backend::Pg(_))
    }

    /// Whether the state database answers (a no-op for sled).
    pub fn ping(&self) -> Result<()> {
        match &self.backend {
            Backend::Sled(_) => Ok(()),
            Backend::Pg(pg) => pg.ping(),
        }
    }
}

/// One named table of byte keys and values, ordered by key. Cheap to clone.
#[derive(Clone)]
pub enum Table {
    Sled(sled::Tree),
    Pg(Arc<pg::Pg>, String),
}

/// A key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// A value read from a table: sled's shared buffer as it is (no copy: cached teacher outputs are
/// megabytes, read on every re-ranking), or the bytes PostgreSQL returned.
#[derive(Debug, Clone)]
pub enum Value {
    Sled(sled::IVec),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Value {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Sled(v) => v,
            Self::Owned(v) => v,
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

/// Writes applied together by [`Table::apply_batch`]: all or none.
#[derive(Default)]
pub struct Batch {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: impl Into<Vec<u8>>) {
        self.ops.push((key.as_ref().to_vec(), Some(value.into())));
    }
    pub fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.ops.push((key.as_ref().to_vec(), None));
    }
}

impl Table {
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>> {
        match self {
            Self::Sled(t) => Ok(t.get(key)?.map(Value::Sled)),
            Self::Pg(pg, tree) => Ok(pg.get(tree, key.as_ref())?.map(Value::Owned)),
        }
    }

    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl Into<Vec<u8>>) -> Result<()> {
        match self {
            Self::Sled(t) => {
                t.insert(key.as_ref(), value.into())?;
                Ok(())
            }
            Self::Pg(pg, tree) => pg.insert(tree, key.as_ref(), &value.into()),
        }
    }

    /// Inserts `value` under `key` only if the key is absent; returns whether it did (two writers racing
    /// for one key: exactly one wins).
    pub fn insert_new(&self, key: impl AsRef<[u8]>, value: impl Into<Vec<u8>>) -> Result<bool> {
        self.compare_and_swap(key, None, Some(&value.into()))
    }

    /// Inserts `value` under `key` and the pairs of `also` together, only if `key` is absent; returns
    /// whether it did (all or nothing).
    pub fn insert_new_with(
        &self,
        key: &[u8],
        value: Vec<u8>,
        also: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<bool> {
        match self {
            Self::Sled(t) => {
                let r = t.transaction(|tx| {
                    if tx.get(key)?.is_some() {
                        return Ok(false);
                    }
                    tx.insert(key, value.as_slice())?;
                    for (k, v) in &also {
                        tx.insert(k.as_slice(), v.as_slice())?;
                    }
                    Ok(true)
                });
                r.map_err(|e: sled::transaction::TransactionError<()>| match e {
                    sled::transaction::TransactionError::Storage(e) => e.into(),
                    sled::transaction::TransactionError::Abort(()) => {
                        Error::internal("the insert was aborted")
                    }
                })
            }
            Self::Pg(pg, tree) => pg.insert_new_with(tree, key, &value, &also),
        }
    }

    /// Replaces the value under `key` by `new` (`None`: removes it) only if it is `old` (`None`: absent);
    /// returns whether it did. What several processes sharing one database coordinate with.
    pub fn compare_and_swap(
        &self,
        key: impl AsRef<[u8]>,
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool> {
        match self {
            Self::Sled(t) => Ok(t.compare_and_swap(key.as_ref(), old, new)?.is_ok()),
            Self::Pg(pg, tree) => pg.compare_and_swap(tree, key.as_ref(), old, new),
        }
    }

    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<()> {
        match self {
            Self::Sled(t) => {
                t.remove(key)?;
                Ok(())
            }
            Self::Pg(pg, tree) => pg.remove(tree, key.as_ref()),
        }
    }

    /// Every pair, in key order.
    pub fn iter(&self) -> Result<Vec<Pair>> {
        match self {
            Self::Sled(t) => collect(t.iter()),
            Self::Pg(pg, tree) => pg.range(tree, None),
        }
    }

    /// Calls `f` with every pair in key order, holding a few at a time in memory (for tables whose values
    /// are large: `iter` holds them all).
    pub fn for_each(&self, f: impl FnMut(&[u8], &[u8]) -> Result<()>) -> Result<()> {
        self.for_each_in(None, f)
    }

    /// Calls `f` with every pair with a key in `range` (all when `None`), in key order, holding a few at
    /// a time in memory.
    pub fn for_each_in(
        &self,
        range: Option<Range<&[u8]>>,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        match self {
            Self::Sled(t) => {
                let it = match range {
                    Some(r) => t.range(r),
                    None => t.iter(),
                };
                for kv in it {
                    let (k, v) = kv?;
                    f(&k, &v)?;
                }
            }
            Self::Pg(pg, tree) => {
                let mut after: Option<Vec<u8>> = None;
                loop {
                    let page = pg.page_after(tree, range.clone(), after.as_deref(), 32)?;
                    for (k, v) in &page {
                        f(k, v)?;
                    }
                    match page.last() {
                        Some((k, _)) if page.len() == 32 => after = Some(k.clone()),
                        _ => return Ok(()),
                    }
                }
            }
        }
        Ok(())
    }

    /// The pairs with keys in `range`, in order.
    pub fn range(&self, range: Range<&[u8]>) -> Result<Vec<Pair>> {
        match self {
            Self::Sled(t) => collect(t.range(range)),
            Self::Pg(pg, tree) => pg.range(tree, Some(range)),
        }
    }

    /// At most `limit` keys in `range`, last first (for lists read newest first a page at a time).
    pub fn keys_rev(&self, range: Range<&[u8]>, limit: usize) -> Result<Vec<Vec<u8>>> {
        match self {
            Self::Sled(t) => t
                .range(range)
                .rev()
                .take(limit)
                .map(|kv| Ok(kv?.0.to_vec()))
                .collect::<Result<_>>(),
            Self::Pg(pg, tree) => pg.keys_rev(tree, range, limit as i64),
        }
    }

    /// How many keys are in `range`.
    pub fn count(&self, range: Range<&[u8]>) -> Result<usize> {
        match self {
            Self::Sled(t) => {
                let mut n = 0;
                for kv in t.range(range) {
                    kv?;
                    n += 1;
                }
                Ok(n)
            }
            Self::Pg(pg, tree) => pg.count(tree, range),
        }
    }

    /// The keys in `range`, in order.
    pub fn keys_in(&self, range: Range<&[u8]>) -> Result<Vec<Vec<u8>>> {
        match self {
            Self::Sled(t) => t
                .range(range)
                .map(|kv| Ok(kv?.0.to_vec()))
                .collect::<Result<_>>(),
            Self::Pg(pg, tree) => Ok(pg
                .range(tree, Some(range))?
                .into_iter()
                .map(|(k, _)| k)
                .collect()),
        }
    }

    pub fn apply_batch(&self, batch: Batch) -> Result<()> {
        match self {
            Self::Sled(t) => {
                let mut b = sled::Batch::default();
                for (k, v) in batch.ops {
                    match v {
                        Some(v) => b.insert(k, v),
                        None => b.remove(k),
                    }
                }
                t.apply_batch(b)?;
                Ok(())
            }
            Self::Pg(pg, tree) => pg.apply(tree, batch.ops),
        }
    }

    /// Makes this table's changes durable (PostgreSQL's are at commit).
    pub fn flush(&self) -> Result<()> {
        if let Self::Sled(t) = self {
            t.flush()?;
        }
        Ok(())
    }
}

fn collect(it: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>) -> Result<Vec<Pair>> {
    it.map(|kv| {
        let (k, v) = kv?;
        Ok((k.to_vec(), v.to_vec()))
    })
    .collect()
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Removes the files in `dir` (not below it) that `leftover` says an interrupted write left behind, and
/// returns their names. A missing directory has none.
pub fn sweep(dir: &Path, leftover: impl Fn(&str) -> bool) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(removed);
    };
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type()?.is_file() && leftover(&name) {
            std::fs::remove_file(e.path())?;
            removed.push(name);
        }
    }
    removed.sort();
    Ok(removed)
}

/// Bytes free for unprivileged writers on the filesystem of `path` (`None` when it cannot be told).
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}
