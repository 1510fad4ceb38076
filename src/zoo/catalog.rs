//! The catalog: every teacher of the zoo directory, indexed into the state store. A rescan hashes and
//! inspects only files whose size or modification time changed, so a restart costs a directory walk.
//! Uploads and deletes change the directory and the catalog together, under one lock, and validate before
//! they touch either. With an object store (`--blob-url`), teachers can live there instead, as
//! `teachers/<sha256>.onnx`: `faculty zoo push DIR` and REST uploads put them there, every server reads
//! them through its local blob cache, and a rescan checks that each stored teacher's blob is still there.
//! Deleting the last teacher that holds a blob removes the blob too (see `collect_blob`).
//! Several servers may share one catalog (PostgreSQL): a directory teacher records which zoo directory
//! indexed it (`origin`, see `directory_origin`), and a server neither shows, uses nor removes another
//! directory's teachers (it cannot read their files), unless its own directory holds the same file.
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ndarray::{Array2, ArrayViewD};
use serde::{Deserialize, Serialize};

use super::scan::{Found, discover, teacher_id, valid_name};
use super::teacher::{Ident, Teacher, inspect};
use crate::error::{Error, Result};
use crate::onnx::SessionPool;
use crate::store::{Store, listing};

/// Name of the hidden directory inside the zoo where uploads are staged before the atomic rename.
pub const STAGING_DIR: &str = ".faculty-staging";
const CARD_LIMIT: u64 = 1 << 20;

/// Size and modification time of a file: what decides whether it must be re-hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    pub len: u64,
    pub mtime_ns: i128,
}

impl FileStamp {
    pub fn of(path: &Path) -> Result<Self> {
        let m = std::fs::metadata(path)?;
        let mtime_ns = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        Ok(Self {
            len: m.len(),
            mtime_ns,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Fingerprint {
    model: FileStamp,
    card: Option<FileStamp>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    teacher: Teacher,
    fingerprint: Fingerprint,
    /// The model lives in the blob store under `teacher.path` (`teachers/<sha256>.onnx`), not in the
    /// zoo directory.
    #[serde(default)]
    stored: bool,
    /// The zoo directory that indexed this teacher (see `directory_origin`); none for stored teachers
    /// and for entries written before origins were recorded (those count as the reading server's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origin: Option<String>,
    /// The [`INSPECTION`] that read the model (0: before they were counted).
    #[serde(default)]
    inspection: u32,
    /// A stored teacher's sidecar card as it was given (its labels, input shape, provenance), so that a
    /// later build's inspection reads the blob with it; none for directory teachers (the card is a file
    /// beside the model) and for entries stored before cards were kept (see [`Entry::card_text`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    card: Option<String>,
}

/// Which inspection of models this build does: bumped when a model it found unusable, or read
/// differently, might now be read otherwise, so a rescan re-inspects a directory's unchanged files once
/// (1: fixed-batch inputs, float16 and uint8, per-channel standardisation; 2: fixed batches freed;
/// 2026-12-06).
const INSPECTION: u32 = 2;

impl Entry {
    /// The card a stored teacher is read again with: the one it was given, or for an entry stored before
    /// cards were kept, what the last inspection took from one (card labels, description, provenance, a
    /// row shape that names every dimension).
    fn card_text(&self) -> String {
        if let Some(c) = &self.card {
            return c.clone();
        }
        let t = &self.teacher;
        let mut card = serde_json::Map::new();
        for (k, v) in &t.provenance {
            // `labels` and `input_shape` are not strings in a card (the model's metadata, where a
            // provenance entry of those names came from, is read again anyway)
            if k != "labels" && k != "input_shape" {
                card.insert(k.clone(), serde_json::Value::String(v.clone()));
            }
        }
        if t.label_source == "card" {
            card.insert("labels".into(), serde_json::json!(t.labels));
        }
        if let Some(d) = &t.description {
            card.insert("description".into(), serde_json::json!(d));
        }
        if let Some(row) = t
            .predictor
            .as_ref()
            .map(|p| &p.input_shape[1.min(p.input_shape.len())..])
            && !row.is_empty()
            && row.iter().all(|&d| d > 0)
        {
            card.insert("input_shape".into(), serde_json::json!(row));
        }
        serde_json::Value::Object(card).to_string()
    }

    /// A directory teacher indexed from another zoo directory than `origin` (none: a catalog of one
    /// server, where every directory teacher is its own).
    fn foreign_to(&self, origin: Option<&str>) -> bool {
        match (self.origin.as_deref(), origin) {
            (Some(theirs), Some(ours)) => !self.stored && theirs != ours,
            _ => false,
        }
    }
}

/// The file inside a zoo directory that names it to the catalog.
pub const ORIGIN_FILE: &str = ".faculty-zoo-id";

/// The identity of zoo directory `root` in a shared catalog: the id in its [`ORIGIN_FILE`], written at the
/// first open over a shared catalog (create-only, so servers starting together on one shared directory
/// agree), or, where the directory is read-only, a hash of its canonical path. Servers over one directory
/// (or over copies that carry the file) share it; servers with different directories do not.
fn directory_origin(root: &Path) -> Result<String> {
    let file = root.join(ORIGIN_FILE);
    let read = |f: &Path| -> Result<Option<String>> {
        match std::fs::read_to_string(f) {
            Ok(s) => {
                let id = s.trim();
                if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric())
                {
                    return Err(Error::invalid_input(format!(
                        "{} does not hold a zoo directory id (letters and digits): delete it to make a new one",
                        f.display()
                    )));
                }
                Ok(Some(id.to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    };
    if let Some(id) = read(&file)? {
        return Ok(id);
    }
    let canonical = std::fs::canonicalize(root)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = super::teacher::sha256_hex(
        format!("{nanos}:{}:{}", std::process::id(), canonical.display()).as_bytes(),
    )[..32]
        .to_string();
    let tmp = root.join(format!("{ORIGIN_FILE}.{}.{nanos}.tmp", std::process::id()));
    if std::fs::write(&tmp, format!("{id}\n")).is_err() {
        // a read-only directory: its path names it
        return Ok(format!(
            "path{}",
            super::teacher::sha256_hex(canonical.to_string_lossy().as_bytes())
        ));
    }
    let linked = std::fs::hard_link(&tmp, &file);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(id),
        // another server made it first: its id is the directory's
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read(&file)?.ok_or_else(|| Error::from(e))
        }
        Err(e) => Err(e.into()),
    }
}

/// A teacher's penultimate features [N, D] and its classifier rows [K, D].
pub type Penultimate = (Array2<f32>, Array2<f32>);

/// The blob key of a teacher kept in the object store.
fn stored_key(sha256: &str) -> String {
    format!("teachers/{sha256}.onnx")
}

/// Where a stored teacher's blob waits while its deletion checks that no teacher took it in the meantime.
const TRASH_DIR: &str = "trash/teachers";

/// How long a blob stays aside before a rescan may remove it (`--trash-grace-s`).
pub const TRASH_GRACE_S: u64 = 600;

/// The key a stored teacher's blob is moved to while its deletion runs.
fn trash_key(sha256: &str) -> String {
    format!("{TRASH_DIR}/{sha256}.onnx")
}

/// Writes a stored teacher's blob again if it is gone, after its catalog entry went in: a deletion of the
/// same bytes on another server may have taken it away meanwhile (see `Zoo::collect_blob`).
fn ensure_blob(blobs: &crate::store::Blobs, key: &str, bytes: &[u8]) -> Result<()> {
    if !blobs.exists(key)? {
        blobs.put(key, bytes)?;
    }
    Ok(())
}

/// Puts a stored teacher's blob back from where an interrupted deletion moved it; whether there was one.
fn restore_blob(blobs: &crate::store::Blobs, sha256: &str) -> Result<bool> {
    let trash = trash_key(sha256);
    Ok(blobs.exists(&trash)? && blobs.rename(&trash, &stored_key(sha256))?)
}

/// A teacher that could not be used, and why.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Failed {
    pub id: String,
    pub reason: String,
}

/// What a rescan found.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RescanReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: usize,
    /// Unchanged files read again because an older build's inspection read them (what it found, such as
    /// "unusable", may now read otherwise).
    #[serde(default)]
    pub reinspected: Vec<String>,
    /// Teachers (added or changed in this scan) that are not usable.
    pub failed: Vec<Failed>,
    /// Files read and hashed in this scan (0 when nothing changed).
    pub hashed: usize,
    /// Teachers kept in the object store whose blob was found there.
    #[serde(default)]
    pub stored: usize,
    /// Teachers kept in the object store whose blob is gone: removed from the catalog.
    #[serde(default)]
    pub missing: Vec<String>,
    /// Blobs interrupted deletions had left aside in the object store, removed after their grace period.
    #[serde(default)]
    pub trash_removed: usize,
    /// Teachers of another server's zoo directory in this (shared) catalog: left alone, and not served
    /// here (this server cannot read their files).
    #[serde(default)]
    pub foreign: usize,
    /// Files of this zoo directory whose id another server's directory indexed first: not indexed.
    #[serde(default)]
    pub shadowed: Vec<String>,
}

/// Filters and paging for listing teachers.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TeacherQuery {
    /// Case-insensitive text found in the id, name, description or provenance.
    pub q: Option<String>,
    /// A class name the teacher predicts (case-insensitive).
    pub label: Option<String>,
    /// Row shape after the batch dimension, e.g. `784` or `1,28,28`; dynamic dimensions match anything.
    pub input_shape: Option<String>,
    /// Only usable (true) or only unusable (false) teachers.
    pub usable: Option<bool>,
    /// Teachers per page (1-500, default 100).
    pub page_size: Option<usize>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// One page of teachers.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TeacherPage {
    pub teachers: Vec<Teacher>,
    /// Pass as `page_token` for the next page; null on the last page.
    pub next_page_token: Option<String>,
    /// Teachers matching the filters, over all pages.
    pub total: usize,
}

/// What an upload carries besides the file.
#[derive(Debug, Clone, Default)]
pub struct Upload {
    /// Teacher name; defaults to the uploaded file name without `.onnx`.
    pub name: Option<String>,
    /// The client's file name (must be a single path component).
    pub filename: Option<String>,
    /// Store as `<name>/<version>/model.onnx` instead of a flat `<name>.onnx`.
    pub version: Option<String>,
    /// Class names, written to a sidecar card.
    pub labels: Option<Vec<String>>,
    /// The sha256 the client expects; refused when the received bytes differ.
    pub sha256: Option<String>,
}

/// The zoo: its directory, its sled index, and the inference sessions of its teachers.
pub struct Zoo {
    root: PathBuf,
    tree: crate::store::Table,
    store: Store,
    pool: Arc<SessionPool>,
    infer_batch: usize,
    lock: Mutex<()>,
    /// Where uploads go and stored teachers are read from, when teachers live in an object store.
    blobs: Option<Arc<crate::store::Blobs>>,
    /// How old a blob left aside by an interrupted deletion must be before a rescan removes it.
    trash_grace: std::time::Duration,
    /// This zoo directory's identity when the catalog is shared (PostgreSQL; see `directory_origin`).
    origin: Option<String>,
    /// Teachers another zoo directory indexed of which this directory holds the same file (same path
    /// and teacher: see `same_teacher`), found by the last rescan, with this directory's stamps: this
    /// server reads them from its own copy.
    copies: Mutex<std::collections::HashMap<String, Fingerprint>>,
    /// What `same_teacher` found by reading a file, by id: this directory's stamps, the indexing
    /// directory's, and whether the files hold the same teacher. A later rescan that finds both stamps
    /// as they were does not read the file again.
    compared: Mutex<std::collections::HashMap<String, (Fingerprint, Fingerprint, bool)>>,
    /// How uploads are checked in a child process before the server loads them (none: loaded at once).
    check: Option<super::check::ModelCheck>,
}

fn parse_shape(s: &str) -> Result<Vec<i64>> {
    s.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split([',', 'x', ' '])
        .filter(|p| !p.is_empty())
        .map(|p| p.trim().parse::<i64>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| {
            Error::invalid_input(format!(
                "input_shape '{s}' is not a list of integers like 1,28,28"
            ))
        })
}

impl TeacherQuery {
    fn matches(&self, t: &Teacher, shape: Option<&[i64]>) -> bool {
        if let Some(u) = self.usable
            && t.usable != u
        {
            return false;
        }
        if let Some(q) = self
            .q
            .as_deref()
            .map(str::to_lowercase)
            .filter(|q| !q.is_empty())
        {
            let hay = format!(
                "{} {} {} {}",
                t.id,
                t.name,
                t.description.as_deref().unwrap_or(""),
                t.provenance.values().cloned().collect::<Vec<_>>().join(" ")
            )
            .to_lowercase();
            if !hay.contains(&q) {
                return false;
            }
        }
        if let Some(l) = &self.label
            && !t.labels.iter().any(|x| x.eq_ignore_ascii_case(l))
        {
            return false;
        }
        if let Some(want) = shape {
            let ok = t.inputs.first().is_some_and(|i| {
                let have = &i.shape[1.min(i.shape.len())..];
                have.len() == want.len() && have.iter().zip(want).all(|(&h, &w)| h < 0 || h == w)
            });
            if !ok {
                return false;
            }
        }
        true
    }
}

fn read_card(path: Option<&Path>) -> Result<Option<String>> {
    match path {
        None => Ok(None),
        Some(p) if std::fs::metadata(p)?.len() > CARD_LIMIT => Ok(Some("{}".into())),
        Some(p) => Ok(Some(
            String::from_utf8_lossy(&std::fs::read(p)?).into_owned(),
        )),
    }
}

impl Zoo {
    /// Opens the catalog of `root` in `store` (call [`Zoo::rescan`] to bring it up to date).
    pub fn open(
        root: impl Into<PathBuf>,
        store: &Store,
        pool: Arc<SessionPool>,
        infer_batch: usize,
    ) -> Result<Self> {
        let root = root.into();
        if !root.is_dir() {
            return Err(Error::invalid_input(format!(
                "zoo directory {} does not exist",
                root.display()
            )));
        }
        Ok(Self {
            origin: if store.shared() {
                Some(directory_origin(&root)?)
            } else {
                None
            },
            root,
            tree: store.tree("teachers")?,
            store: store.clone(),
            pool,
            infer_batch,
            lock: Mutex::new(()),
            blobs: None,
            trash_grace: std::time::Duration::from_secs(TRASH_GRACE_S),
            copies: Mutex::default(),
            compared: Mutex::default(),
            check: None,
        })
    }

    /// A 409 when teacher `id` (file `rel` under the zoo directory) exists already.
    fn refuse_taken(&self, id: &str, rel: &str) -> Result<()> {
        let existing = self.load_any(id)?;
        if existing.is_some() || self.root.join(rel).exists() {
            let whose = if existing.is_some_and(|e| self.foreign(&e)) {
                " (in another server's zoo directory that shares this catalog)"
            } else {
                ""
            };
            return Err(Error::conflict(format!(
                "a teacher with id '{id}' already exists{whose}; delete it first or pick another name/version"
            )));
        }
        Ok(())
    }

    /// Checks every upload in a child process first (see [`super::check`]).
    pub fn with_model_check(mut self, check: super::check::ModelCheck) -> Self {
        self.check = Some(check);
        self
    }

    /// Keeps uploaded teachers in `blobs` (an object store shared by every server) instead of the zoo
    /// directory, and reads stored teachers from it.
    pub fn with_blobs(mut self, blobs: Arc<crate::store::Blobs>) -> Self {
        self.blobs = Some(blobs);
        self
    }

    /// How old a blob left aside by an interrupted deletion must be before a rescan removes it.
    pub fn with_trash_grace(mut self, grace: std::time::Duration) -> Self {
        self.trash_grace = grace;
        self
    }

    fn blobs(&self) -> Result<&crate::store::Blobs> {
        self.blobs.as_deref().ok_or_else(|| {
            Error::invalid_input(
                "this teacher lives in the object store: start faculty with the --blob-url that holds it",
            )
        })
    }

    /// Imports every teacher of directory `dir` (flat or versioned) into the object store and the catalog,
    /// replacing catalog entries of the same id. Unusable models are reported and not stored.
    pub fn push(&self, dir: &Path) -> Result<RescanReport> {
        let blobs = self.blobs()?;
        let _guard = self.lock.lock().expect("zoo lock");
        let mut report = RescanReport::default();
        let mut seen = std::collections::HashSet::new();
        for f in discover(dir)? {
            if !seen.insert(f.ident.id.clone()) {
                continue;
            }
            let bytes = std::fs::read(&f.model)?;
            let card = read_card(f.card.as_deref())?;
            let sha = super::teacher::sha256_hex(&bytes);
            let ins = inspect(
                &bytes,
                Ident {
                    path: stored_key(&sha),
                    ..f.ident.clone()
                },
                card.as_deref(),
                self.pool.intra_threads(),
            );
            report.hashed += 1;
            if !ins.teacher.usable {
                report.failed.push(Failed {
                    id: f.ident.id.clone(),
                    reason: ins.teacher.reason.clone().unwrap_or_default(),
                });
                continue;
            }
            blobs.put(&ins.teacher.path, &bytes)?;
            let old = self.load_any(&f.ident.id)?;
            match &old {
                Some(o) if o.stored && o.teacher.sha256 == sha => {
                    report.unchanged += 1;
                    continue;
                }
                Some(_) => report.changed.push(f.ident.id.clone()),
                None => report.added.push(f.ident.id.clone()),
            }
            let entry = Entry {
                teacher: ins.teacher,
                fingerprint: Fingerprint {
                    model: FileStamp::of(&f.model)?,
                    card: None,
                },
                stored: true,
                origin: None,
                inspection: INSPECTION,
                card,
            };
            self.tree
                .insert(f.ident.id.as_bytes(), serde_json::to_vec(&entry)?)?;
            ensure_blob(blobs, &entry.teacher.path, &bytes)?;
            // a stored teacher replaced by other bytes: its old blob goes unless another id holds it
            if let Some(o) = old.filter(|o| o.stored)
                && let Err(err) = self.collect_blob(blobs, &o.teacher.sha256)
            {
                tracing::warn!(id = %f.ident.id, error = %err, "could not remove the replaced teacher's blob");
            }
        }
        self.store.flush()?;
        Ok(report)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where uploads are streamed before validation (created on demand, inside the zoo so that the final
    /// move is an atomic rename).
    pub fn staging_dir(&self) -> Result<PathBuf> {
        let d = self.root.join(STAGING_DIR);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }

    /// Removes what interrupted uploads left in the staging directory (at start, before any upload).
    pub fn sweep_staging(&self) -> Result<Vec<String>> {
        crate::store::sweep(&self.root.join(STAGING_DIR), |_| true)
    }

    /// The catalog's entry of `id`, whoever indexed it.
    fn load_any(&self, id: &str) -> Result<Option<Entry>> {
        Ok(match self.tree.get(id.as_bytes())? {
            Some(v) => Some(serde_json::from_slice(&v)?),
            None => None,
        })
    }

    /// Whether `e` is a teacher of another server's zoo directory (see `Entry::foreign_to`).
    fn foreign(&self, e: &Entry) -> bool {
        e.foreign_to(self.origin.as_deref())
            && !self
                .copies
                .lock()
                .expect("copies lock")
                .contains_key(&e.teacher.id)
    }

    /// The entry of `id` when this server can read its model (stored, or indexed from this directory),
    /// or why this server has no such teacher.
    fn entry(&self, id: &str) -> Result<Entry> {
        match self.load_any(id)? {
            Some(e) if self.foreign(&e) => Err(Error::not_found(format!(
                "teacher '{id}' is in another server's zoo directory (the servers share a catalog), which \
                 this server cannot read; give the servers one zoo directory, or put the teachers in the \
                 object store with `faculty zoo push`"
            ))),
            Some(mut e) => {
                // a copy of another directory's file: checked against this directory's stamps
                if let Some(own) = self.copies.lock().expect("copies lock").get(id) {
                    e.fingerprint = own.clone();
                }
                Ok(e)
            }
            None => Err(Error::not_found(format!("no teacher with id '{id}'"))),
        }
    }

    /// A found file inspected (model and card).
    fn inspect_found(&self, f: &Found) -> Result<super::teacher::Inspection> {
        let bytes = std::fs::read(&f.model)?;
        let card = read_card(f.card.as_deref())?;
        let ins = inspect(
            &bytes,
            f.ident.clone(),
            card.as_deref(),
            self.pool.intra_threads(),
        );
        Ok(ins)
    }

    fn index_one(&self, f: &Found, fingerprint: Fingerprint) -> Result<Entry> {
        let ins = self.inspect_found(f)?;
        if let Some(s) = ins.session {
            self.pool.insert(&ins.teacher.sha256, s, ins.session_bytes);
        }
        Ok(Entry {
            teacher: ins.teacher,
            fingerprint,
            stored: false,
            origin: self.origin.clone(),
            inspection: INSPECTION,
            card: None,
        })
    }

    /// Whether the file found is the teacher another directory indexed (a copy of the same file): the same
    /// size and modification time, or, when only the times differ (a `git clone` or a copy that did not
    /// keep them), the same teacher once the file is inspected (its bytes' sha256, labels, card fields).
    /// A file read to find out counts in `report.hashed`; its answer is kept for the next rescan.
    fn same_teacher(
        &self,
        f: &Found,
        fingerprint: &Fingerprint,
        o: &Entry,
        report: &mut RescanReport,
    ) -> Result<bool> {
        if o.fingerprint == *fingerprint {
            return Ok(true);
        }
        let len = |s: Option<&FileStamp>| s.map(|s| s.len);
        if o.fingerprint.model.len != fingerprint.model.len
            || len(o.fingerprint.card.as_ref()) != len(fingerprint.card.as_ref())
        {
            return Ok(false);
        }
        let mut compared = self.compared.lock().expect("compared lock");
        if let Some((ours, theirs, same)) = compared.get(&f.ident.id)
            && ours == fingerprint
            && *theirs == o.fingerprint
        {
            return Ok(*same);
        }
        let ins = self.inspect_found(f)?;
        report.hashed += 1;
        let same = Teacher {
            indexed_at: o.teacher.indexed_at,
            ..ins.teacher
        } == o.teacher;
        if let Some(s) = ins.session.filter(|_| same) {
            self.pool.insert(&o.teacher.sha256, s, ins.session_bytes);
        }
        compared.insert(
            f.ident.id.clone(),
            (fingerprint.clone(), o.fingerprint.clone(), same),
        );
        Ok(same)
    }

    /// Brings the catalog in line with the directory: new files are added, vanished ones removed, files
    /// whose size or mtime changed re-inspected; unchanged files are not read.
    pub fn rescan(&self) -> Result<RescanReport> {
        let _guard = self.lock.lock().expect("zoo lock");
        let found = discover(&self.root)?;
        let mut report = RescanReport::default();
        let mut batch = crate::store::Batch::default();
        let mut seen = std::collections::HashSet::new();
        let mut copies = std::collections::HashMap::new();
        for f in &found {
            if !seen.insert(f.ident.id.clone()) {
                continue; // two files mapped to one id: the first (sorted) wins
            }
            let fingerprint = Fingerprint {
                model: FileStamp::of(&f.model)?,
                card: f.card.as_deref().map(FileStamp::of).transpose()?,
            };
            let old = self.load_any(&f.ident.id)?;
            if old.as_ref().is_some_and(|o| o.stored) {
                // the object store's teacher of this id wins over the directory's file
                continue;
            }
            if let Some(o) = old
                .as_ref()
                .filter(|o| o.foreign_to(self.origin.as_deref()))
            {
                if o.teacher.path == f.ident.path
                    && self.same_teacher(f, &fingerprint, o, &mut report)?
                {
                    // the same file as the directory that indexed it (a copy): read here from ours
                    copies.insert(f.ident.id.clone(), fingerprint);
                    report.unchanged += 1;
                } else {
                    // another zoo directory indexed this id first: its teacher keeps it
                    report.shadowed.push(f.ident.id.clone());
                }
                continue;
            }
            if let Some(old) = &old
                && old.fingerprint == fingerprint
                && old.teacher.path == f.ident.path
                // a newer build's reading is kept too: servers of two builds sharing the directory
                // would otherwise take turns reading it again, as for stored teachers
                && old.inspection >= INSPECTION
            {
                report.unchanged += 1;
                if old.origin.is_none() && self.origin.is_some() {
                    // indexed before origins were recorded: this directory's from now on
                    let mut own = old.clone();
                    own.origin = self.origin.clone();
                    batch.insert(f.ident.id.as_bytes(), serde_json::to_vec(&own)?);
                }
                continue;
            }
            let entry = self.index_one(f, fingerprint.clone())?;
            report.hashed += 1;
            match &old {
                Some(o) => {
                    if o.teacher.sha256 != entry.teacher.sha256 {
                        self.pool.evict(&o.teacher.sha256);
                    }
                    if o.fingerprint == fingerprint && o.teacher.sha256 == entry.teacher.sha256 {
                        report.reinspected.push(f.ident.id.clone());
                    } else {
                        report.changed.push(f.ident.id.clone());
                    }
                }
                None => report.added.push(f.ident.id.clone()),
            }
            if let Some(reason) = &entry.teacher.reason {
                report.failed.push(Failed {
                    id: f.ident.id.clone(),
                    reason: reason.clone(),
                });
            }
            batch.insert(f.ident.id.as_bytes(), serde_json::to_vec(&entry)?);
        }
        let mut stale = Vec::new();
        for (k, v) in self.tree.iter()? {
            let id = String::from_utf8_lossy(&k).into_owned();
            let entry = serde_json::from_slice::<Entry>(&v).ok();
            if let Some(e) = entry.as_ref().filter(|e| e.stored) {
                // kept in the object store: there while its blob is (left alone without a blob store)
                match &self.blobs {
                    // a deletion that crashed with the blob moved aside: put it back
                    Some(b)
                        if !b.exists(&e.teacher.path)? && !restore_blob(b, &e.teacher.sha256)? =>
                    {
                        self.pool.evict(&e.teacher.sha256);
                        batch.remove(k);
                        report.missing.push(id);
                    }
                    // (not a newer build's: servers of two builds would take turns)
                    Some(_) if e.inspection < INSPECTION => {
                        report.stored += 1;
                        stale.push((v.clone(), e.clone()));
                    }
                    _ => report.stored += 1,
                }
                continue;
            }
            if entry
                .as_ref()
                .is_some_and(|e| e.foreign_to(self.origin.as_deref()))
            {
                // another server's directory: it rescans its own
                if !copies.contains_key(&id) {
                    report.foreign += 1;
                }
                continue;
            }
            if !seen.contains(&id) {
                if let Some(e) = entry {
                    self.pool.evict(&e.teacher.sha256);
                }
                batch.remove(k);
                report.removed.push(id);
            }
        }
        self.tree.apply_batch(batch)?;
        if let Some(b) = &self.blobs {
            for (was, e) in stale {
                self.reinspect_stored(b, &was, e, &mut report);
            }
        }
        self.store.flush()?;
        *self.copies.lock().expect("copies lock") = copies;
        if let Some(b) = &self.blobs {
            report.trash_removed = self.sweep_trash(b)?;
        }
        // each inspection ran a probe batch; the allocator keeps what those freed (ImageNet models at
        // 224 x 224 left ~200 MB resident beside their sessions), so it is handed back once
        if !(report.added.is_empty() && report.changed.is_empty() && report.reinspected.is_empty())
        {
            crate::onnx::memory::trim();
        }
        Ok(report)
    }

    /// Reads a stored teacher again that an older build's inspection read (what it found, such as
    /// "unusable", may now read otherwise), with the card it was given, and replaces its entry `was` unless
    /// another server changed it meanwhile (then that server's entry stands). A blob that cannot be read
    /// now is left for the next rescan.
    fn reinspect_stored(
        &self,
        blobs: &crate::store::Blobs,
        was: &[u8],
        old: Entry,
        report: &mut RescanReport,
    ) {
        let t = &old.teacher;
        let card = old.card_text();
        let read = blobs.path(&t.path, Some(&t.sha256)).and_then(|path| {
            if let Some(check) = &self.check {
                // as an upload is: the new reading may run the model otherwise than the old one did
                check.run(&path, Some(&card))?;
            }
            Ok(std::fs::read(path)?)
        });
        let (teacher, session) = match read {
            Ok(bytes) => {
                let ins = inspect(
                    &bytes,
                    Ident {
                        id: t.id.clone(),
                        name: t.name.clone(),
                        version: t.version.clone(),
                        path: t.path.clone(),
                    },
                    Some(&card),
                    self.pool.intra_threads(),
                );
                (ins.teacher, ins.session.map(|s| (s, ins.session_bytes)))
            }
            Err(err) if err.kind == crate::error::ErrorKind::InvalidModel => {
                // refused by the model check: kept, unusable, with the reason
                let mut refused = t.clone();
                refused.usable = false;
                refused.reason = Some(
                    err.message
                        .trim_end_matches("; nothing was stored")
                        .to_string(),
                );
                refused.predictor = None;
                (refused, None)
            }
            Err(err) => {
                tracing::warn!(id = %t.id, error = %err, "stored teacher not read again: its blob could not be read or checked");
                return;
            }
        };
        let entry = Entry {
            teacher,
            inspection: INSPECTION,
            card: Some(card),
            ..old
        };
        let swapped = serde_json::to_vec(&entry)
            .map_err(Error::from)
            .and_then(|now| {
                self.tree
                    .compare_and_swap(entry.teacher.id.as_bytes(), Some(was), Some(&now))
            });
        match swapped {
            Ok(true) => {
                tracing::info!(
                    id = %entry.teacher.id,
                    usable = entry.teacher.usable,
                    checked = self.check.is_some(),
                    "stored teacher read again (an older build's inspection had read it)"
                );
                self.pool.evict(&entry.teacher.sha256);
                if let Some((s, bytes)) = session {
                    self.pool.insert(&entry.teacher.sha256, s, bytes);
                }
                if let Some(reason) = &entry.teacher.reason {
                    report.failed.push(Failed {
                        id: entry.teacher.id.clone(),
                        reason: reason.clone(),
                    });
                }
                report.reinspected.push(entry.teacher.id);
            }
            Ok(false) => {} // another server's rescan or upload got there first
            Err(err) => {
                tracing::warn!(id = %entry.teacher.id, error = %err, "stored teacher read again but not saved");
            }
        }
    }

    /// Removes the blobs interrupted deletions left aside (`trash/teachers/`) once they are older than the
    /// grace period (a deletion in progress puts a blob back within milliseconds when it is taken), and
    /// puts back one a stored teacher still needs; returns how many were removed.
    fn sweep_trash(&self, blobs: &crate::store::Blobs) -> Result<usize> {
        let now = std::time::SystemTime::now();
        let mut removed = 0;
        for (key, written) in blobs.list(TRASH_DIR)? {
            if now.duration_since(written).unwrap_or_default() < self.trash_grace {
                continue;
            }
            let Some(sha) = key.rsplit('/').next().and_then(|f| f.strip_suffix(".onnx")) else {
                continue;
            };
            let home = stored_key(sha);
            if self.blob_in_use(sha)? && !blobs.exists(&home)? {
                blobs.rename(&key, &home)?;
            } else {
                blobs.delete(&key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// One teacher by id.
    pub fn get(&self, id: &str) -> Result<Teacher> {
        Ok(self.entry(id)?.teacher)
    }

    /// All teachers, in id order.
    /// Teachers indexed from another server's zoo directory over a shared catalog are not among them.
    pub fn all(&self) -> Result<Vec<Teacher>> {
        let mut all = Vec::new();
        for (_, v) in self.tree.iter()? {
            let e = serde_json::from_slice::<Entry>(&v)?;
            if !self.foreign(&e) {
                all.push(e.teacher);
            }
        }
        Ok(all)
    }

    /// A filtered page of teachers, in id order.
    pub fn list(&self, q: &TeacherQuery) -> Result<TeacherPage> {
        let size = listing::page_size(q.page_size)?;
        let after = q
            .page_token
            .as_deref()
            .map(listing::token_position)
            .transpose()?;
        let shape = q.input_shape.as_deref().map(parse_shape).transpose()?;
        let matching: Vec<Teacher> = self
            .all()?
            .into_iter()
            .filter(|t| q.matches(t, shape.as_deref()))
            .collect();
        let total = matching.len();
        let rest: Vec<Teacher> = matching
            .into_iter()
            .filter(|t| after.as_ref().is_none_or(|a| t.id.as_str() > a.as_str()))
            .collect();
        let more = rest.len() > size;
        let teachers: Vec<Teacher> = rest.into_iter().take(size).collect();
        let next_page_token =
            more.then(|| listing::page_token(&teachers.last().expect("non-empty page").id));
        Ok(TeacherPage {
            teachers,
            next_page_token,
            total,
        })
    }

    /// The model file of a teacher, checked to be the file that was indexed.
    pub fn model_file(&self, id: &str) -> Result<(Teacher, PathBuf)> {
        let e = self.entry(id)?;
        if e.stored {
            let path = self
                .blobs()?
                .path(&e.teacher.path, Some(&e.teacher.sha256))?;
            return Ok((e.teacher, path));
        }
        let path = self.root.join(&e.teacher.path);
        match FileStamp::of(&path) {
            Ok(s) if s == e.fingerprint.model => Ok((e.teacher, path)),
            _ => Err(Error::conflict(format!(
                "the file of teacher '{id}' changed on disk since it was indexed; rescan the zoo (POST /v1/zoo/rescan)"
            ))),
        }
    }

    /// Class probabilities [N, K] of a usable teacher for the rows of `x`.
    pub fn predict(&self, id: &str, x: ArrayViewD<'_, f32>) -> Result<Array2<f32>> {
        self.predict_standardised(id, x, true)
    }

    /// [`Zoo::predict`], with the teacher's declared per-channel standardisation applied or (`false`:
    /// rows already standardised) not.
    pub fn predict_standardised(
        &self,
        id: &str,
        x: ArrayViewD<'_, f32>,
        channel_norm: bool,
    ) -> Result<Array2<f32>> {
        let (t, path) = self.model_file(id)?;
        let mut predictor = usable_predictor(&t)?.clone();
        if !channel_norm {
            predictor.channel_norm = None;
        }
        let session = match predictor.freed_batch {
            None => self.pool.get(&t.sha256, &path)?,
            Some(_) => self.pool.get_or_load(&t.sha256, || {
                Ok(prost::Message::encode_to_vec(&runnable_model(
                    &predictor, &path,
                )?))
            })?,
        };
        let mut session = session.lock().expect("session lock");
        predictor.predict(&mut session, &t.sha256, x, self.infer_batch)
    }

    /// Class probabilities [N, K] and, when the teacher ends in a linear classifier, its penultimate
    /// features [N, D] and classifier rows [K, D] (one run of a copy of the model with the classifier's
    /// input exposed; see `onnx::surgery`).
    pub fn predict_with_penultimate(
        &self,
        id: &str,
        x: ArrayViewD<'_, f32>,
    ) -> Result<(Array2<f32>, Option<Penultimate>)> {
        let (t, path) = self.model_file(id)?;
        let predictor = usable_predictor(&t)?;
        let model = runnable_model(predictor, &path)?;
        let Some(pen) = crate::onnx::surgery::expose_penultimate(&model, &predictor.output) else {
            return Ok((self.predict(id, x)?, None));
        };
        let key = format!("{}#penultimate", t.sha256);
        let session = self
            .pool
            .get_or_load(&key, || Ok(pen.model_bytes.clone()))?;
        let mut session = session.lock().expect("session lock");
        let (p, mut f) = predictor.predict_with_features(
            &mut session,
            &key,
            x,
            self.infer_batch,
            std::slice::from_ref(&pen.output),
        )?;
        Ok((p, f.pop().map(|f| (f, pen.weights))))
    }

    /// The inner tensors `names` of a usable teacher for the rows of `x`, one row per input each
    /// (feature maps as channel means; see `onnx::surgery::expose` and `Predictor::predict_with_features`).
    pub fn predict_inner(
        &self,
        id: &str,
        x: ArrayViewD<'_, f32>,
        names: &[String],
    ) -> Result<Vec<Array2<f32>>> {
        let (t, path) = self.model_file(id)?;
        let predictor = usable_predictor(&t)?;
        let model = runnable_model(predictor, &path)?;
        let key = format!(
            "{}#inner:{}",
            t.sha256,
            &crate::zoo::teacher::sha256_hex(names.join("\n").as_bytes())[..16]
        );
        let session = self
            .pool
            .get_or_load(&key, || Ok(crate::onnx::surgery::expose(&model, names)))?;
        let mut session = session.lock().expect("session lock");
        Ok(predictor
            .predict_with_features(&mut session, &key, x, self.infer_batch, names)?
            .1)
    }

    /// The teacher's ONNX graph, decoded.
    pub fn graph(&self, id: &str) -> Result<crate::onnx::proto::ModelProto> {
        let (_, path) = self.model_file(id)?;
        crate::onnx::graph::decode(&std::fs::read(&path)?)
    }

    /// Validates a staged upload and moves it into the zoo. Nothing in the zoo or the catalog changes
    /// unless the model is usable and its id is free.
    pub fn add_upload(&self, staged: &Path, up: Upload) -> Result<Teacher> {
        let name = match (&up.name, &up.filename) {
            (Some(n), _) => n.clone(),
            (None, Some(f)) => {
                if f.contains(['/', '\\', '\0']) || f == ".." || f == "." {
                    return Err(Error::invalid_input(format!(
                        "file name '{f}' must be a single path component (no '/', '\\' or '..')"
                    )));
                }
                f.strip_suffix(".onnx").unwrap_or(f).to_string()
            }
            (None, None) => {
                return Err(Error::invalid_input(
                    "give the teacher a name (form field `name`)",
                ));
            }
        };
        if !valid_name(&name) {
            return Err(Error::invalid_input(format!(
                "teacher name '{name}' is not allowed: use letters, digits, '_', '-', '.', not starting with '.' or '-'"
            )));
        }
        if let Some(v) = &up.version
            && !valid_name(v)
        {
            return Err(Error::invalid_input(format!(
                "version '{v}' is not allowed: use letters, digits, '_', '-', '.'"
            )));
        }
        let id = teacher_id(&name, up.version.as_deref());
        let (rel, card_rel) = match &up.version {
            None => (format!("{name}.onnx"), format!("{name}.card.json")),
            Some(v) => (
                format!("{name}/{v}/model.onnx"),
                format!("{name}/{v}/card.json"),
            ),
        };
        let card = up
            .labels
            .as_ref()
            .map(|l| serde_json::to_string_pretty(&serde_json::json!({ "labels": l })))
            .transpose()?;
        // read once: graph-checked here, inspected below
        let bytes = std::fs::read(staged)?;
        refuse_value_sized(&bytes)?;
        if let Some(check) = &self.check {
            // before the zoo's lock, so a slow check holds up no other write (and after the cheap
            // refusal of a taken id, which the lock below confirms)
            self.refuse_taken(&id, &rel)?;
            let report = check.run(staged, card.as_deref())?;
            tracing::info!(
                teacher = %id,
                peak_mb = report.peak_bytes >> 20,
                rows = report.rows,
                "upload checked apart from the server"
            );
        }
        let _guard = self.lock.lock().expect("zoo lock");
        let target = self.root.join(&rel);
        self.refuse_taken(&id, &rel)?;
        let ins = inspect(
            &bytes,
            Ident {
                id: id.clone(),
                name,
                version: up.version.clone().unwrap_or_else(|| "1".into()),
                path: rel.clone(),
            },
            card.as_deref(),
            self.pool.intra_threads(),
        );
        if let Some(want) = &up.sha256
            && !want.eq_ignore_ascii_case(&ins.teacher.sha256)
        {
            return Err(Error::invalid_input(format!(
                "sha256 mismatch: the client said {want}, the server received {}",
                ins.teacher.sha256
            )));
        }
        if !ins.teacher.usable {
            return Err(Error::invalid_model(
                ins.teacher.reason.clone().unwrap_or_default(),
            ));
        }
        if let Some(l) = &up.labels
            && ins.teacher.label_source != "card"
        {
            return Err(Error::invalid_input(format!(
                "labels names {} classes but the model outputs {}",
                l.len(),
                ins.teacher.num_classes.unwrap_or(0)
            )));
        }
        if let Some(blobs) = &self.blobs {
            return self.add_stored(blobs, staged, &bytes, ins, card);
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let card_path = self.root.join(&card_rel);
        let card_tmp = self.staging_dir()?.join(format!("{id}.card.tmp"));
        if let Some(c) = &card {
            std::fs::write(&card_tmp, c)?;
        }
        // create-only (a hard link fails on an existing name, where a rename would replace it): of
        // several servers sharing the zoo directory that upload one id at once, exactly one wins
        if let Err(e) = std::fs::hard_link(staged, &target) {
            let _ = std::fs::remove_file(&card_tmp);
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                return Err(Error::conflict(format!(
                    "a teacher with id '{id}' already exists; delete it first or pick another name/version"
                )));
            }
            return Err(e.into());
        }
        let _ = std::fs::remove_file(staged);
        if card.is_some() {
            std::fs::rename(&card_tmp, &card_path)?;
        }
        let fingerprint = Fingerprint {
            model: FileStamp::of(&target)?,
            card: card
                .as_ref()
                .map(|_| FileStamp::of(&card_path))
                .transpose()?,
        };
        let teacher = ins.teacher;
        self.tree.insert(
            id.as_bytes(),
            serde_json::to_vec(&Entry {
                teacher: teacher.clone(),
                fingerprint,
                stored: false,
                origin: self.origin.clone(),
                inspection: INSPECTION,
                card: None,
            })?,
        )?;
        self.store.flush()?;
        if let Some(s) = ins.session {
            self.pool.insert(&teacher.sha256, s, ins.session_bytes);
        }
        Ok(teacher)
    }

    /// An upload, validated, into the object store and the catalog: the blob is create-only under its
    /// sha256, the catalog entry create-only under its id, so of several servers that upload one id at once
    /// exactly one wins.
    fn add_stored(
        &self,
        blobs: &crate::store::Blobs,
        staged: &Path,
        bytes: &[u8],
        ins: super::teacher::Inspection,
        card: Option<String>,
    ) -> Result<Teacher> {
        let mut teacher = ins.teacher;
        teacher.path = stored_key(&teacher.sha256);
        blobs.put(&teacher.path, bytes)?;
        let entry = Entry {
            fingerprint: Fingerprint {
                model: FileStamp::of(staged)?,
                card: None,
            },
            teacher: teacher.clone(),
            stored: true,
            origin: None,
            inspection: INSPECTION,
            card,
        };
        let _ = std::fs::remove_file(staged);
        if !self
            .tree
            .insert_new(teacher.id.as_bytes(), serde_json::to_vec(&entry)?)?
        {
            return Err(Error::conflict(format!(
                "a teacher with id '{}' already exists; delete it first or pick another name/version",
                teacher.id
            )));
        }
        self.store.flush()?;
        ensure_blob(blobs, &teacher.path, bytes)?;
        if let Some(s) = ins.session {
            self.pool.insert(&teacher.sha256, s, ins.session_bytes);
        }
        Ok(teacher)
    }

    /// Whether a teacher in the catalog is kept in the blob store under these bytes.
    fn blob_in_use(&self, sha256: &str) -> Result<bool> {
        for (_, v) in self.tree.iter()? {
            if serde_json::from_slice::<Entry>(&v)
                .is_ok_and(|e| e.stored && e.teacher.sha256 == sha256)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Removes the blob of a deleted stored teacher unless another id holds the same bytes. Servers share
    /// the store, so an upload of the same bytes elsewhere can land while this runs: the blob is first
    /// moved aside, the catalog checked again, and put back if a teacher took it (an upload, for its part,
    /// checks its blob after entering the catalog and writes it again if it is gone). A crash between the
    /// move and the put-back leaves the blob aside, where the next rescan finds it.
    fn collect_blob(&self, blobs: &crate::store::Blobs, sha256: &str) -> Result<()> {
        if self.blob_in_use(sha256)? {
            return Ok(());
        }
        let (key, trash) = (stored_key(sha256), trash_key(sha256));
        if !blobs.exists(&key)? || !blobs.rename(&key, &trash)? {
            return Ok(());
        }
        if self.blob_in_use(sha256)? {
            blobs.rename(&trash, &key)?;
        } else {
            blobs.delete(&trash)?;
        }
        Ok(())
    }

    /// Deletes a teacher's file (and its card) from the zoo and the catalog. A teacher kept in the object
    /// store leaves the catalog, and its blob the store unless another id holds the same bytes.
    pub fn remove(&self, id: &str) -> Result<Teacher> {
        let _guard = self.lock.lock().expect("zoo lock");
        let e = self.entry(id)?;
        if e.stored {
            self.tree.remove(id.as_bytes())?;
            self.store.flush()?;
            self.pool.evict(&e.teacher.sha256);
            if let Some(blobs) = &self.blobs
                && let Err(err) = self.collect_blob(blobs, &e.teacher.sha256)
            {
                // the teacher is gone from the catalog either way; its blob stays for a later delete
                tracing::warn!(id, error = %err, "could not remove the deleted teacher's blob");
            }
            return Ok(e.teacher);
        }
        let model = self.root.join(&e.teacher.path);
        match std::fs::remove_file(&model) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err.into()),
        }
        let dir = model.parent().unwrap_or(&self.root).to_path_buf();
        if dir == self.root {
            let _ = std::fs::remove_file(self.root.join(format!("{}.card.json", e.teacher.name)));
        } else {
            let _ = std::fs::remove_file(dir.join("card.json"));
            let _ = std::fs::remove_file(dir.join("LICENSE"));
            let _ = std::fs::remove_dir(&dir);
            if let Some(name_dir) = dir.parent().filter(|p| *p != self.root) {
                let _ = std::fs::remove_dir(name_dir);
            }
        }
        self.tree.remove(id.as_bytes())?;
        self.store.flush()?;
        self.pool.evict(&e.teacher.sha256);
        Ok(e.teacher)
    }
}

/// How to read a teacher's probabilities, or why it cannot be used.
/// A teacher's graph as faculty runs it: the file's, with its batch freed where the inspection checked
/// that safe ([`crate::onnx::Predictor::freed_batch`]).
fn runnable_model(
    p: &crate::onnx::Predictor,
    path: &Path,
) -> Result<crate::onnx::proto::ModelProto> {
    let model = crate::onnx::graph::decode(&std::fs::read(path)?)?;
    match p.freed_batch {
        None => Ok(model),
        Some(b) => crate::onnx::batch::free_batch(&model, &p.input, b as i64).ok_or_else(|| {
            Error::conflict(format!(
                "the model at {} no longer fixes a batch of {b} rows; rescan the zoo",
                path.display()
            ))
        }),
    }
}

fn usable_predictor(t: &Teacher) -> Result<&crate::onnx::Predictor> {
    t.predictor.as_ref().filter(|_| t.usable).ok_or_else(|| {
        Error::invalid_input(format!(
            "teacher '{}' is not usable: {}",
            t.id,
            t.reason.as_deref().unwrap_or("unknown")
        ))
    })
}

/// Refuses an upload whose tensor sizes, branches or loops depend on the values of its input
/// ([`crate::onnx::sizes`]): the model check's probe rows cannot bound what such a model costs on a
/// dataset's rows. A file that is not a model passes, for the inspection to name its problem.
fn refuse_value_sized(bytes: &[u8]) -> Result<()> {
    let Ok(model) = crate::onnx::graph::decode(bytes) else {
        return Ok(());
    };
    match crate::onnx::sizes::value_dependent(&model) {
        None => Ok(()),
        Some(why) => Err(Error::invalid_model(format!(
            "{why}: the server bounds an uploaded model's memory and time by running it on probe \
             rows, which cannot bound what the rows of a dataset would make it do; nothing was stored"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_an_older_inspection_read_is_read_again_once() {
        let dir = tempfile::tempdir().unwrap();
        let model = crate::onnx::build::linear_classifier(&[1.0; 8], &[0.0, 0.0], 4, &["a", "b"]);
        std::fs::write(
            dir.path().join("m.onnx"),
            prost::Message::encode_to_vec(&model),
        )
        .unwrap();
        let store = crate::store::Store::temporary().unwrap();
        let zoo = Zoo::open(dir.path(), &store, Arc::new(SessionPool::new(1)), 16).unwrap();
        assert_eq!(zoo.rescan().unwrap().added, ["m"]);
        assert_eq!(zoo.rescan().unwrap().unchanged, 1);
        // as an older build left it: found unusable, its inspection not counted
        let mut old = zoo.load_any("m").unwrap().unwrap();
        old.inspection = 0;
        old.teacher.usable = false;
        old.teacher.reason = Some("the model fails on a probe batch".into());
        zoo.tree
            .insert(b"m", serde_json::to_vec(&old).unwrap())
            .unwrap();
        let report = zoo.rescan().unwrap();
        assert_eq!((report.hashed, report.unchanged), (1, 0), "{report:?}");
        assert_eq!(
            (report.reinspected, report.changed.len()),
            (vec!["m".to_string()], 0)
        );
        assert!(zoo.get("m").unwrap().usable);
        assert_eq!(zoo.rescan().unwrap().unchanged, 1, "once");
        // as a newer build left it: its reading stands, not read again by this older one
        let mut newer = zoo.load_any("m").unwrap().unwrap();
        newer.inspection = INSPECTION + 1;
        newer.teacher.description = Some("read by a newer build".into());
        zoo.tree
            .insert(b"m", serde_json::to_vec(&newer).unwrap())
            .unwrap();
        let report = zoo.rescan().unwrap();
        assert_eq!((report.hashed, report.unchanged), (0, 1), "{report:?}");
        assert_eq!(
            zoo.get("m").unwrap().description.as_deref(),
            Some("read by a newer build")
        );
    }

    /// A zoo whose one teacher `m` (a linear model with a card naming its labels and a licence) was
    /// pushed into a blob directory, with the model check `check` makes in a directory of its own; the
    /// temporary directories go with the second value.
    fn pushed(
        check: impl FnOnce(&Path) -> Option<super::super::check::ModelCheck>,
    ) -> (Zoo, [tempfile::TempDir; 3]) {
        let dirs = [(); 3].map(|_| tempfile::tempdir().unwrap());
        let [zoo_dir, src, data] = &dirs;
        let model = crate::onnx::build::linear_classifier(&[1.0; 8], &[0.0, 0.0], 4, &["a", "b"]);
        std::fs::write(
            src.path().join("m.onnx"),
            prost::Message::encode_to_vec(&model),
        )
        .unwrap();
        std::fs::write(
            src.path().join("m.card.json"),
            r#"{"labels": ["cat", "dog"], "licence": "CC-BY"}"#,
        )
        .unwrap();
        let store = crate::store::Store::temporary().unwrap();
        let blobs = Arc::new(crate::store::Blobs::open(None, data.path(), 16).unwrap());
        let mut zoo = Zoo::open(zoo_dir.path(), &store, Arc::new(SessionPool::new(1)), 16)
            .unwrap()
            .with_blobs(blobs);
        if let Some(c) = check(data.path()) {
            zoo = zoo.with_model_check(c);
        }
        assert_eq!(zoo.push(src.path()).unwrap().added, ["m"]);
        (zoo, dirs)
    }

    #[test]
    fn a_stored_teacher_an_older_inspection_read_is_read_again_with_its_card() {
        let (zoo, _dirs) = pushed(|_| None);
        let first = zoo.get("m").unwrap();
        assert_eq!(
            (first.labels.as_slice(), first.label_source.as_str()),
            (["cat".to_string(), "dog".to_string()].as_slice(), "card")
        );
        let report = zoo.rescan().unwrap();
        assert_eq!(
            (report.stored, report.reinspected.len()),
            (1, 0),
            "{report:?}"
        );
        // as an older build left it: found unusable, its inspection not counted; the second time also
        // without the card, as entries were stored before cards were kept
        for keep_card in [true, false] {
            let mut old = zoo.load_any("m").unwrap().unwrap();
            old.inspection = 0;
            old.teacher.usable = false;
            old.teacher.reason = Some("the model fails on a probe batch".into());
            if !keep_card {
                assert!(old.card.is_some());
                old.card = None;
            }
            zoo.tree
                .insert(b"m", serde_json::to_vec(&old).unwrap())
                .unwrap();
            assert!(!zoo.get("m").unwrap().usable);
            let report = zoo.rescan().unwrap();
            assert_eq!(report.reinspected, ["m"], "{report:?}");
            assert!(report.failed.is_empty(), "{report:?}");
            let again = zoo.get("m").unwrap();
            assert!(again.usable, "{again:?}");
            assert_eq!(
                (
                    &again.labels,
                    &again.label_source,
                    again.provenance.get("licence")
                ),
                (
                    &first.labels,
                    &first.label_source,
                    Some(&"CC-BY".to_string())
                ),
                "read again with its card (kept: {keep_card})"
            );
            assert_eq!(zoo.load_any("m").unwrap().unwrap().inspection, INSPECTION);
            assert!(zoo.rescan().unwrap().reinspected.is_empty(), "once");
        }
    }

    #[test]
    fn a_stored_teacher_the_model_check_refuses_when_read_again_stays_unusable_with_the_reason() {
        // a check that never answers: refused at its time limit, as a model that runs for hours is
        let (zoo, _dirs) = pushed(|dir| {
            let exe = dir.join("slow-check");
            std::fs::write(&exe, "#!/bin/sh\nsleep 30\n").unwrap();
            std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
            Some(super::super::check::ModelCheck::new(
                exe,
                1 << 30,
                0,
                std::time::Duration::from_millis(300),
                64,
            ))
        });
        let mut old = zoo.load_any("m").unwrap().unwrap();
        old.inspection = 0;
        zoo.tree
            .insert(b"m", serde_json::to_vec(&old).unwrap())
            .unwrap();
        let mut report = zoo.rescan().unwrap();
        if report.reinspected.is_empty() {
            // a script just written can fail to start (ETXTBSY) while another test's thread forks; a
            // check that could not run leaves the teacher for the next rescan
            std::thread::sleep(std::time::Duration::from_millis(200));
            report = zoo.rescan().unwrap();
        }
        assert_eq!(report.reinspected, ["m"], "{report:?}");
        let t = zoo.get("m").unwrap();
        assert!(!t.usable, "{t:?}");
        let reason = t.reason.unwrap_or_default();
        assert!(reason.contains("within 0.3 s"), "{reason}");
        assert_eq!(report.failed.len(), 1, "{report:?}");
        assert_eq!(zoo.rescan().unwrap().stored, 1);
    }

    #[test]
    fn a_zoo_directory_keeps_one_id_and_another_directory_gets_its_own() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let id = directory_origin(a.path()).unwrap();
        assert_eq!(id.len(), 32);
        assert!(a.path().join(ORIGIN_FILE).is_file());
        assert_eq!(
            directory_origin(a.path()).unwrap(),
            id,
            "read back, not made again"
        );
        assert_ne!(directory_origin(b.path()).unwrap(), id);
        // nothing but the id file is left in the directory
        let names: Vec<_> = std::fs::read_dir(a.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(ORIGIN_FILE)]);
        // a file that does not hold an id is named, not overwritten
        std::fs::write(b.path().join(ORIGIN_FILE), "../../etc\n").unwrap();
        let err = directory_origin(b.path()).unwrap_err();
        assert!(err.message.contains(ORIGIN_FILE), "{}", err.message);
        assert_eq!(
            std::fs::read_to_string(b.path().join(ORIGIN_FILE)).unwrap(),
            "../../etc\n"
        );
    }
}
