//! How a dataset's rows reach a model's input when their shapes differ: a reshape with the same element
//! count (`[1, 28, 28]` rows to a `[784]` input), image rows whose channel axis moves (`[C, H, W]` rows to
//! the `[H, W, C]` input TensorFlow exports have, or back), or image rows resized to the model's image
//! size (bilinear, grey copied to three channels or colour averaged to one), as transfer learning feeds
//! 28x28 digits to an ImageNet classifier. Adapted a batch at a time: a dataset's resized copy is never
//! held whole.
use std::borrow::Cow;

use crate::error::{Error, Result};

/// How a dataset's rows reach a model's input ([`fit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFit {
    /// The per-row shape the model receives.
    pub shape: Vec<usize>,
    pub adapt: Adapt,
}

/// What is done to the rows on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adapt {
    /// Nothing: the values keep their order (the shape may be a reshape with the same element count).
    Keep,
    /// Image rows whose channel axis moves: from first to last (`[C, H, W]` rows to an `[H, W, C]`
    /// input) or from last to first.
    MoveChannels { to_last: bool },
    /// Image rows `from` ([C, H, W], channel-first; rows that are channel-last, [H, W, C], when
    /// `from_last`) resized to `to` ([C', H', W'], C and C' 1 or 3), then given channel-last when
    /// `to_last`.
    Resize {
        from: [usize; 3],
        from_last: bool,
        to: [usize; 3],
        to_last: bool,
    },
}

/// The largest image a row is resized to (pixels): beyond it one row costs more than a batch should.
const MAX_RESIZED: usize = 1024 * 1024;

/// How much a resize may change a picture's height-to-width ratio (either way).
const MAX_ASPECT_CHANGE: f64 = 1.25;

/// How rows of shape `row_shape` fit a model input of shape `input_shape` (batch first, -1 where
/// dynamic): exactly; as image rows whose channel axis moves; by a reshape with the same element count;
/// or as image rows resized to the model's image size.
pub fn fit(input_shape: &[i64], row_shape: &[usize]) -> Result<RowFit> {
    let want = &input_shape[1..];
    let fits = |w: i64, h: usize| w < 0 || w as usize == h;
    let keep = |shape: Vec<usize>| {
        Ok(RowFit {
            shape,
            adapt: Adapt::Keep,
        })
    };
    if want.len() == row_shape.len() && want.iter().zip(row_shape).all(|(&w, &h)| fits(w, h)) {
        return keep(row_shape.to_vec());
    }
    let moved = |shape: Vec<usize>, to_last: bool| {
        Ok(RowFit {
            shape,
            adapt: Adapt::MoveChannels { to_last },
        })
    };
    let channels = |c: usize| (2..=4).contains(&c);
    if let (&[a, b, c], &[x, y, z]) = (row_shape, want) {
        if channels(a) && fits(x, b) && fits(y, c) && fits(z, a) {
            return moved(vec![b, c, a], true);
        }
        if channels(c) && fits(x, c) && fits(y, a) && fits(z, b) {
            return moved(vec![c, a, b], false);
        }
    }
    let have: usize = row_shape.iter().product();
    let row_len = want
        .iter()
        .try_fold(1usize, |acc, &d| (d > 0).then(|| acc * d as usize));
    if row_len == Some(have) {
        return keep(want.iter().map(|&d| d as usize).collect());
    }
    if let Some(f) = resize_fit(want, row_shape) {
        return Ok(f);
    }
    Err(Error::invalid_input(format!(
        "rows of shape {row_shape:?} do not fit the model input {input_shape:?} (batch first)"
    )))
}

/// Image rows ([C, H, W] with C 1 or 3, [H, W, C] as NumPy images are, or [H, W]) resized for an
/// image input ([C', H', W'] or [H', W', C'], C' 1 or 3; a dynamic side keeps the rows' own), if both are
/// images.
fn resize_fit(want: &[i64], row_shape: &[usize]) -> Option<RowFit> {
    let grey_or_colour = |c: i64| c == 1 || c == 3;
    let side_ok = |h: usize, w: usize| h >= 2 && w >= 2;
    let (from, from_last) = match *row_shape {
        [c, h, w] if (c == 1 || c == 3) && side_ok(h, w) => ([c, h, w], false),
        [h, w, c] if (c == 1 || c == 3) && side_ok(h, w) => ([c, h, w], true),
        [h, w] if side_ok(h, w) => ([1, h, w], false),
        _ => return None,
    };
    let side = |d: i64, own: usize| if d > 0 { d as usize } else { own };
    let (to, to_last) = match *want {
        [c, h, w] if grey_or_colour(c) => ([c as usize, side(h, from[1]), side(w, from[2])], false),
        [h, w, c] if grey_or_colour(c) => ([c as usize, side(h, from[1]), side(w, from[2])], true),
        _ => return None,
    };
    if to[1] * to[2] > MAX_RESIZED || to[1] < 2 || to[2] < 2 {
        return None;
    }
    // the same shape of picture, larger or smaller: 28 x 28 digits to a 224 x 224 input, not to the
    // 48 x 192 strip of a text-line model (a 4x stretch teaches nothing, and costs a ranking its time)
    let aspect = |h: usize, w: usize| (h as f64 / w as f64).ln();
    if (aspect(to[1], to[2]) - aspect(from[1], from[2])).abs() > MAX_ASPECT_CHANGE.ln() {
        return None;
    }
    let shape = if to_last {
        vec![to[1], to[2], to[0]]
    } else {
        to.to_vec()
    };
    Some(RowFit {
        shape,
        adapt: Adapt::Resize {
            from,
            from_last,
            to,
            to_last,
        },
    })
}

impl RowFit {
    /// `m` rows (flat, in the dataset's shape `from`) as the model takes them.
    pub fn apply<'a>(&self, rows: &'a [f32], m: usize, from: &[usize]) -> Cow<'a, [f32]> {
        match &self.adapt {
            Adapt::Keep => Cow::Borrowed(rows),
            Adapt::MoveChannels { to_last } => Cow::Owned(move_channels(
                rows,
                m,
                [from[0], from[1], from[2]],
                *to_last,
            )),
            Adapt::Resize {
                from,
                from_last,
                to,
                to_last,
            } => {
                let [c, h, w] = *from;
                let first;
                let rows = if *from_last {
                    first = move_channels(rows, m, [h, w, c], false);
                    &first[..]
                } else {
                    rows
                };
                let x = resize(rows, m, *from, *to);
                Cow::Owned(if *to_last {
                    move_channels(&x, m, *to, true)
                } else {
                    x
                })
            }
        }
    }

    /// What happened to rows of shape `from`, for a ranking's notes (`None`: nothing worth saying).
    pub fn describe(&self, from: &[usize]) -> Option<String> {
        let to = &self.shape;
        match &self.adapt {
            Adapt::Keep if to == from => None,
            Adapt::Keep => Some(format!(
                "rows reshaped {from:?} -> {to:?} (same element count)"
            )),
            Adapt::MoveChannels { to_last } => Some(format!(
                "image rows {from:?} transposed to {to:?} (channels {})",
                if *to_last { "last" } else { "first" }
            )),
            Adapt::Resize { from: f, to: t, .. } => {
                let channels = match (f[0], t[0]) {
                    (1, 3) => Some("grey copied to 3 channels"),
                    (3, 1) => Some("colour averaged to grey"),
                    _ => None,
                };
                Some(match (f[1..] == t[1..], channels) {
                    (true, Some(c)) => format!("image rows {from:?} given as {to:?} ({c})"),
                    (_, Some(c)) => {
                        format!("image rows {from:?} resized to {to:?} (bilinear; {c})")
                    }
                    (_, None) => format!("image rows {from:?} resized to {to:?} (bilinear)"),
                })
            }
        }
    }
}

/// `m` image rows of shape `from` ([C, H, W], or [H, W, C] when `to_last` is false) with their channel
/// axis moved to the other end.
fn move_channels(rows: &[f32], m: usize, from: [usize; 3], to_last: bool) -> Vec<f32> {
    let x = ndarray::ArrayView4::from_shape((m, from[0], from[1], from[2]), rows)
        .expect("m rows of this shape");
    let order = if to_last { [0, 2, 3, 1] } else { [0, 3, 1, 2] };
    x.permuted_axes(order).iter().copied().collect()
}

/// Bilinear resize of `m` channel-first images [C, H, W] to [C', H', W'] (pixel centres aligned, as
/// PyTorch's `interpolate(align_corners=False)` and PIL), grey copied to every output channel or colour
/// averaged to one.
fn resize(rows: &[f32], m: usize, from: [usize; 3], to: [usize; 3]) -> Vec<f32> {
    let [c, h, w] = from;
    let [c2, h2, w2] = to;
    // source index pairs and weights along one axis
    let taps = |n: usize, n2: usize| -> Vec<(usize, usize, f32)> {
        (0..n2)
            .map(|i| {
                let s = ((i as f32 + 0.5) * n as f32 / n2 as f32 - 0.5).clamp(0.0, (n - 1) as f32);
                let lo = s.floor() as usize;
                (lo, (lo + 1).min(n - 1), s - lo as f32)
            })
            .collect()
    };
    let (ys, xs) = (taps(h, h2), taps(w, w2));
    let mut out = Vec::with_capacity(m * c2 * h2 * w2);
    let mut plane = vec![0f32; h * w];
    for r in 0..m {
        let img = &rows[r * c * h * w..(r + 1) * c * h * w];
        for k in 0..c2 {
            // the source plane for output channel k
            if c == c2 {
                plane.copy_from_slice(&img[k * h * w..(k + 1) * h * w]);
            } else if c == 1 {
                plane.copy_from_slice(img);
            } else {
                for (i, p) in plane.iter_mut().enumerate() {
                    *p = (0..c).map(|j| img[j * h * w + i]).sum::<f32>() / c as f32;
                }
            }
            for &(y0, y1, wy) in &ys {
                for &(x0, x1, wx) in &xs {
                    let top = plane[y0 * w + x0] * (1.0 - wx) + plane[y0 * w + x1] * wx;
                    let bottom = plane[y1 * w + x0] * (1.0 - wx) + plane[y1 * w + x1] * wx;
                    out.push(top * (1.0 - wy) + bottom * wy);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_fit_exactly_by_moving_channels_by_reshaping_or_by_resizing_images() {
        let f = |input: &[i64], rows: &[usize]| fit(input, rows).map(|f| (f.shape, f.adapt));
        assert_eq!(
            f(&[-1, 1, 28, 28], &[1, 28, 28]).unwrap(),
            (vec![1, 28, 28], Adapt::Keep)
        );
        assert_eq!(
            f(&[-1, 784], &[1, 28, 28]).unwrap(),
            (vec![784], Adapt::Keep)
        );
        assert_eq!(
            f(&[-1, -1, -1, 3], &[3, 32, 32]).unwrap(),
            (vec![32, 32, 3], Adapt::MoveChannels { to_last: true })
        );
        assert_eq!(
            f(&[1, 3, 224, 224], &[1, 28, 28]).unwrap(),
            (
                vec![3, 224, 224],
                Adapt::Resize {
                    from: [1, 28, 28],
                    from_last: false,
                    to: [3, 224, 224],
                    to_last: false
                }
            )
        );
        assert_eq!(
            f(&[-1, 96, 96, 3], &[28, 28]).unwrap(),
            (
                vec![96, 96, 3],
                Adapt::Resize {
                    from: [1, 28, 28],
                    from_last: false,
                    to: [3, 96, 96],
                    to_last: true
                }
            )
        );
        // channel-last colour rows (NumPy's layout) to a channel-first input of another size
        assert_eq!(
            f(&[-1, 3, 64, 64], &[32, 32, 3]).unwrap(),
            (
                vec![3, 64, 64],
                Adapt::Resize {
                    from: [3, 32, 32],
                    from_last: true,
                    to: [3, 64, 64],
                    to_last: false
                }
            )
        );
        // not images: refused with both shapes named
        let e = fit(&[-1, 64], &[1, 28, 28]).unwrap_err();
        assert!(
            e.message
                .contains("[1, 28, 28] do not fit the model input [-1, 64]"),
            "{}",
            e.message
        );
        assert!(fit(&[-1, 3, 224, 224], &[784]).is_err());
        assert!(
            fit(&[-1, 3, 4096, 4096], &[1, 28, 28]).is_err(),
            "too large to resize to"
        );
        // a picture is not stretched to another shape: 28 x 28 digits to a 48 x 192 text line
        assert!(fit(&[-1, 3, 48, 192], &[1, 28, 28]).is_err());
        assert!(fit(&[-1, 3, 224, 256], &[1, 28, 28]).is_ok(), "within 25%");
    }

    #[test]
    fn channel_last_rows_resize_as_their_channel_first_twins() {
        let chw: Vec<f32> = (0..2 * 3 * 4 * 5).map(|i| (i as f32 * 0.7).sin()).collect();
        let hwc = move_channels(&chw, 2, [3, 4, 5], true);
        let to = &[-1i64, 3, 8, 10];
        let (a, b) = (fit(to, &[3, 4, 5]).unwrap(), fit(to, &[4, 5, 3]).unwrap());
        assert_eq!(a.apply(&chw, 2, &[3, 4, 5]), b.apply(&hwc, 2, &[4, 5, 3]));
    }

    #[test]
    fn bilinear_resizing_keeps_constant_images_and_interpolates_between_pixels() {
        // 2x2 grey -> 4x4: pixel centres aligned, edges clamped
        let img = [0.0, 1.0, 2.0, 3.0];
        let out = resize(&img, 1, [1, 2, 2], [1, 4, 4]);
        let row0: Vec<f32> = out[..4].to_vec();
        assert_eq!(row0, vec![0.0, 0.25, 0.75, 1.0]);
        assert_eq!(out[12..], [2.0, 2.25, 2.75, 3.0]);
        // grey to colour: three equal planes; colour to grey: the mean; the same size: unchanged
        let out = resize(&img, 1, [1, 2, 2], [3, 2, 2]);
        assert_eq!(out, [img, img, img].concat());
        let colour = [1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 6.0, 6.0, 6.0, 6.0];
        assert_eq!(resize(&colour, 1, [3, 2, 2], [1, 2, 2]), vec![3.0; 4]);
        // two rows, downsized: each row on its own
        let two: Vec<f32> = (0..2 * 16).map(|i| (i / 16) as f32).collect();
        assert_eq!(
            resize(&two, 2, [1, 4, 4], [1, 2, 2]),
            vec![0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
        );
    }
}
