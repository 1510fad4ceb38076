//! Finished students: the ONNX file in the blob store under `students/<id>.onnx` (the id derives from its
//! sha256; a file is either whole or absent) and the card in the table `students`. The file is written
//! before the card, and the card before the job says `succeeded`, so a job that claims a student always
//! has one, even after a crash. A file fetched from an object store is checked against the card's sha256.
use std::path::PathBuf;
use std::sync::Arc;

use crate::distill::{Outcome, StudentCard};
use crate::error::{Error, Result};
use crate::store::{Blobs, Store};

#[derive(Clone)]
pub struct StudentStore {
    tree: crate::store::Table,
    blobs: Arc<Blobs>,
}

impl StudentStore {
    pub fn open(store: &Store, blobs: Arc<Blobs>) -> Result<Self> {
        Ok(Self {
            tree: store.tree("students")?,
            blobs,
        })
    }

    /// Removes half-written student files an interrupted export left (at start).
    pub fn sweep_temporary(&self) -> Result<Vec<String>> {
        self.blobs.sweep("students", |n| {
            n.ends_with(".onnx.tmp") || n.starts_with(".tmp")
        })
    }

    /// The blob key of a student's ONNX file (the id is checked: it never escapes its directory).
    fn key(id: &str) -> Result<String> {
        if !id.starts_with("st_")
            || !id[3..].chars().all(|c| c.is_ascii_hexdigit())
            || id.len() != 19
        {
            return Err(Error::not_found(format!("no student '{id}'")));
        }
        Ok(format!("students/{id}.onnx"))
    }

    /// A local path of a student's ONNX file (fetched from the object store and checked against the
    /// card's sha256 where the files live there).
    pub fn file(&self, id: &str) -> Result<PathBuf> {
        let key = Self::key(id)?;
        let card = self.get(id)?;
        self.blobs.path(&key, Some(&card.sha256))
    }

    /// Stores a finished student durably and returns its card.
    pub fn put(&self, out: &Outcome) -> Result<StudentCard> {
        self.blobs.put(&Self::key(&out.card.id)?, &out.onnx)?;
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
        for (_, val) in self.tree.iter()? {
            v.push(serde_json::from_slice::<StudentCard>(&val)?);
        }
        v.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    /// Whether the card and its file are both there.
    pub fn exists(&self, id: &str) -> bool {
        self.get(id).is_ok() && Self::key(id).is_ok_and(|k| self.blobs.exists(&k).unwrap_or(false))
    }

    pub fn delete(&self, id: &str) -> Result<StudentCard> {
        let card = self.get(id)?;
        self.tree.remove(id.as_bytes())?;
        self.tree.flush()?;
        self.blobs.delete(&Self::key(id)?)?;
        Ok(card)
    }
}
