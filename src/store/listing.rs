//! Listed copies of large records, and lists paged newest first. A job near its epoch cap is ~250 KB,
//! a student card with a long training history ~350 KB and a ranking of a big zoo tens of KB, so a list
//! that read the records would read tens of MB per hundred. Each record's list view (small: a job with
//! its latest epoch, a card without its history, a ranking's summary) is kept in the record's own table
//! under `~list/<id>`, written in the same batch (or transaction) as the record, so the two never
//! disagree; lists read only the views. Tables written before views existed get theirs once, at open
//! (the key `~list` marks a table whose views are complete).
use std::collections::HashSet;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Batch, Table};
use crate::error::{Error, Result};

const PREFIX: &[u8] = b"~list/";
/// Just above every `~list/...` key (`0` follows `/`).
const PREFIX_END: &[u8] = b"~list0";
const COMPLETE: &[u8] = b"~list";

/// A table of records of type `T` with a list view of type `V` each.
#[derive(Clone)]
pub struct Listing<T, V = T> {
    table: Table,
    view: fn(&T) -> V,
    kind: PhantomData<fn() -> (T, V)>,
}

impl<T: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> Listing<T, V> {
    /// The records of `table`, `view` making a record's list view; gives every record stored before
    /// views existed its view.
    pub fn open(table: Table, view: fn(&T) -> V) -> Result<Self> {
        let me = Self {
            table,
            view,
            kind: PhantomData,
        };
        if me.table.get(COMPLETE)?.is_none() {
            let have: HashSet<Vec<u8>> = me
                .table
                .keys_in(PREFIX..PREFIX_END)?
                .into_iter()
                .map(|k| k[PREFIX.len()..].to_vec())
                .collect();
            me.table.for_each(|key, value| {
                if !is_record(key) || have.contains(key) {
                    return Ok(());
                }
                let record: T = serde_json::from_slice(value)?;
                me.table
                    .insert(view_key(key), serde_json::to_vec(&view(&record))?)
            })?;
            me.table.insert(COMPLETE, Vec::new())?;
            me.table.flush()?;
        }
        Ok(me)
    }

    /// The whole record (not found: `None`; ids of the view keys are never records).
    pub fn get(&self, id: &str) -> Result<Option<T>> {
        if !is_record(id.as_bytes()) {
            return Ok(None);
        }
        self.table
            .get(id.as_bytes())?
            .map(|v| Ok(serde_json::from_slice(&v)?))
            .transpose()
    }

    /// Whether a record is stored under `id` (reads its small view, not the record).
    pub fn contains(&self, id: &str) -> Result<bool> {
        Ok(is_record(id.as_bytes()) && self.table.get(view_key(id.as_bytes()))?.is_some())
    }

    /// Stores a record and its view together (not flushed).
    pub fn put(&self, id: &str, record: &T) -> Result<()> {
        let mut batch = Batch::default();
        batch.insert(id.as_bytes(), serde_json::to_vec(record)?);
        batch.insert(
            view_key(id.as_bytes()),
            serde_json::to_vec(&(self.view)(record))?,
        );
        self.table.apply_batch(batch)
    }

    /// Stores a record and its view together unless a record is stored under `id` already (then false;
    /// two writers racing for one id: exactly one wins).
    pub fn put_new(&self, id: &str, record: &T) -> Result<bool> {
        self.table.insert_new_with(
            id.as_bytes(),
            serde_json::to_vec(record)?,
            vec![(
                view_key(id.as_bytes()),
                serde_json::to_vec(&(self.view)(record))?,
            )],
        )
    }

    /// Removes a record and its view together (not flushed).
    pub fn remove(&self, id: &str) -> Result<()> {
        let mut batch = Batch::default();
        batch.remove(id.as_bytes());
        batch.remove(view_key(id.as_bytes()));
        self.table.apply_batch(batch)
    }

    /// Every record's view, in id order.
    pub fn views(&self) -> Result<Vec<V>> {
        self.table
            .range(PREFIX..PREFIX_END)?
            .into_iter()
            .map(|(_, v)| Ok(serde_json::from_slice(&v)?))
            .collect()
    }

    pub fn flush(&self) -> Result<()> {
        self.table.flush()
    }
}

fn is_record(key: &[u8]) -> bool {
    !key.starts_with(b"~")
}

fn view_key(id: &[u8]) -> Vec<u8> {
    [PREFIX, id].concat()
}

/// Paging of a list newest first (by `created`, then id, both descending).
#[derive(Debug, Clone, Default)]
pub struct Paging<'a> {
    /// Items per page (1-500, default 100).
    pub page_size: Option<usize>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<&'a str>,
}

/// A page of `items`, newest first by `key` (`created`, id): the page, the token of the next one (none
/// on the last page), and how many items there are over all pages.
pub fn newest_first<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> (u64, &str),
    paging: Paging,
) -> Result<(Vec<T>, Option<String>, usize)> {
    let size = page_size(paging.page_size)?;
    let after = paging.page_token.map(parse_token).transpose()?;
    items.sort_by(|a, b| key(b).cmp(&key(a)));
    let total = items.len();
    let mut page: Vec<T> = items
        .into_iter()
        .filter(|t| {
            after
                .as_ref()
                .is_none_or(|(c, id)| key(t) < (*c, id.as_str()))
        })
        .take(size + 1)
        .collect();
    let more = page.len() > size;
    page.truncate(size);
    let next = more.then(|| {
        let (c, id) = key(page.last().expect("a full page"));
        page_token(&format!("{c}:{id}"))
    });
    Ok((page, next, total))
}

/// A list's page size: `page_size` if given (1-500), else 100.
pub fn page_size(page_size: Option<usize>) -> Result<usize> {
    let size = page_size.unwrap_or(100);
    if !(1..=500).contains(&size) {
        return Err(Error::invalid_input("page_size must be between 1 and 500"));
    }
    Ok(size)
}

/// The page token of a list's position `at` (hex, so that it travels in a query string as it is).
pub fn page_token(at: &str) -> String {
    hex::encode(at)
}

/// The position a page token names ([`page_token`]'s inverse).
pub fn token_position(tok: &str) -> Result<String> {
    hex::decode(tok)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| Error::invalid_input("page_token is not a token this server issued"))
}

/// The position a page token of a newest-first list names: the last listed item's `created` and id.
fn parse_token(tok: &str) -> Result<(u64, String)> {
    token_position(tok)?
        .split_once(':')
        .and_then(|(c, id)| Some((c.parse().ok()?, id.to_string())))
        .ok_or_else(|| Error::invalid_input("page_token is not a token this server issued"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_walk_every_item_once_newest_first() {
        let items: Vec<(u64, String)> = (0..7).map(|i| (i / 2, format!("id{i}"))).collect();
        fn key(t: &(u64, String)) -> (u64, &str) {
            (t.0, &t.1)
        }
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let paging = Paging {
                page_size: Some(3),
                page_token: token.as_deref(),
            };
            let (page, next, total) = newest_first(items.clone(), key, paging).unwrap();
            assert_eq!(total, 7);
            assert!(page.len() <= 3);
            seen.extend(page.into_iter().map(|t| t.1));
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, ["id6", "id5", "id4", "id3", "id2", "id1", "id0"]);
        let bad = Paging {
            page_size: Some(3),
            page_token: Some("zz"),
        };
        let e = newest_first(items.clone(), key, bad).unwrap_err();
        assert!(e.message.contains("page_token"), "{}", e.message);
        let big = Paging {
            page_size: Some(501),
            page_token: None,
        };
        assert!(newest_first(items, key, big).is_err());
    }

    #[test]
    fn views_are_written_with_their_records_and_backfilled_at_open() {
        let store = super::super::Store::temporary().unwrap();
        let table = store.tree("things").unwrap();
        // a record stored before views existed
        table
            .insert(b"a1", serde_json::to_vec(&vec![1, 2, 3]).unwrap())
            .unwrap();
        let first = |v: &Vec<i32>| v[..1].to_vec();
        let l: Listing<Vec<i32>> = Listing::open(table.clone(), first).unwrap();
        assert_eq!(l.views().unwrap(), vec![vec![1]]);
        l.put("b2", &vec![4, 5]).unwrap();
        assert_eq!(l.views().unwrap(), vec![vec![1], vec![4]]);
        assert_eq!(l.get("b2").unwrap(), Some(vec![4, 5]));
        assert_eq!(l.get("~list/b2").unwrap(), None);
        assert!(l.contains("a1").unwrap() && l.contains("b2").unwrap());
        assert!(!l.contains("zz").unwrap() && !l.contains("~list/b2").unwrap());
        l.remove("a1").unwrap();
        assert_eq!(l.views().unwrap(), vec![vec![4]]);
        // reopening finds the views complete and adds none
        assert!(l.put_new("c3", &vec![6]).unwrap());
        assert!(!l.put_new("c3", &vec![7]).unwrap());
        assert_eq!(l.views().unwrap(), vec![vec![4], vec![6]]);
        let again: Listing<Vec<i32>> = Listing::open(table, first).unwrap();
        assert_eq!(again.views().unwrap(), vec![vec![4], vec![6]]);
    }
}
