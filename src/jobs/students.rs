//! Finished students: the ONNX file under `<data_dir>/students/<id>.onnx` (written to a temporary name and
//! renamed, so a file is either whole or absent) and the card in the sled tree `students`. The file is
//! written before the card, and the card before the job says `succeeded`, so a job that claims a student
//! always has one, even after a crash.
use std::path::{Path, PathBuf};

use crate::distill::{Outcome, StudentCard};
use crate::error::{Error, Result};
use crate::store::Store;

#[derive(Clone)]
pub struct StudentStore {
    tree: sled::Tree,
    dir: PathBuf,
}

impl StudentStore {
    pub fn open(store: &Store, data_dir: &Path) -> Result<Self> {
        let dir = data_dir.join("students");
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            tree: store.tree("students")?,
            dir,
        })
    }

    /// Removes half-written student files an interrupted export left (at start).
    pub fn sweep_temporary(&self) -> Result<Vec<String>> {
        crate::store::sweep(&self.dir, |n| n.ends_with(".onnx.tmp"))
    }

    /// Path of a student's ONNX file (the id is checked: it never escapes the directory).
    pub fn file(&self, id: &str) -> Result<PathBuf> {
        if !id.starts_with("st_")
            || !id[3..].chars().all(|c| c.is_ascii_hexdigit())
            || id.len() != 19
        {
            return Err(Error::not_found(format!("no student '{id}'")));
        }
        Ok(self.dir.join(format!("{id}.onnx")))
    }

    /// Stores a finished student durably and returns its card.
    pub fn put(&self, out: &Outcome) -> Result<StudentCard> {
        let path = self.file(&out.card.id)?;
        let tmp = path.with_extension("onnx.tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&out.onnx)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        self.tree
            .insert(out.card.id.as_bytes(), serde_json::to_vec(&out.card)?)?;
        self.tree.flush()?;
        Ok(out.card.clone())
    }

    pub fn get(&self, id: &str) -> Result<StudentCard> {
        let v = self
            .tree
            .get(id.as_bytes())?
            .ok_or_else(|| Error::not_found(format!("no student '{id}'")))?;
        Ok(serde_json::from_slice(&v)?)
    }

    /// Every student, newest first.
    pub fn list(&self) -> Result<Vec<StudentCard>> {
        let mut v = Vec::new();
        for kv in self.tree.iter() {
            let (_, val) = kv?;
            v.push(serde_json::from_slice::<StudentCard>(&val)?);
        }
        v.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    /// Whether the card and its file are both there.
    pub fn exists(&self, id: &str) -> bool {
        self.get(id).is_ok() && self.file(id).is_ok_and(|p| p.is_file())
    }

    pub fn delete(&self, id: &str) -> Result<StudentCard> {
        let card = self.get(id)?;
        self.tree.remove(id.as_bytes())?;
        self.tree.flush()?;
        let _ = std::fs::remove_file(self.file(id)?);
        Ok(card)
    }
}
