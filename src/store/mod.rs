//! The on-disk state: one sled database under the data directory, opened once and shared.
use std::path::Path;

use crate::error::Result;

/// The sled database and the trees faculty keeps in it.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
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
        Ok(Self { db })
    }

    /// A throwaway store (for the CLI's one-shot commands).
    pub fn temporary() -> Result<Self> {
        Ok(Self {
            db: sled::Config::new().temporary(true).open()?,
        })
    }

    pub fn tree(&self, name: &str) -> Result<sled::Tree> {
        Ok(self.db.open_tree(name)?)
    }

    /// Makes every change so far durable.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
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
