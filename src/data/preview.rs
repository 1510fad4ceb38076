//! A look at a dataset's rows for people: a few labeled images per class as 8-bit pixels (channel-first,
//! scaled to 0..255 over the samples shown, at most 64 pixels a side), for the dashboard's sample grid.
use serde::{Deserialize, Serialize};

use super::Dataset;
use crate::error::{Error, Result};

/// Largest image side the preview sends; larger images are subsampled (nearest pixel).
const MAX_SIDE: usize = 64;
/// Most samples per class.
pub const MAX_PER_CLASS: usize = 16;

/// One image.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Sample {
    /// Row index in the dataset.
    pub row: usize,
    pub class: String,
    /// `channels * height * width` bytes, channel-first.
    pub pixels: Vec<u8>,
}

/// Sample images of a dataset whose rows are images ([H, W], [1, H, W] or [3, H, W]).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Samples {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Up to `per_class` labeled rows of each class, in class order, evenly spaced over the class's rows.
    pub samples: Vec<Sample>,
}

/// `per_class` (1..=16) images of each class, or why the rows are not images.
pub fn samples(ds: &Dataset, per_class: usize) -> Result<Samples> {
    let shape = ds.row_shape();
    image_dims(&shape)?;
    let chosen = pick(&ds.y, ds.classes(), per_class);
    let x = ds.flat().select(ndarray::Axis(0), &chosen);
    render(x.view(), &shape, &chosen, &ds.y, &ds.labels)
}

/// The channels, height and width of an image row, or why `shape` is not one.
pub fn image_dims(shape: &[usize]) -> Result<(usize, usize, usize)> {
    match shape[..] {
        [h, w] => Ok((1, h, w)),
        [c, h, w] if c == 1 || c == 3 => Ok((c, h, w)),
        _ => Err(Error::invalid_input(format!(
            "rows of shape {shape:?} are not images (an image row is [H, W], [1, H, W] or [3, H, W])"
        ))),
    }
}

/// The rows [`samples`] shows: up to `per_class` (1..=16) labeled rows of each class, in class order,
/// evenly spaced over the class's rows.
pub fn pick(y: &[i64], classes: usize, per_class: usize) -> Vec<usize> {
    let per_class = per_class.clamp(1, MAX_PER_CLASS);
    let mut chosen = Vec::new();
    for class in 0..classes {
        let rows: Vec<usize> = (0..y.len()).filter(|&r| y[r] == class as i64).collect();
        let k = rows.len().min(per_class);
        chosen.extend((0..k).map(|i| rows[i * rows.len() / k.max(1)]));
    }
    chosen
}

/// The samples of the dataset's rows `rows` (row `i` of `x` is the dataset's row `rows[i]`, whose
/// label is `y[rows[i]]`), images of shape `shape`.
pub fn render(
    x: ndarray::ArrayView2<f32>,
    shape: &[usize],
    rows: &[usize],
    y: &[i64],
    labels: &[String],
) -> Result<Samples> {
    let (c, h, w) = image_dims(shape)?;
    let step = h.max(w).div_ceil(MAX_SIDE).max(1);
    let (oh, ow) = (h.div_ceil(step), w.div_ceil(step));
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    for &v in x.iter() {
        if v.is_finite() {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
    let samples = rows
        .iter()
        .zip(x.rows())
        .map(|(&r, row)| {
            let mut pixels = Vec::with_capacity(c * oh * ow);
            for ch in 0..c {
                for py in (0..h).step_by(step) {
                    for px in (0..w).step_by(step) {
                        let v = row[ch * h * w + py * w + px];
                        pixels.push(((v - lo) * scale).clamp(0.0, 255.0).round() as u8);
                    }
                }
            }
            Sample {
                row: r,
                class: labels[y[r] as usize].clone(),
                pixels,
            }
        })
        .collect();
    Ok(Samples {
        channels: c,
        height: oh,
        width: ow,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_scale_to_bytes_and_large_ones_shrink() {
        let x = ndarray::Array::from_shape_fn((4, 1, 130, 2), |(n, _, y, _)| (n * 130 + y) as f32)
            .into_dyn();
        let ds = Dataset {
            x,
            y: vec![0, 1, -1, 1],
            labels: vec!["a".into(), "b".into()],
        };
        let s = samples(&ds, 8).unwrap();
        assert_eq!((s.channels, s.height, s.width), (1, 44, 1));
        let rows: Vec<usize> = s.samples.iter().map(|s| s.row).collect();
        assert_eq!(rows, [0, 1, 3], "unlabeled rows are not shown");
        assert_eq!(s.samples[0].pixels[0], 0);
        assert_eq!(*s.samples[2].pixels.last().unwrap(), 255);
        let flat = Dataset {
            x: ndarray::Array::zeros((2, 16)).into_dyn(),
            y: vec![0, 1],
            labels: vec!["a".into(), "b".into()],
        };
        assert!(
            samples(&flat, 4)
                .unwrap_err()
                .message
                .contains("not images")
        );
    }
}
