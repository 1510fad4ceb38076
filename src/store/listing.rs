//! Listed copies of large records, and lists paged newest first. A job near its epoch cap is ~250 KB,
//! a student card with a long training history ~350 KB and a ranking of a big zoo tens of KB, so a list
//! that read the records would read tens of MB per hundred. Each record's list view (small: a job with
//! its latest epoch, a card without its history, a ranking's summary) is kept in the record's own table
//! under `~list/<id>`, written in the same batch (or transaction) as the record, so the two never
//! disagree; lists read only the views. Beside it, an empty key `~by/<created>/<id>` orders the records
//! by creation, so that a page of an unfiltered list reads only the views it shows (a filtered list
//! reads every view). Tables written before get their views and order keys once, at open (the keys
//! `~list` and `~by` mark a table whose views, and order keys, are complete).
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Batch, Table};
use crate::error::{Error, Result};

const PREFIX: &[u8] = b"~list/";
/// Just above every `~list/...` key (`0` follows `/`).
const PREFIX_END: &[u8] = b"~list0";
const COMPLETE: &[u8] = b"~list";
const BY: &[u8] = b"~by/";
const BY_END: &[u8] = b"~by0";
const BY_COMPLETE: &[u8] = b"~by";

/// What a list view says of its record's place in a list: when it was created (which never changes)
/// and its id.
pub trait Listed {
    fn created(&self) -> u64;
    fn id(&self) -> &str;
}

/// A table of records of type `T` with a list view of type `V` each.
#[derive(Clone)]
pub struct Listing<T, V = T> {
    table: Table,
    view: fn(&T) -> V,
    kind: PhantomData<fn() -> (T, V)>,
}

impl<T: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned + Listed> Listing<T, V> {
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
        if me.table.get(BY_COMPLETE)?.is_none() {
            me.for_each_view(|view| me.table.insert(order_key(&view), Vec::new()))?;
            me.table.insert(BY_COMPLETE, Vec::new())?;
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

    /// A record's list view (not found: `None`).
    pub fn view(&self, id: &str) -> Result<Option<V>> {
        if !is_record(id.as_bytes()) {
            return Ok(None);
        }
        self.table
            .get(view_key(id.as_bytes()))?
            .map(|v| Ok(serde_json::from_slice(&v)?))
            .transpose()
    }

    /// Whether a record is stored under `id` (reads its small view, not the record).
    pub fn contains(&self, id: &str) -> Result<bool> {
        Ok(is_record(id.as_bytes()) && self.table.get(view_key(id.as_bytes()))?.is_some())
    }

    /// The keys that go with a record: its view and its order key.
    fn companions(&self, id: &str, record: &T) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let view = (self.view)(record);
        Ok(vec![
            (view_key(id.as_bytes()), serde_json::to_vec(&view)?),
            (order_key(&view), Vec::new()),
        ])
    }

    /// Stores a record with its view and order key (not flushed).
    pub fn put(&self, id: &str, record: &T) -> Result<()> {
        let mut batch = Batch::default();
        batch.insert(id.as_bytes(), serde_json::to_vec(record)?);
        for (k, v) in self.companions(id, record)? {
            batch.insert(k, v);
        }
        self.table.apply_batch(batch)
    }

    /// Stores a record with its view and order key unless a record is stored under `id` already (then
    /// false; two writers racing for one id: exactly one wins).
    pub fn put_new(&self, id: &str, record: &T) -> Result<bool> {
        self.table.insert_new_with(
            id.as_bytes(),
            serde_json::to_vec(record)?,
            self.companions(id, record)?,
        )
    }

    /// Removes a record with its view and order key (not flushed).
    pub fn remove(&self, id: &str) -> Result<()> {
        let mut batch = Batch::default();
        if let Some(v) = self.table.get(view_key(id.as_bytes()))? {
            batch.remove(order_key(&serde_json::from_slice::<V>(&v)?));
        }
        batch.remove(id.as_bytes());
        batch.remove(view_key(id.as_bytes()));
        self.table.apply_batch(batch)
    }

    /// A page of the views newest first (by `created`, then id, both descending), each passed through
    /// `map` and kept when `keep` says so: the page, the next page's token, and how many views are kept
    /// over all pages. Without `keep` the page reads only the views it returns (and counts order keys);
    /// with it, every view.
    pub fn page(
        &self,
        paging: Paging,
        map: impl Fn(V) -> V,
        keep: Option<&dyn Fn(&V) -> bool>,
    ) -> Result<(Vec<V>, Option<String>, usize)> {
        let size = page_size(paging.page_size)?;
        let after = paging.page_token.map(parse_token).transpose()?;
        if let Some(keep) = keep {
            return self.page_filtered(size, after, map, keep);
        }
        let end = match after {
            Some((created, id)) => order_key_of(created, &id),
            None => BY_END.to_vec(),
        };
        let total = self.table.count(BY..BY_END)?;
        let mut page = Vec::with_capacity(size + 1);
        let mut end = end;
        // an order key whose view is gone (a record removed by a writer that did not know of them) is
        // skipped: read on until the page is full or the keys end
        while page.len() <= size {
            let want = size + 1 - page.len();
            let keys = self.table.keys_rev(BY..end.as_slice(), want)?;
            for k in &keys {
                let Some(id) = k.get(BY.len() + 17..) else {
                    continue;
                };
                if let Some(v) = self.table.get(view_key(id))? {
                    page.push(map(serde_json::from_slice(&v)?));
                }
            }
            match keys.last() {
                Some(k) if keys.len() == want => end = k.clone(),
                _ => break,
            }
        }
        Ok(end_page(page, size, total))
    }

    /// Calls `f` with every record's view, in id order, one at a time.
    pub fn for_each_view(&self, mut f: impl FnMut(V) -> Result<()>) -> Result<()> {
        self.table.for_each_in(Some(PREFIX..PREFIX_END), |_, v| {
            f(serde_json::from_slice(v)?)
        })
    }

    /// Every record's view, in id order.
    #[cfg(test)]
    pub fn views(&self) -> Result<Vec<V>> {
        self.table
            .range(PREFIX..PREFIX_END)?
            .into_iter()
            .map(|(_, v)| Ok(serde_json::from_slice(&v)?))
            .collect()
    }

    /// [`Listing::page`] with a filter: one pass over every view, holding the page's views only (the
    /// newest `size + 1` kept ones after the token, in a heap).
    fn page_filtered(
        &self,
        size: usize,
        after: Option<(u64, String)>,
        map: impl Fn(V) -> V,
        keep: &dyn Fn(&V) -> bool,
    ) -> Result<(Vec<V>, Option<String>, usize)> {
        let mut total = 0;
        let mut heap: BinaryHeap<Reverse<ByAge<V>>> = BinaryHeap::with_capacity(size + 2);
        self.for_each_view(|view| {
            let view = map(view);
            if !keep(&view) {
                return Ok(());
            }
            total += 1;
            let item = ByAge((view.created(), view.id().to_string()), view);
            if after.as_ref().is_none_or(|a| item.0 < *a) {
                heap.push(Reverse(item));
                if heap.len() > size + 1 {
                    heap.pop(); // the oldest
                }
            }
            Ok(())
        })?;
        // newest first
        let page: Vec<V> = heap.into_sorted_vec().into_iter().map(|r| r.0.1).collect();
        Ok(end_page(page, size, total))
    }

    pub fn flush(&self) -> Result<()> {
        self.table.flush()
    }
}

/// `page` (up to `size + 1` views, newest first) cut to `size`, with the next page's token when there
/// was one more, and `total`.
fn end_page<V: Listed>(
    mut page: Vec<V>,
    size: usize,
    total: usize,
) -> (Vec<V>, Option<String>, usize) {
    let more = page.len() > size;
    page.truncate(size);
    let next = more.then(|| {
        let v = page.last().expect("a full page");
        page_token(&format!("{}:{}", v.created(), v.id()))
    });
    (page, next, total)
}

/// A view ordered by its place in a list (`created`, id).
struct ByAge<V>((u64, String), V);

impl<V> PartialEq for ByAge<V> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<V> Eq for ByAge<V> {}
impl<V> PartialOrd for ByAge<V> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<V> Ord for ByAge<V> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

fn is_record(key: &[u8]) -> bool {
    !key.starts_with(b"~")
}

fn view_key(id: &[u8]) -> Vec<u8> {
    [PREFIX, id].concat()
}

/// `~by/<created, 16 hex digits>/<id>`: key order is creation order.
fn order_key_of(created: u64, id: &str) -> Vec<u8> {
    format!("~by/{created:016x}/{id}").into_bytes()
}

fn order_key<V: Listed>(view: &V) -> Vec<u8> {
    order_key_of(view.created(), view.id())
}

/// Paging of a list newest first (by `created`, then id, both descending).
#[derive(Debug, Clone, Default)]
pub struct Paging<'a> {
    /// Items per page (1-500, default 100).
    pub page_size: Option<usize>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<&'a str>,
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

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Rec {
        id: String,
        created: u64,
        body: Vec<i32>,
    }

    impl Listed for Rec {
        fn created(&self) -> u64 {
            self.created
        }
        fn id(&self) -> &str {
            &self.id
        }
    }

    fn rec(id: &str, created: u64, body: &[i32]) -> Rec {
        Rec {
            id: id.into(),
            created,
            body: body.to_vec(),
        }
    }

    /// The view: the record with the first number of its body only.
    fn first(r: &Rec) -> Rec {
        Rec {
            body: r.body[..1].to_vec(),
            ..r.clone()
        }
    }

    fn first_page(size: usize) -> Paging<'static> {
        Paging {
            page_size: Some(size),
            page_token: None,
        }
    }

    fn bodies(views: Vec<Rec>) -> Vec<Vec<i32>> {
        views.into_iter().map(|v| v.body).collect()
    }

    #[test]
    fn views_are_written_with_their_records_and_backfilled_at_open() {
        let store = super::super::Store::temporary().unwrap();
        let table = store.tree("things").unwrap();
        // a record stored before views existed
        table
            .insert(
                b"a1",
                serde_json::to_vec(&rec("a1", 1, &[1, 2, 3])).unwrap(),
            )
            .unwrap();
        let l: Listing<Rec> = Listing::open(table.clone(), first).unwrap();
        assert_eq!(bodies(l.views().unwrap()), vec![vec![1]]);
        l.put("b2", &rec("b2", 2, &[4, 5])).unwrap();
        assert_eq!(bodies(l.views().unwrap()), vec![vec![1], vec![4]]);
        assert_eq!(l.get("b2").unwrap(), Some(rec("b2", 2, &[4, 5])));
        assert_eq!(l.get("~list/b2").unwrap(), None);
        assert_eq!(l.get("~by").unwrap(), None);
        assert!(l.contains("a1").unwrap() && l.contains("b2").unwrap());
        assert!(!l.contains("zz").unwrap() && !l.contains("~list/b2").unwrap());
        l.remove("a1").unwrap();
        assert_eq!(bodies(l.views().unwrap()), vec![vec![4]]);
        assert!(l.put_new("c3", &rec("c3", 3, &[6])).unwrap());
        assert!(!l.put_new("c3", &rec("c3", 3, &[7])).unwrap());
        assert_eq!(bodies(l.views().unwrap()), vec![vec![4], vec![6]]);
        // reopening finds the views complete and adds none
        let again: Listing<Rec> = Listing::open(table.clone(), first).unwrap();
        assert_eq!(bodies(again.views().unwrap()), vec![vec![4], vec![6]]);
        // the order keys follow the records: put, put_new and remove
        let all = |l: &Listing<Rec>| {
            let (page, _, total) = l.page(Paging::default(), |v| v, None).unwrap();
            (bodies(page), total)
        };
        assert_eq!(all(&again), (vec![vec![6], vec![4]], 2));
        assert_eq!(table.count(BY..BY_END).unwrap(), 2);
    }

    #[test]
    fn a_page_reads_the_order_keys_newest_first_and_agrees_with_a_filtered_walk() {
        let store = super::super::Store::temporary().unwrap();
        let table = store.tree("things").unwrap();
        let l: Listing<Rec> = Listing::open(table.clone(), first).unwrap();
        // ids that sort differently from their creation, several created in the same second
        for i in 0..23u64 {
            let id = format!("r{:02}", (i * 7) % 23);
            l.put(&id, &rec(&id, 100 + i / 3, &[i as i32])).unwrap();
        }
        let walk = |keep: Option<&dyn Fn(&Rec) -> bool>, size: usize| {
            let mut seen = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let paging = Paging {
                    page_size: Some(size),
                    page_token: token.as_deref(),
                };
                let (page, next, total) = l.page(paging, |v| v, keep).unwrap();
                assert!(page.len() <= size);
                seen.extend(page.into_iter().map(|v| (v.created, v.id)));
                match next {
                    Some(t) => token = Some(t),
                    None => return (seen, total),
                }
            }
        };
        let mut expected: Vec<(u64, String)> = (0..23u64)
            .map(|i| (100 + i / 3, format!("r{:02}", (i * 7) % 23)))
            .collect();
        expected.sort_by(|a, b| b.cmp(a));
        let everything = |_: &Rec| true;
        for size in [1, 4, 23, 100] {
            assert_eq!(walk(None, size), (expected.clone(), 23), "page size {size}");
            // the filtered path (every view read) pages the same way
            assert_eq!(walk(Some(&everything), size), (expected.clone(), 23));
        }
        let odd = |r: &Rec| r.body[0] % 2 == 1;
        let (seen, total) = walk(Some(&odd), 4);
        assert_eq!(total, 11);
        assert!(seen.windows(2).all(|w| w[0] > w[1]));
        // an order key left behind without its view is skipped, the page still full
        table.insert(order_key_of(105, "gone"), Vec::new()).unwrap();
        let (page, _, _) = l.page(first_page(3), |v| v, None).unwrap();
        let ids: Vec<(u64, String)> = page.into_iter().map(|v| (v.created, v.id)).collect();
        assert_eq!(ids, expected[..3].to_vec());
        // a bad token is refused, naming it
        let bad = Paging {
            page_size: Some(3),
            page_token: Some("zz"),
        };
        let e = l.page(bad, |v| v, None).unwrap_err();
        assert!(e.message.contains("page_token"), "{}", e.message);
        for size in [0, 501] {
            let e = l.page(first_page(size), |v| v, None).unwrap_err();
            assert!(e.message.contains("page_size"), "{}", e.message);
        }
    }

    #[test]
    fn a_table_with_views_but_no_order_keys_gets_them_at_open() {
        let store = super::super::Store::temporary().unwrap();
        let table = store.tree("things").unwrap();
        let l: Listing<Rec> = Listing::open(table.clone(), first).unwrap();
        for i in 0..5u64 {
            l.put(&format!("x{i}"), &rec(&format!("x{i}"), i, &[i as i32]))
                .unwrap();
        }
        // as the previous version left it: views, and no order keys
        for k in table.keys_in(BY..BY_END).unwrap() {
            table.remove(k).unwrap();
        }
        table.remove(BY_COMPLETE).unwrap();
        let again: Listing<Rec> = Listing::open(table.clone(), first).unwrap();
        let (page, next, total) = again.page(Paging::default(), |v| v, None).unwrap();
        assert_eq!(
            bodies(page),
            vec![vec![4], vec![3], vec![2], vec![1], vec![0]]
        );
        assert_eq!((next, total), (None, 5));
    }
}
