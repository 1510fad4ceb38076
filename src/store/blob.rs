//! The blob seam: the bytes faculty keeps beside its tables (datasets' rows, students' ONNX files), under
//! content-derived keys such as `datasets/<sha256>.f32`. Embedded default: files under the data directory,
//! as before. With `--blob-url s3://BUCKET?endpoint=URL` (or another directory) they live in an object
//! store shared by every server: written with create-only puts (two writers of one key keep one blob) and
//! read through a local least-recently-used disk cache. A fetched blob whose sha256 does not match the one
//! its record names is refused, reported and never cached.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};

use crate::error::{Error, ErrorKind, Result};

/// Where blobs live.
pub enum Blobs {
    /// Files under a directory (the data directory by default); the key is the relative path.
    Dir(PathBuf),
    /// An object store, read through a disk cache.
    Object(Box<ObjectBlobs>),
}

pub struct ObjectBlobs {
    store: Arc<dyn ObjectStore>,
    /// The URL without credentials, for messages.
    url: String,
    cache: PathBuf,
    cache_limit: u64,
    /// object_store is async; faculty's storage calls come from blocking threads. Calls run on this
    /// runtime and are waited for with a channel, which is allowed from any thread.
    rt: Option<tokio::runtime::Runtime>,
}

impl Blobs {
    /// `url`: `s3://BUCKET[/PREFIX]?endpoint=http://HOST:PORT[&region=R]` (credentials from `AWS_ACCESS_KEY_ID` /
    /// `AWS_SECRET_ACCESS_KEY`), `file:///DIR` or a plain directory; none: `data_dir`. The cache lives
    /// under `data_dir/blob-cache`, at most `cache_mb` MiB.
    pub fn open(url: Option<&str>, data_dir: &Path, cache_mb: u64) -> Result<Self> {
        let Some(url) = url else {
            return Ok(Self::Dir(data_dir.to_path_buf()));
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            let path = path.trim_end_matches('/');
            let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
            if bucket.is_empty() || (!prefix.is_empty() && check_key(prefix).is_err()) {
                return Err(Error::invalid_input(format!(
                    "blob URL '{url}': expected s3://BUCKET[/PREFIX]?endpoint=URL"
                )));
            }
            let mut b = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(object_store::RetryConfig {
                    max_retries: 2,
                    retry_timeout: Duration::from_secs(10),
                    ..Default::default()
                })
                .with_client_options(
                    object_store::ClientOptions::new()
                        .with_connect_timeout(Duration::from_secs(5))
                        .with_timeout(Duration::from_secs(120)),
                );
            let mut shown = format!("s3://{path}");
            for p in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                match k {
                    "endpoint" => {
                        b = b.with_endpoint(v).with_allow_http(v.starts_with("http://"));
                        shown = format!("{shown} at {v}");
                    }
                    "region" => b = b.with_region(v),
                    _ => {
                        return Err(Error::invalid_input(format!(
                            "blob URL: unknown parameter '{k}' (known: endpoint, region)"
                        )));
                    }
                }
            }
            if std::env::var_os("AWS_REGION").is_none() && !query.contains("region=") {
                b = b.with_region("us-east-1");
            }
            let s3 = b
                .build()
                .map_err(|e| Error::invalid_input(format!("blob URL '{shown}': {e}")))?;
            let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
            };
            let blobs = ObjectBlobs::new(store, shown, data_dir, cache_mb)?;
            blobs.check()?;
            return Ok(Self::Object(Box::new(blobs)));
        }
        let dir = PathBuf::from(url.strip_prefix("file://").unwrap_or(url));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::invalid_input(format!("blob directory {}: {e}", dir.display())))?;
        Ok(Self::Dir(dir))
    }

    /// `dir` or `s3` (for logs and the health endpoint).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Dir(_) => "dir",
            Self::Object(_) => "s3",
        }
    }

    /// Stores `bytes` under `key` unless a blob is there already; returns whether it stored them. Keys
    /// derive from the content, so an existing blob is the same one.
    pub fn put(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        check_key(key)?;
        match self {
            Self::Dir(root) => {
                let path = root.join(key);
                if path.is_file() {
                    return Ok(false);
                }
                write_atomic(&path, bytes)?;
                Ok(true)
            }
            Self::Object(o) => o.put(key, bytes),
        }
    }

    /// A local file with the blob's bytes (downloaded into the cache first when it lives in an object
    /// store). With `sha256`, a blob whose content does not hash to it is refused.
    pub fn path(&self, key: &str, sha256: Option<&str>) -> Result<PathBuf> {
        check_key(key)?;
        match self {
            Self::Dir(root) => Ok(root.join(key)),
            Self::Object(o) => o.fetch(key, sha256),
        }
    }

    /// Whether a blob is stored under `key`.
    pub fn exists(&self, key: &str) -> Result<bool> {
        check_key(key)?;
        match self {
            Self::Dir(root) => Ok(root.join(key).is_file()),
            Self::Object(o) => o.exists(key),
        }
    }

    /// Removes the files under key directory `dir` that `leftover` says an interrupted write left (at
    /// start): in the blob directory, or in the object store's local cache.
    pub fn sweep(&self, dir: &str, leftover: impl Fn(&str) -> bool) -> Result<Vec<String>> {
        check_key(dir)?;
        let root = match self {
            Self::Dir(root) => root,
            Self::Object(o) => &o.cache,
        };
        super::sweep(&root.join(dir), leftover)
    }

    /// The blobs directly under key directory `dir`, with when each was last written (a rename counts as
    /// a write, as an object store's copy does).
    pub fn list(&self, dir: &str) -> Result<Vec<(String, std::time::SystemTime)>> {
        check_key(dir)?;
        match self {
            Self::Dir(root) => {
                let rd = match std::fs::read_dir(root.join(dir)) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(e.into()),
                };
                let mut out = Vec::new();
                for e in rd {
                    let e = e?;
                    let m = e.metadata()?;
                    let name = e.file_name().to_string_lossy().into_owned();
                    let key = format!("{dir}/{name}");
                    if m.is_file() && !name.starts_with(".tmp") && check_key(&key).is_ok() {
                        out.push((key, m.modified()?));
                    }
                }
                Ok(out)
            }
            Self::Object(o) => o.list(dir),
        }
    }

    /// Moves the blob under `from` to `to` (replacing a blob there: keys derive from the content, so it is
    /// the same one); returns false when nothing is under `from`. The moved blob counts as written now.
    pub fn rename(&self, from: &str, to: &str) -> Result<bool> {
        check_key(from)?;
        check_key(to)?;
        match self {
            Self::Dir(root) => {
                let target = root.join(to);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                match std::fs::rename(root.join(from), &target) {
                    Ok(()) => {
                        std::fs::File::options()
                            .append(true)
                            .open(&target)?
                            .set_modified(std::time::SystemTime::now())?;
                        Ok(true)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
            Self::Object(o) => o.rename(from, to),
        }
    }

    /// Removes a blob (and its cached copy); a missing one is not an error.
    pub fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        match self {
            Self::Dir(root) => match std::fs::remove_file(root.join(key)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            },
            Self::Object(o) => o.delete(key),
        }
    }
}

/// Blobs larger than this are uploaded to an object store in parts of this size (S3 wants at least 5 MiB
/// per part but the last).
const PART_BYTES: usize = 8 << 20;

/// Keys are relative paths of plain segments (letters, digits, `_`, `-`, `.`), never `..`.
fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.split('/').all(|s| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
        });
    if ok {
        Ok(())
    } else {
        Err(Error::internal(format!("not a blob key: '{key}'")))
    }
}

/// Writes to a temporary file beside `path`, syncs it and renames it into place.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().expect("blob paths have a parent");
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| Error::from(e.error))?;
    Ok(())
}

impl ObjectBlobs {
    fn new(
        store: Arc<dyn ObjectStore>,
        url: String,
        data_dir: &Path,
        cache_mb: u64,
    ) -> Result<Self> {
        let cache = data_dir.join("blob-cache");
        std::fs::create_dir_all(&cache)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("faculty-blobs")
            .enable_all()
            .build()?;
        Ok(Self {
            store,
            url,
            cache,
            cache_limit: cache_mb.max(1) << 20,
            rt: Some(rt),
        })
    }

    /// Runs an object store call to completion from any thread.
    fn call<T: Send + 'static>(
        &self,
        fut: impl Future<Output = object_store::Result<T>> + Send + 'static,
    ) -> object_store::Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt
            .as_ref()
            .expect("runtime until drop")
            .spawn(async move {
                let _ = tx.send(fut.await);
            });
        rx.recv().unwrap_or_else(|_| {
            Err(object_store::Error::Generic {
                store: "faculty",
                source: "object store call was dropped".into(),
            })
        })
    }

    fn error(&self, key: &str, e: object_store::Error) -> Error {
        match e {
            object_store::Error::NotFound { .. } => Error::not_found(format!(
                "blob {key} is not in the object store {}",
                self.url
            )),
            e => Error::new(
                ErrorKind::StoreUnavailable,
                format!("the object store {} is unavailable ({key}): {e}", self.url),
            ),
        }
    }

    /// Reaches the bucket once, so that a store that is down or misconfigured fails at start.
    fn check(&self) -> Result<()> {
        let store = self.store.clone();
        self.call(async move {
            match store.head(&"faculty-probe".into()).await {
                Err(object_store::Error::NotFound { .. }) | Ok(_) => Ok(()),
                Err(e) => Err(e),
            }
        })
        .map_err(|e| self.error("reaching the bucket", e))
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        let stored = if bytes.len() > PART_BYTES {
            self.put_in_parts(key, bytes)?
        } else {
            let store = self.store.clone();
            let location = object_store::path::Path::from(key);
            let payload = PutPayload::from(bytes.to_vec());
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match self.call(async move { store.put_opts(&location, payload, opts).await }) {
                Ok(_) => true,
                Err(object_store::Error::AlreadyExists { .. }) => false,
                Err(e) => return Err(self.error(key, e)),
            }
        };
        // what was just written is likely read soon (a student downloaded, a dataset ranked)
        write_atomic(&self.cache.join(key), bytes)?;
        self.trim_cache();
        Ok(stored)
    }

    /// A blob larger than one part, uploaded a part at a time (a multipart upload), so that only one
    /// part's copy is held besides the caller's bytes (a single put needs an owned copy of them all).
    /// Multipart uploads cannot be create-only: a blob already there is left alone, and two servers
    /// uploading one key at once write the same bytes (keys derive from the content).
    fn put_in_parts(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        if self.exists(key)? {
            return Ok(false);
        }
        let store = self.store.clone();
        let location = object_store::path::Path::from(key);
        let mut upload = self
            .call(async move { store.put_multipart(&location).await })
            .map_err(|e| self.error(key, e))?;
        for part in bytes.chunks(PART_BYTES) {
            let sent = upload.put_part(PutPayload::from(part.to_vec()));
            if let Err(e) = self.call(sent) {
                let _ = self.call(async move { upload.abort().await });
                return Err(self.error(key, e));
            }
        }
        self.call(async move {
            match upload.complete().await {
                Ok(_) => Ok(()),
                Err(e) => {
                    let _ = upload.abort().await;
                    Err(e)
                }
            }
        })
        .map_err(|e| self.error(key, e))?;
        Ok(true)
    }

    fn exists(&self, key: &str) -> Result<bool> {
        let store = self.store.clone();
        let location = object_store::path::Path::from(key);
        match self.call(async move { store.head(&location).await }) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error(key, e)),
        }
    }

    fn fetch(&self, key: &str, sha256: Option<&str>) -> Result<PathBuf> {
        let path = self.cache.join(key);
        if path.is_file() {
            // touched so that the least recently used blobs are the ones evicted
            if let Ok(f) = std::fs::File::options().append(true).open(&path) {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
            return Ok(path);
        }
        // streamed into a file beside its place in the cache and hashed on the way: a blob is never
        // held in memory whole
        let dir = path.parent().expect("blob paths have a parent");
        std::fs::create_dir_all(dir)?;
        let tmp = tempfile::Builder::new().prefix(".tmp").tempfile_in(dir)?;
        let mut file = tmp.reopen()?;
        let store = self.store.clone();
        let location = object_store::path::Path::from(key);
        let got = self
            .call(async move {
                use futures_util::TryStreamExt;
                use sha2::Digest;
                use std::io::Write;
                let cache_error = |e: std::io::Error| object_store::Error::Generic {
                    store: "faculty blob cache",
                    source: Box::new(e),
                };
                let mut chunks = store.get(&location).await?.into_stream();
                let mut hash = sha2::Sha256::new();
                while let Some(chunk) = chunks.try_next().await? {
                    hash.update(&chunk);
                    file.write_all(&chunk).map_err(cache_error)?;
                }
                file.sync_all().map_err(cache_error)?;
                Ok(hex::encode(hash.finalize()))
            })
            .map_err(|e| self.error(key, e))?;
        if let Some(want) = sha256
            && got != want
        {
            tracing::error!(
                key,
                want,
                got,
                "object store blob does not match its sha256"
            );
            return Err(Error::internal(format!(
                "blob {key} in the object store {} does not match its sha256 (expected {want}, \
                 got {got}): refused",
                self.url
            )));
        }
        tmp.persist(&path).map_err(|e| Error::from(e.error))?;
        self.trim_cache();
        Ok(path)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let store = self.store.clone();
        let location = object_store::path::Path::from(key);
        match self.call(async move { store.delete(&location).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.error(key, e)),
        }
        let _ = std::fs::remove_file(self.cache.join(key));
        Ok(())
    }

    fn list(&self, dir: &str) -> Result<Vec<(String, std::time::SystemTime)>> {
        use futures_util::TryStreamExt;
        let store = self.store.clone();
        let prefix = object_store::path::Path::from(dir);
        let metas: Vec<object_store::ObjectMeta> = self
            .call(async move { store.list(Some(&prefix)).try_collect().await })
            .map_err(|e| self.error(dir, e))?;
        Ok(metas
            .into_iter()
            .filter(|m| m.location.parts().count() == dir.split('/').count() + 1)
            .map(|m| (m.location.to_string(), m.last_modified.into()))
            .collect())
    }

    fn rename(&self, from: &str, to: &str) -> Result<bool> {
        let store = self.store.clone();
        let (a, b) = (
            object_store::path::Path::from(from),
            object_store::path::Path::from(to),
        );
        let moved = match self.call(async move { store.rename(&a, &b).await }) {
            Ok(()) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(self.error(from, e)),
        };
        let _ = std::fs::remove_file(self.cache.join(from));
        Ok(moved)
    }

    /// Evicts the least recently used cached blobs while the cache is over its limit.
    fn trim_cache(&self) {
        let mut files = Vec::new();
        let mut stack = vec![self.cache.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let Ok(m) = e.metadata() else { continue };
                if m.is_dir() {
                    stack.push(e.path());
                } else if let Ok(t) = m.modified() {
                    files.push((t, m.len(), e.path()));
                }
            }
        }
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, p) in files {
            if total <= self.cache_limit {
                break;
            }
            if std::fs::remove_file(&p).is_ok() {
                total -= len;
            }
        }
    }
}

/// The runtime is shut down without waiting, which is allowed on any thread (a plain drop is not, on
/// one that drives async tasks).
impl Drop for ObjectBlobs {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_escape_their_directory() {
        for bad in ["", "/abs", "a/../b", "..", "a//b", "a/./b", "a b", "a\\b"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
        for good in [
            "datasets/ab12.f32",
            "students/st_0123.onnx",
            "teachers/x@1.onnx",
        ] {
            check_key(good).unwrap();
        }
    }

    #[test]
    fn a_directory_store_keeps_the_first_blob_of_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blobs::open(None, dir.path(), 16).unwrap();
        assert!(b.put("datasets/k.f32", b"one").unwrap());
        assert!(!b.put("datasets/k.f32", b"two").unwrap());
        assert_eq!(
            std::fs::read(b.path("datasets/k.f32", None).unwrap()).unwrap(),
            b"one"
        );
        assert!(b.exists("datasets/k.f32").unwrap());
        b.delete("datasets/k.f32").unwrap();
        b.delete("datasets/k.f32").unwrap();
        assert!(!b.exists("datasets/k.f32").unwrap());
    }

    #[test]
    fn an_object_store_takes_a_large_blob_in_parts_and_gives_it_back_whole() {
        let (bucket, a, b) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let store = || -> Arc<dyn ObjectStore> {
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(bucket.path()).unwrap())
        };
        let big: Vec<u8> = (0..2 * PART_BYTES + 12_345)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let sha = crate::zoo::teacher::sha256_hex(&big);
        let on_a = ObjectBlobs::new(store(), "a".into(), a.path(), 64).unwrap();
        assert!(on_a.put("datasets/big.f32", &big).unwrap());
        assert!(
            !on_a.put("datasets/big.f32", &big).unwrap(),
            "already there"
        );
        // another process (an empty cache) reads it from the store, checked against its sha256
        let on_b = ObjectBlobs::new(store(), "b".into(), b.path(), 64).unwrap();
        let path = on_b.fetch("datasets/big.f32", Some(&sha)).unwrap();
        assert!(path.starts_with(b.path()));
        assert_eq!(std::fs::read(path).unwrap(), big);
        // small blobs still go in one create-only put
        assert!(on_b.put("datasets/small.f32", b"small").unwrap());
        assert!(!on_a.put("datasets/small.f32", b"small").unwrap());
    }
}
