//! Mixup rows for the teacher to label: a few-shot task's unlabeled pool is where the student learns the
//! teacher's function, and a pool of a few hundred rows is small. Each synthetic row mixes two rows the
//! student may learn from (labeled training rows and the pool, never validation rows) with a uniform
//! weight; the teacher's outputs on it are its target, like any unlabeled row ("function matching",
//! Beyer et al. 2022, with the teacher's targets computed once).
use ndarray::{Array2, ArrayD, Axis, IxDyn, concatenate};

use super::student::SplitMix;
use crate::data::{Parsed, Rows};
use crate::error::{Error, Result};

/// The most memory a job's mixup rows may take: the rows themselves and the dataset joined with them as
/// floats (a pool grown to `mixup_pool` rows of 224x224 colour images would be 600 KB a row).
pub const MAX_BYTES: u64 = 256 << 20;

/// Refuses a `mixup_pool` whose rows, with the dataset's as floats, would take more than [`MAX_BYTES`].
pub fn check_size(ds: &Parsed, mixup_pool: usize) -> Result<()> {
    let width = ds.row_shape().iter().product::<usize>() as u64;
    let rows = ds.rows() as u64;
    if mixup_pool as u64 <= rows.saturating_sub(ds.labeled().len() as u64) {
        return Ok(()); // the unlabeled rows alone fill it: no mixup rows
    }
    let bytes = (rows + 2 * mixup_pool as u64) * width * 4;
    if bytes > MAX_BYTES {
        return Err(Error::invalid_input(format!(
            "config: mixup_pool {mixup_pool} would hold {} MiB of rows ({width} values each) next to \
             the dataset's; at most {} MiB: ask for fewer rows",
            bytes >> 20,
            MAX_BYTES >> 20
        )));
    }
    Ok(())
}

/// `n` rows [n, d], each `l * x_i + (1 - l) * x_j` for rows `i != j` drawn from `from` and `l`
/// uniform in [0, 1]; seeded.
pub fn mixup(ds: &Parsed, from: &[usize], n: usize, seed: u64) -> Array2<f32> {
    let x = ds.view();
    let mut rng = SplitMix(seed ^ 0x6d69_7875_7000);
    let mut out = Array2::<f32>::zeros((n, x.ncols()));
    if from.len() < 2 {
        return out.slice_move(ndarray::s![..0, ..]);
    }
    for mut row in out.rows_mut() {
        let i = from[(rng.next_u64() % from.len() as u64) as usize];
        let mut j = i;
        while j == i {
            j = from[(rng.next_u64() % from.len() as u64) as usize];
        }
        let l = rng.next_f64() as f32;
        for (k, v) in row.iter_mut().enumerate() {
            *v = l * x.get(i, k) + (1.0 - l) * x.get(j, k);
        }
    }
    out
}

/// Flat rows [n, d] as an unlabeled dataset shaped like `ds`'s rows (what a teacher reads).
pub fn unlabeled_like(ds: &Parsed, rows: Array2<f32>) -> Parsed {
    let n = rows.nrows();
    let mut shape = vec![n];
    shape.extend(ds.row_shape());
    let x = ArrayD::from_shape_vec(IxDyn(&shape), rows.into_raw_vec_and_offset().0)
        .expect("the element count matches the shape");
    Parsed {
        x: Rows::F32(x),
        y: vec![-1; n],
        labels: ds.labels.clone(),
    }
}

/// `ds` followed by `extra`'s rows (unlabeled), as float rows: the first rows keep their indices.
pub fn joined(ds: &Parsed, extra: &Parsed) -> Parsed {
    let all = concatenate(
        Axis(0),
        &[ds.view().to_f32().view(), extra.view().to_f32().view()],
    )
    .expect("rows of one width");
    let mut out = unlabeled_like(ds, all);
    out.y[..ds.rows()].copy_from_slice(&ds.y);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(n: usize) -> Parsed {
        let x: Vec<f32> = (0..n * 4).map(|v| v as f32).collect();
        Parsed {
            x: Rows::F32(ArrayD::from_shape_vec(IxDyn(&[n, 1, 2, 2]), x).unwrap()),
            y: (0..n as i64)
                .map(|i| if i < 4 { i % 2 } else { -1 })
                .collect(),
            labels: vec!["a".into(), "b".into()],
        }
    }

    #[test]
    fn mixup_rows_lie_between_two_of_the_rows_they_come_from() {
        let ds = dataset(10);
        let from = [1, 4, 7, 9];
        let m = mixup(&ds, &from, 200, 3);
        assert_eq!(m.dim(), (200, 4));
        assert_eq!(m, mixup(&ds, &from, 200, 3), "seeded");
        assert_ne!(m, mixup(&ds, &from, 200, 4));
        // row r of the dataset is [4r, 4r+1, 4r+2, 4r+3]: a mix of rows i and j is [4t, 4t+1, ...] with
        // t between i and j, so every row stays within the rows drawn from (never rows 0, 2, 3, 5, ...)
        for r in m.rows() {
            let t = r[0] / 4.0;
            assert!((1.0..=9.0).contains(&t), "{t}");
            for k in 1..4 {
                assert!((r[k] - r[0] - k as f32).abs() < 1e-4);
            }
        }
        let spread = m
            .column(0)
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(
            spread.0 < 12.0 && spread.1 > 28.0,
            "mixes span the rows: {spread:?}"
        );
        assert_eq!(
            mixup(&ds, &[5], 10, 0).nrows(),
            0,
            "one row cannot be mixed"
        );
    }

    #[test]
    fn joined_keeps_the_rows_and_labels_and_adds_unlabeled_rows() {
        let ds = dataset(6);
        let extra = unlabeled_like(&ds, mixup(&ds, &[0, 1, 4], 3, 0));
        assert_eq!(extra.row_shape(), vec![1, 2, 2]);
        let all = joined(&ds, &extra);
        assert_eq!(all.rows(), 9);
        assert_eq!(all.row_shape(), vec![1, 2, 2]);
        assert_eq!(&all.y[..6], &ds.y[..]);
        assert_eq!(&all.y[6..], &[-1, -1, -1]);
        assert_eq!(all.view().select(&[0, 5]), ds.view().select(&[0, 5]));
        assert_eq!(
            all.view().select(&[6, 7, 8]),
            extra.view().select(&[0, 1, 2])
        );
    }
}
