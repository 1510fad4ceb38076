//! Finished students: the ONNX file in the blob store under `students/<id>.onnx` (the id derives from its
//! sha256; a file is either whole or absent) and the card in the table `students`. The file is written
//! before the card, and the card before the job says `succeeded`, so a job that claims a student always
//! has one, even after a crash. A file fetched from an object store is checked against the card's sha256.
use std::path::PathBuf;
use std::sync::Arc;

use crate::distill::{Outcome, StudentCard};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::store::listing::{Listed, Listing, Paging};
use crate::store::{Blobs, Store};

#[derive(Clone)]
pub struct StudentStore {
    /// The cards, each with its list view (the card without its training history).
    cards: Listing<StudentCard>,
    blobs: Arc<Blobs>,
}

/// Filters and paging for listing students.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StudentQuery {
    /// Only students of this dataset.
    pub dataset_id: Option<String>,
    /// Students per page (1-500, default 100).
    pub page_size: Option<usize>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// A page of student cards, newest first, without their training histories (`history` is empty; GET
/// the student for it).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StudentPage {
    pub students: Vec<StudentCard>,
    /// Pass as `page_token` for the next page; null on the last page.
    pub next_page_token: Option<String>,
    /// Students matching the filters, over all pages.
    pub total: usize,
}

/// A card as listed: without its training history (a long training's is ~350 KB).
fn list_view(card: &StudentCard) -> StudentCard {
    StudentCard {
        history: Vec::new(),
        ..card.clone()
    }
}

impl Listed for StudentCard {
    fn created(&self) -> u64 {
        self.created
    }
    fn id(&self) -> &str {
        &self.id
    }
}

impl StudentStore {
    pub fn open(store: &Store, blobs: Arc<Blobs>) -> Result<Self> {
        Ok(Self {
            cards: Listing::open(store.tree("students")?, list_view)?,
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
        self.cards.put(&out.card.id, &out.card)?;
        self.cards.flush()?;
        Ok(out.card.clone())
    }

    pub fn get(&self, id: &str) -> Result<StudentCard> {
        self.cards
            .get(id)?
            .ok_or_else(|| Error::not_found(format!("no student '{id}'")))
    }

    /// A page of students, newest first, without their training histories.
    pub fn list(&self, q: &StudentQuery) -> Result<StudentPage> {
        let paging = Paging {
            page_size: q.page_size,
            page_token: q.page_token.as_deref(),
        };
        let keep = |c: &StudentCard| q.dataset_id.as_ref().is_none_or(|d| *d == c.dataset_id);
        let keep = q
            .dataset_id
            .is_some()
            .then_some(&keep as &dyn Fn(&StudentCard) -> bool);
        let (students, next_page_token, total) = self.cards.page(paging, |c| c, keep)?;
        Ok(StudentPage {
            students,
            next_page_token,
            total,
        })
    }

    /// Whether the card and its file are both there.
    pub fn exists(&self, id: &str) -> bool {
        self.cards.contains(id).unwrap_or(false)
            && Self::key(id).is_ok_and(|k| self.blobs.exists(&k).unwrap_or(false))
    }

    pub fn delete(&self, id: &str) -> Result<StudentCard> {
        let card = self.get(id)?;
        self.cards.remove(id)?;
        self.cards.flush()?;
        self.blobs.delete(&Self::key(id)?)?;
        Ok(card)
    }
}
