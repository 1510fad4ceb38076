//! The rows a ranking looks at. A ranking's estimates (mean log-likelihoods, transport costs, mapped
//! accuracies) settle long before a big dataset's last row, while every row costs a pass through every
//! teacher, its cached outputs and their scoring: 200,000 labeled images took 6 minutes, 2.5 GB of memory
//! and 3.3 GB of cache. A dataset with more than `MAX_LABELED` labeled rows or `super::POOL_MAX_ROWS`
//! unlabeled ones is ranked on a sample: its labeled rows stratified (every class in proportion, at least
//! `MIN_PER_CLASS` rows of each, fewer past 200 classes, evenly spaced within the class; all of them
//! under the limit) and at most
//! `super::POOL_MAX_ROWS` of its unlabeled rows, evenly spaced (the ones the pool term looks at anyway). The sample depends only on the labels, so it is the same every time, and its outputs are
//! cached under a key of their own (a job's teacher outputs on the whole dataset keep the dataset's).
use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::data::{DatasetStore, Parsed, Rows};
use crate::error::Result;

/// Labeled rows a ranking looks at, at most (beyond the few classes' minimum).
pub const MAX_LABELED: usize = 10_000;

/// Rows of each class a sample keeps at least (all of a smaller class).
pub const MIN_PER_CLASS: usize = 50;

/// How many rows the ranked dataset has, when the ranking looked at a sample of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SampledFrom {
    pub labeled_rows: usize,
    pub rows: usize,
}

/// A ranking's rows: the dataset's, or a sample of them, with the dataset's sha256. Rows held as bytes
/// stay bytes (teachers read them a block at a time).
pub struct RankRows<'a> {
    pub ds: Cow<'a, Parsed>,
    pub sha256: String,
    /// Set when `ds` is a sample.
    pub sampled_from: Option<SampledFrom>,
}

impl<'a> RankRows<'a> {
    /// The rows a ranking of `ds` looks at (borrowed when that is every row).
    pub fn of(ds: &'a Parsed, sha256: &str) -> Self {
        match pick(&ds.y) {
            None => Self {
                ds: Cow::Borrowed(ds),
                sha256: sha256.to_string(),
                sampled_from: None,
            },
            Some(rows) => Self {
                sampled_from: Some(counts(&ds.y)),
                ds: Cow::Owned(ds.select(&rows)),
                sha256: sha256.to_string(),
            },
        }
    }

    /// The key its teacher outputs and scores are cached under: the dataset's sha256 for every row, one
    /// of the sample's own otherwise.
    pub fn cache_key(&self) -> String {
        match &self.sampled_from {
            None => self.sha256.clone(),
            Some(_) => crate::zoo::teacher::sha256_hex(
                format!(
                    "{}:ranking sample:{MAX_LABELED}:{MIN_PER_CLASS} scaled past 200 classes:{}",
                    self.sha256,
                    super::POOL_MAX_ROWS
                )
                .as_bytes(),
            ),
        }
    }
}

impl RankRows<'static> {
    /// The rows a ranking of a parsed file looks at (kept as parsed).
    pub fn from_parsed(p: Parsed) -> Self {
        let sha256 = p.sha256();
        match pick(&p.y) {
            None => Self {
                ds: Cow::Owned(p),
                sha256,
                sampled_from: None,
            },
            Some(rows) => Self {
                sampled_from: Some(counts(&p.y)),
                ds: Cow::Owned(p.select(&rows)),
                sha256,
            },
        }
    }

    /// The bytes [`RankRows::load`] will hold for stored dataset `id`: the sample's rows as floats, or
    /// every row as stored.
    pub fn load_bytes(datasets: &DatasetStore, id: &str) -> Result<u64> {
        let held = datasets.held(id)?;
        Ok(match pick(&held.y) {
            Some(rows) => (rows.len() * held.row_len() * 4) as u64,
            None => held.bytes(),
        })
    }

    /// Reads the rows a ranking of stored dataset `id` looks at: only the sample's, when it has one.
    pub fn load(datasets: &DatasetStore, id: &str) -> Result<Self> {
        let mut sampled = None;
        let some = datasets.load_rows(id, |_, y| {
            Ok(pick(y)
                .inspect(|_| sampled = Some(counts(y)))
                .unwrap_or_default())
        })?;
        if sampled.is_none() {
            let (info, ds) = datasets.load_parsed(id)?;
            return Ok(Self {
                ds: Cow::Owned(ds),
                sha256: info.sha256,
                sampled_from: None,
            });
        }
        let mut shape = vec![some.rows.len()];
        shape.extend(&some.info.row_shape);
        let x = some
            .x
            .into_shape_with_order(ndarray::IxDyn(&shape))
            .map_err(|e| crate::error::Error::internal(format!("dataset {id}: {e}")))?;
        Ok(Self {
            ds: Cow::Owned(Parsed {
                x: Rows::F32(x),
                y: some.rows.iter().map(|&r| some.y[r]).collect(),
                labels: some.labels,
            }),
            sha256: some.info.sha256,
            sampled_from: sampled,
        })
    }
}

fn counts(y: &[i64]) -> SampledFrom {
    SampledFrom {
        labeled_rows: y.iter().filter(|&&c| c >= 0).count(),
        rows: y.len(),
    }
}

/// The rows (ascending) a ranking of a dataset with labels `y` looks at; `None` for every row.
pub fn pick(y: &[i64]) -> Option<Vec<usize>> {
    let labeled = y.iter().filter(|&&c| c >= 0).count();
    let unlabeled = y.len() - labeled;
    if labeled <= MAX_LABELED && unlabeled <= super::POOL_MAX_ROWS {
        return None;
    }
    let mut by_class: Vec<Vec<usize>> = Vec::new();
    let mut pool = Vec::new();
    for (i, &c) in y.iter().enumerate() {
        if c < 0 {
            pool.push(i);
        } else {
            let c = c as usize;
            if by_class.len() <= c {
                by_class.resize_with(c + 1, Vec::new);
            }
            by_class[c].push(i);
        }
    }
    // the per-class minimum shrinks past 200 classes, so that the sample stays near MAX_LABELED rows
    // (a ranking holds matrices of rows x classes; with up to 1,000 classes of 50 rows that was 50,000)
    let min_per_class = MIN_PER_CLASS
        .min(MAX_LABELED / by_class.len().max(1))
        .max(1);
    let mut rows = Vec::new();
    for class in by_class {
        let share = (MAX_LABELED * class.len()).div_ceil(labeled.max(1));
        let keep = share.max(min_per_class);
        rows.extend(super::spaced(class, keep));
    }
    // the same pool rows `super::pool` would take from the whole dataset
    rows.extend(super::spaced(pool, super::POOL_MAX_ROWS));
    rows.sort_unstable();
    Some(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Dataset, Format, Parsed};

    #[test]
    fn many_classes_keep_the_sample_near_its_limit() {
        // 1,000 classes of 60 rows: 50 a class would be 50,000 rows (a ranking holds rows x classes)
        let y: Vec<i64> = (0..60_000).map(|r| r % 1000).collect();
        let rows = pick(&y).unwrap();
        assert!(rows.len() <= MAX_LABELED + 1000, "{}", rows.len());
        let mut seen = vec![0usize; 1000];
        for &r in &rows {
            seen[y[r] as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c >= 10), "every class keeps 10 rows");
        // 100 classes keep 50 each, as before
        let y: Vec<i64> = (0..60_000).map(|r| r % 100).collect();
        let rows = pick(&y).unwrap();
        assert_eq!(rows.len(), MAX_LABELED);
    }

    #[test]
    fn a_stored_dataset_reads_the_same_sample_as_the_whole_one_gives() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::temporary().unwrap();
        let blobs = std::sync::Arc::new(crate::store::Blobs::open(None, dir.path(), 0).unwrap());
        let datasets = DatasetStore::open(&store, blobs).unwrap();
        let n = 3 * super::super::POOL_MAX_ROWS;
        let x = ndarray::Array::from_shape_fn((n, 1, 2, 2), |(r, _, h, w)| {
            ((r * 4 + h * 2 + w) % 255) as f32 / 255.0
        })
        .into_dyn();
        let y = (0..n as i64)
            .map(|i| if i % 50 == 3 { i % 3 } else { -1 })
            .collect();
        let ds = Dataset {
            x,
            y,
            labels: vec!["a".into(), "b".into(), "c".into()],
        };
        let parsed = Parsed::from(ds.clone());
        let (info, _) = datasets.put(&parsed, "t.npz", Format::Npz).unwrap();
        let whole = RankRows::of(&parsed, &info.sha256);
        let read = RankRows::load(&datasets, &info.id).unwrap();
        assert_eq!(read.ds.view().to_f32(), whole.ds.view().to_f32());
        assert_eq!(read.ds.y, whole.ds.y);
        assert_eq!(read.ds.labels, ds.labels);
        assert_eq!(read.sampled_from, whole.sampled_from);
        assert_eq!(
            whole.sampled_from,
            Some(SampledFrom {
                labeled_rows: n / 50,
                rows: n
            })
        );
        assert_eq!(read.sha256, info.sha256);
        assert_eq!(read.cache_key(), whole.cache_key());
        assert_ne!(
            read.cache_key(),
            info.sha256,
            "the sample's outputs are cached apart"
        );
        // a dataset a ranking reads whole keeps its own key
        let small = Parsed::from(ds.subset(&(0..100).collect::<Vec<_>>(), 100));
        let rows = RankRows::of(&small, "abc");
        assert!(rows.sampled_from.is_none() && matches!(rows.ds, Cow::Borrowed(_)));
        assert_eq!(rows.cache_key(), "abc");
    }

    #[test]
    fn a_parsed_file_gives_the_sample_its_floats_give() {
        let n = 3 * super::super::POOL_MAX_ROWS;
        let x = ndarray::Array::from_shape_fn((n, 1, 2, 2), |(r, _, h, w)| {
            ((r * 7 + h * 2 + w) % 256) as u8
        })
        .into_dyn();
        let p = Parsed {
            x: crate::data::Rows::Px8(x),
            y: (0..n as i64)
                .map(|i| if i % 40 == 1 { i % 4 } else { -1 })
                .collect(),
            labels: vec!["a".into(), "b".into(), "c".into(), "d".into()],
        };
        let floats = Parsed::from(p.clone().into_f32());
        let whole = RankRows::of(&floats, &floats.sha256());
        let parsed = RankRows::from_parsed(p);
        assert!(parsed.sampled_from.is_some());
        assert_eq!(parsed.sampled_from, whole.sampled_from);
        assert_eq!(parsed.sha256, whole.sha256);
        assert_eq!(parsed.cache_key(), whole.cache_key());
        assert!(
            matches!(parsed.ds.x, crate::data::Rows::Px8(_)),
            "pixels stay bytes"
        );
        assert_eq!(parsed.ds.view().to_f32(), whole.ds.view().to_f32());
        assert_eq!(parsed.ds.y, whole.ds.y);
    }

    #[test]
    fn small_datasets_are_ranked_whole_and_big_ones_on_a_stratified_sample() {
        // under both limits: every row
        let y: Vec<i64> = (0..MAX_LABELED as i64).map(|i| i % 7).collect();
        assert_eq!(pick(&y), None);
        // 60,000 labeled rows sorted by class, one class of 30 rows, 5,000 unlabeled
        let mut y: Vec<i64> = Vec::new();
        for c in 0..10i64 {
            let n = if c == 3 { 30 } else { 6_663 };
            y.extend(std::iter::repeat_n(c, n));
        }
        y.extend(std::iter::repeat_n(-1, 5_000));
        let rows = pick(&y).expect("a sample");
        assert!(
            rows.windows(2).all(|w| w[0] < w[1]),
            "ascending, no repeats"
        );
        let kept = |c: i64| rows.iter().filter(|&&r| y[r] == c).count();
        assert_eq!(kept(3), 30, "a class under the minimum is kept whole");
        for c in (0..10).filter(|&c| c != 3) {
            let k = kept(c);
            assert!((1_000..=1_200).contains(&k), "class {c}: {k} rows");
        }
        let labeled = rows.iter().filter(|&&r| y[r] >= 0).count();
        assert!(labeled <= MAX_LABELED + MIN_PER_CLASS, "{labeled}");
        let pool: Vec<usize> = rows.iter().copied().filter(|&r| y[r] < 0).collect();
        assert!(pool.len() <= super::super::POOL_MAX_ROWS && pool.len() >= 1_500);
        // evenly spaced: the kept rows of a class span it
        let zeros: Vec<usize> = rows.iter().copied().filter(|&r| y[r] == 0).collect();
        assert_eq!(zeros[0], 0);
        assert!(*zeros.last().unwrap() > 6_600);
        // a big pool alone is enough to sample (the labeled rows stay whole)
        let mut y: Vec<i64> = (0..100).map(|i| i % 4).collect();
        y.extend(std::iter::repeat_n(-1, 3 * super::super::POOL_MAX_ROWS));
        let rows = pick(&y).expect("a sample");
        assert_eq!(rows.iter().filter(|&&r| y[r] >= 0).count(), 100);
        assert_eq!(
            rows.iter().filter(|&&r| y[r] < 0).count(),
            super::super::POOL_MAX_ROWS
        );
    }
}
