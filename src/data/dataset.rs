//! A task dataset in memory (rows, labels with -1 for unlabeled, class names) and the three upload formats
//! that produce one: `.npz`, `.csv` and a `.zip` of image folders, read from a file or from bytes. An
//! upload's rows stay as its file carried them ([`Rows`]: float32, or `uint8` pixels one byte each) until
//! something needs floats, and a stored dataset comes back to a job the same way; [`RowsView`] reads either
//! kind a row, a few rows or a block at a time as floats. Every parser refuses bad input with an
//! `InvalidInput` (or `PayloadTooLarge`) error that names the problem.
use std::collections::{BTreeMap, BTreeSet};

use ndarray::{ArrayD, Axis, IxDyn};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use std::io::{Read, Seek};

use super::npz::{NpyArray, read_npz_from};
use crate::error::{Error, ErrorKind, Result};

/// The row label of an unlabeled row.
pub const UNLABELED: i64 = -1;

/// The most classes a task may have: a ranking and a distillation hold matrices of rows x classes.
pub const MAX_CLASSES: usize = 1000;

/// The folder of a zip whose images carry no label.
pub const UNLABELED_FOLDER: &str = "_unlabeled";

/// Rows `x` [N, ...] (float32 unless said otherwise), labels `y` (class index, or -1), and class names.
#[derive(Debug, Clone)]
pub struct Dataset<X = ArrayD<f32>> {
    pub x: X,
    pub y: Vec<i64>,
    pub labels: Vec<String>,
}

/// An upload's rows as its file carried them: float32, or `uint8` pixels kept one byte a value (the
/// value k / 255, as [`NpyArray::to_f32`] scales them). An image upload is checked, hashed and stored
/// from its bytes, without a float copy four times their size. A stored dataset whose values are all
/// whole numbers 0..=255 comes back as `U8` (the value k), so a job holds a byte a value too.
#[derive(Debug, Clone)]
pub enum Rows {
    F32(ArrayD<f32>),
    Px8(ArrayD<u8>),
    U8(ArrayD<u8>),
}

/// The value each byte of `Px8` rows holds: k / 255.
pub static PX8_VALUES: [f32; 256] = byte_values(255.0);
/// The value each byte of `U8` rows holds: k.
pub static U8_VALUES: [f32; 256] = byte_values(1.0);

const fn byte_values(scale: f32) -> [f32; 256] {
    let mut t = [0.0; 256];
    let mut k = 0;
    while k < 256 {
        t[k] = k as f32 / scale;
        k += 1;
    }
    t
}

/// Rows as [N, D], whatever holds them: floats borrowed, or bytes with the value each byte holds. Read
/// a row or a batch at a time, so rows kept as bytes never become a float copy of the whole dataset.
#[derive(Debug, Clone, Copy)]
pub enum RowsView<'a> {
    F32(ndarray::ArrayView2<'a, f32>),
    Bytes(ndarray::ArrayView2<'a, u8>, &'static [f32; 256]),
}

impl<'a> RowsView<'a> {
    pub fn nrows(&self) -> usize {
        match self {
            Self::F32(x) => x.nrows(),
            Self::Bytes(x, _) => x.nrows(),
        }
    }

    pub fn ncols(&self) -> usize {
        match self {
            Self::F32(x) => x.ncols(),
            Self::Bytes(x, _) => x.ncols(),
        }
    }

    /// Value `j` of row `r`.
    pub fn get(&self, r: usize, j: usize) -> f32 {
        match self {
            Self::F32(x) => x[[r, j]],
            Self::Bytes(x, t) => t[x[[r, j]] as usize],
        }
    }

    /// Every value, row after row.
    pub fn values(&self) -> Box<dyn Iterator<Item = f32> + 'a> {
        match *self {
            Self::F32(x) => Box::new(x.into_iter().copied()),
            Self::Bytes(x, t) => Box::new(x.into_iter().map(move |&b| t[b as usize])),
        }
    }

    /// Column `j`'s values, row after row.
    pub fn column(&self, j: usize) -> Box<dyn Iterator<Item = f32> + 'a> {
        match *self {
            Self::F32(x) => Box::new(x.index_axis_move(Axis(1), j).into_iter().copied()),
            Self::Bytes(x, t) => Box::new(
                x.index_axis_move(Axis(1), j)
                    .into_iter()
                    .map(move |&b| t[b as usize]),
            ),
        }
    }

    /// Row `r`'s values, each through `f(column, value)`, appended to `out`.
    pub fn extend_row(&self, r: usize, out: &mut Vec<f32>, f: impl Fn(usize, f32) -> f32) {
        match self {
            Self::F32(x) => out.extend(x.row(r).iter().enumerate().map(|(j, &v)| f(j, v))),
            Self::Bytes(x, t) => out.extend(
                x.row(r)
                    .iter()
                    .enumerate()
                    .map(|(j, &b)| f(j, t[b as usize])),
            ),
        }
    }

    /// Rows `rows` (in the order given) as floats.
    pub fn select(&self, rows: &[usize]) -> ndarray::Array2<f32> {
        match self {
            Self::F32(x) => x.select(Axis(0), rows),
            Self::Bytes(..) => {
                let mut v = Vec::with_capacity(rows.len() * self.ncols());
                for &r in rows {
                    self.extend_row(r, &mut v, |_, v| v);
                }
                ndarray::Array2::from_shape_vec((rows.len(), self.ncols()), v)
                    .expect("rows x columns values")
            }
        }
    }

    /// Rows `range`, held as they are.
    pub fn range(&self, range: std::ops::Range<usize>) -> Self {
        match *self {
            Self::F32(x) => Self::F32(x.slice_move(ndarray::s![range, ..])),
            Self::Bytes(x, t) => Self::Bytes(x.slice_move(ndarray::s![range, ..]), t),
        }
    }

    /// Rows `range` as floats: borrowed when they are floats already.
    pub fn slice(&self, range: std::ops::Range<usize>) -> ndarray::CowArray<'a, f32, ndarray::Ix2> {
        match *self {
            Self::F32(x) => x.slice_move(ndarray::s![range, ..]).into(),
            Self::Bytes(x, t) => x
                .slice_move(ndarray::s![range, ..])
                .mapv(|b| t[b as usize])
                .into(),
        }
    }

    /// Every row as floats (borrowed when they are floats already).
    pub fn to_f32(&self) -> ndarray::CowArray<'a, f32, ndarray::Ix2> {
        self.slice(0..self.nrows())
    }

    /// Calls `f` on consecutive blocks of rows as floats (range, rows): one block of every row when they
    /// are floats already, else blocks of about `block_bytes` of floats.
    pub fn for_blocks<E>(
        &self,
        block_bytes: usize,
        mut f: impl FnMut(
            std::ops::Range<usize>,
            ndarray::ArrayView2<'_, f32>,
        ) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let n = self.nrows();
        if n == 0 {
            return f(0..0, self.slice(0..0).view()); // one empty block: callers see their outputs' shape
        }
        let step = match self {
            Self::F32(_) => n,
            Self::Bytes(..) => (block_bytes / (4 * self.ncols().max(1))).max(1),
        };
        let mut a = 0;
        while a < n {
            let b = (a + step).min(n);
            f(a..b, self.slice(a..b).view())?;
            a = b;
        }
        Ok(())
    }
}

impl<'a> From<ndarray::ArrayView2<'a, f32>> for RowsView<'a> {
    fn from(x: ndarray::ArrayView2<'a, f32>) -> Self {
        Self::F32(x)
    }
}

/// What holds a dataset's rows: floats, or [`Rows`] as parsed or loaded.
pub trait RowStore: Sync {
    /// Shape [N, ...row shape].
    fn dims(&self) -> &[usize];
    /// The rows as [N, D] (standard layout).
    fn rows_view(&self) -> RowsView<'_>;
}

/// `x` as [N, D], `x` in standard layout.
fn flat2<T>(x: &ArrayD<T>) -> ndarray::ArrayView2<'_, T> {
    let n = x.shape()[0];
    let d = x.len() / n.max(1);
    x.view()
        .into_shape_with_order((n, d))
        .expect("rows are in standard layout")
}

impl RowStore for ArrayD<f32> {
    fn dims(&self) -> &[usize] {
        self.shape()
    }

    fn rows_view(&self) -> RowsView<'_> {
        RowsView::F32(flat2(self))
    }
}

impl RowStore for Rows {
    fn dims(&self) -> &[usize] {
        self.shape()
    }

    fn rows_view(&self) -> RowsView<'_> {
        match self {
            Self::F32(x) => RowsView::F32(flat2(x)),
            Self::Px8(x) => RowsView::Bytes(flat2(x), &PX8_VALUES),
            Self::U8(x) => RowsView::Bytes(flat2(x), &U8_VALUES),
        }
    }
}

impl<X: RowStore> Dataset<X> {
    /// The shape of one row.
    pub fn row_shape(&self) -> Vec<usize> {
        self.x.dims()[1..].to_vec()
    }

    /// The rows as [N, D], whatever holds them.
    pub fn view(&self) -> RowsView<'_> {
        self.x.rows_view()
    }

    /// Rows `rows` as floats, in the dataset's shape [len, ...row shape].
    pub fn select_rows(&self, rows: &[usize]) -> ArrayD<f32> {
        let mut shape = vec![rows.len()];
        shape.extend(&self.x.dims()[1..]);
        self.view()
            .select(rows)
            .into_shape_with_order(IxDyn(&shape))
            .expect("rows x row shape")
    }
}

/// A parsed upload: its rows as [`Rows`] until something needs them as floats.
pub type Parsed = Dataset<Rows>;

impl Rows {
    pub fn shape(&self) -> &[usize] {
        match self {
            Self::F32(x) => x.shape(),
            Self::Px8(x) | Self::U8(x) => x.shape(),
        }
    }

    /// The rows in standard (row-major) layout: moved when they are already, copied when not.
    fn standard(self) -> Self {
        match self {
            Self::F32(x) if !x.is_standard_layout() => {
                Self::F32(x.as_standard_layout().into_owned())
            }
            Self::Px8(x) if !x.is_standard_layout() => {
                Self::Px8(x.as_standard_layout().into_owned())
            }
            Self::U8(x) if !x.is_standard_layout() => Self::U8(x.as_standard_layout().into_owned()),
            rows => rows,
        }
    }

    /// The position of the first NaN or infinity (pixels have none).
    fn first_non_finite(&self) -> Option<usize> {
        match self {
            Self::F32(x) => x.iter().position(|v| !v.is_finite()),
            Self::Px8(_) | Self::U8(_) => None,
        }
    }

    /// Some rows (along the first axis).
    fn select(&self, rows: &[usize]) -> Self {
        match self {
            Self::F32(x) => Self::F32(x.select(Axis(0), rows)),
            Self::Px8(x) => Self::Px8(x.select(Axis(0), rows)),
            Self::U8(x) => Self::U8(x.select(Axis(0), rows)),
        }
    }

    /// Feeds the rows to `h` as little-endian float32 bytes, row after row, as [`Dataset::sha256`] does:
    /// pixels through a table of their 256 floats, a block at a time.
    fn hash(&self, h: &mut Sha256) {
        match self {
            Self::F32(x) => h.update(&*f32_le_bytes(x)),
            Self::Px8(x) | Self::U8(x) => {
                let RowsView::Bytes(_, values) = self.rows_view() else {
                    unreachable!("bytes")
                };
                let table: Vec<[u8; 4]> = values.iter().map(|v| v.to_le_bytes()).collect();
                let mut block = Vec::with_capacity(4 << 16);
                let x = x.as_standard_layout();
                for chunk in x.as_slice().expect("standard layout").chunks(1 << 16) {
                    block.clear();
                    block.extend(chunk.iter().flat_map(|&b| table[b as usize]));
                    h.update(&block);
                }
            }
        }
    }

    /// The rows as float32 (a move for float rows).
    pub fn into_f32(self) -> ArrayD<f32> {
        match self {
            Self::F32(x) => x,
            Self::Px8(x) => x.mapv(|b| PX8_VALUES[b as usize]),
            Self::U8(x) => x.mapv(|b| U8_VALUES[b as usize]),
        }
    }
}

/// `x` as little-endian float32 bytes, row after row: borrowed on a little-endian machine when `x` is
/// contiguous (an upload's rows are not copied to be hashed and stored).
pub(super) fn f32_le_bytes(x: &ArrayD<f32>) -> std::borrow::Cow<'_, [u8]> {
    match x.as_slice() {
        Some(v) if cfg!(target_endian = "little") => {
            std::borrow::Cow::Borrowed(bytemuck::cast_slice(v))
        }
        _ => std::borrow::Cow::Owned(x.iter().flat_map(|v| v.to_le_bytes()).collect()),
    }
}

/// sha256 of a dataset's canonical content: its shape, its rows' float bits (fed by `rows`), its labels
/// and its class names.
fn content_sha256(
    shape: &[usize],
    rows: impl FnOnce(&mut Sha256),
    y: &[i64],
    labels: &[String],
) -> String {
    let mut h = Sha256::new();
    for d in shape {
        h.update((*d as u64).to_le_bytes());
    }
    rows(&mut h);
    for v in y {
        h.update(v.to_le_bytes());
    }
    for l in labels {
        h.update((l.len() as u64).to_le_bytes());
        h.update(l.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Which upload format a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Npz,
    Csv,
    Zip,
}

impl Format {
    /// From a file name's extension, else from the leading bytes.
    pub fn detect(filename: Option<&str>, bytes: &[u8]) -> Result<Self> {
        Self::detect_from(filename, &mut std::io::Cursor::new(bytes))
    }

    /// [`Format::detect`] on a file or any other seekable source (left at its start).
    pub fn detect_from(filename: Option<&str>, src: &mut (impl Read + Seek)) -> Result<Self> {
        let ext = filename
            .and_then(|f| f.rsplit_once('.'))
            .map(|(_, e)| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("npz") => return Ok(Self::Npz),
            Some("csv") => return Ok(Self::Csv),
            Some("zip") => return Ok(Self::Zip),
            _ => {}
        }
        let mut head = Vec::new();
        src.by_ref().take(4096).read_to_end(&mut head)?;
        src.rewind()?;
        if head.starts_with(b"PK\x03\x04") {
            // an npz is a zip whose members end in .npy
            let is_npz = zip::ZipArchive::new(&mut *src)
                .map(|z| z.file_names().any(|n| n.ends_with(".npy")))
                .unwrap_or(false);
            src.rewind()?;
            return Ok(if is_npz { Self::Npz } else { Self::Zip });
        }
        // text, perhaps with a character cut at the end of the first 4 KB
        if std::str::from_utf8(&head).map_or_else(|e| e.error_len().is_none(), |_| true) {
            return Ok(Self::Csv);
        }
        Err(Error::invalid_input(
            "unrecognised dataset format: upload a .npz, .csv or .zip of image folders",
        ))
    }
}

/// Options a user may give with an upload.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// CSV: the label column (default `label`).
    pub label_column: Option<String>,
    /// Class names (npz: index i names class i; csv: fixes the class order).
    pub labels: Option<Vec<String>>,
    /// Largest number of bytes an archive may inflate to, and of decoded pixels * 4.
    pub max_bytes: u64,
}

impl<X> Dataset<X> {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.y.len()
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.labels.len()
    }

    /// Indices of the labeled rows.
    pub fn labeled(&self) -> Vec<usize> {
        (0..self.rows()).filter(|&i| self.y[i] >= 0).collect()
    }

    /// Labeled rows per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.labels.len()];
        for &v in &self.y {
            if v >= 0 {
                c[v as usize] += 1;
            }
        }
        c
    }
}

impl Dataset {
    /// The rows as [N, D] (a view when `x` is contiguous).
    pub fn flat(&self) -> ndarray::ArrayView2<'_, f32> {
        flat2(&self.x)
    }

    /// sha256 of the canonical content (shape, float bits, labels, class names): the same data uploaded
    /// twice, in any format, gets the same id.
    pub fn sha256(&self) -> String {
        content_sha256(
            self.x.shape(),
            |h| h.update(&*f32_le_bytes(&self.x)),
            &self.y,
            &self.labels,
        )
    }

    /// Checks what every dataset must satisfy ([`Parsed::validate`]).
    pub fn validate(self) -> Result<Self> {
        Parsed::from(self).validate().map(Parsed::into_f32)
    }

    /// Checks a test split against this dataset ([`Parsed::validate_test`]).
    pub fn validate_test(self, main: &Dataset) -> Result<Self> {
        Parsed::from(self)
            .validate_test(&main.row_shape())
            .map(Parsed::into_f32)
    }

    /// A dataset made of some rows of this one; rows after the first `keep_labels` become unlabeled.
    pub fn subset(&self, rows: &[usize], keep_labels: usize) -> Self {
        let x = self.x.select(Axis(0), rows);
        let y = rows
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                if k < keep_labels {
                    self.y[i]
                } else {
                    UNLABELED
                }
            })
            .collect();
        Self {
            x,
            y,
            labels: self.labels.clone(),
        }
    }
}

impl From<Dataset> for Parsed {
    fn from(ds: Dataset) -> Self {
        Self {
            x: Rows::F32(ds.x),
            y: ds.y,
            labels: ds.labels,
        }
    }
}

impl Parsed {
    /// The same sha256 as [`Dataset::sha256`] of [`Parsed::into_f32`], without the floats.
    pub fn sha256(&self) -> String {
        content_sha256(self.x.shape(), |h| self.x.hash(h), &self.y, &self.labels)
    }

    /// Some of its rows (in the order given), still as they were parsed.
    pub fn select(&self, rows: &[usize]) -> Self {
        Self {
            x: self.x.select(rows),
            y: rows.iter().map(|&r| self.y[r]).collect(),
            labels: self.labels.clone(),
        }
    }

    /// The dataset with float rows.
    pub fn into_f32(self) -> Dataset {
        Dataset {
            x: self.x.into_f32(),
            y: self.y,
            labels: self.labels,
        }
    }

    /// Checks what every dataset must satisfy, whatever format it came from.
    pub fn validate(self) -> Result<Self> {
        let n = self.x.shape().first().copied().unwrap_or(0);
        if self.x.shape().len() < 2 {
            return Err(Error::invalid_input(format!(
                "x must have shape [N, ...features], got {:?}",
                self.x.shape()
            )));
        }
        if n == 0 || self.x.shape().contains(&0) {
            return Err(Error::invalid_input("the dataset has no rows"));
        }
        if n != self.y.len() {
            return Err(Error::invalid_input(format!(
                "x has {n} rows but y has {} labels",
                self.y.len()
            )));
        }
        let x = self.x.standard();
        if let Some(pos) = x.first_non_finite() {
            let d = x.shape().iter().product::<usize>() / n;
            return Err(Error::invalid_input(format!(
                "x contains NaN or infinity (row {}, feature {})",
                pos / d,
                pos % d
            )));
        }
        let k = self.labels.len() as i64;
        if let Some((i, v)) = self
            .y
            .iter()
            .enumerate()
            .find(|(_, v)| **v < UNLABELED || **v >= k)
        {
            return Err(Error::invalid_input(format!(
                "label {v} in row {i} is out of range: labels are 0..{} (-1 = unlabeled)",
                k - 1
            )));
        }
        let ds = Self { x, ..self };
        let counts = ds.class_counts();
        if let Some(j) = counts.iter().position(|&c| c == 0) {
            return Err(Error::invalid_input(format!(
                "class '{}' has no labeled rows; drop it from the label names or label some rows",
                ds.labels[j]
            )));
        }
        if counts.len() < 2 {
            return Err(Error::invalid_input(format!(
                "a task needs at least 2 classes with labeled rows, found {}",
                counts.len()
            )));
        }
        if counts.len() > MAX_CLASSES {
            return Err(Error::invalid_input(format!(
                "the task has {} classes; faculty takes at most {MAX_CLASSES} (rankings and students hold \
                 rows x classes matrices: an 889 KB CSV of 20,000 one-row classes took a ranking to 5.5 GB)",
                counts.len()
            )));
        }
        Ok(ds)
    }

    /// Checks a test split against its dataset: the same row shape, every row labeled with one of its
    /// classes, finite values.
    pub fn validate_test(self, row_shape: &[usize]) -> Result<Self> {
        let n = self.x.shape().first().copied().unwrap_or(0);
        if self.x.shape().get(1..) != Some(row_shape) {
            return Err(Error::invalid_input(format!(
                "test rows have shape {:?}, the dataset's rows {row_shape:?}",
                self.x.shape().get(1..).unwrap_or(&[]),
            )));
        }
        if n == 0 || n != self.y.len() {
            return Err(Error::invalid_input(format!(
                "the test split needs rows with one label each: x_test has {n} rows, y_test {} labels",
                self.y.len()
            )));
        }
        let x = self.x.standard();
        if x.first_non_finite().is_some() {
            return Err(Error::invalid_input("x_test contains NaN or infinity"));
        }
        let k = self.labels.len() as i64;
        if let Some((i, v)) = self.y.iter().enumerate().find(|(_, v)| **v < 0 || **v >= k) {
            return Err(Error::invalid_input(format!(
                "test label {v} in row {i} is out of range: every test row needs a label in 0..{}",
                k - 1
            )));
        }
        Ok(Self { x, ..self })
    }
}

/// Parses an upload in the given format.
pub fn parse(format: Format, bytes: Vec<u8>, opts: &ParseOptions) -> Result<Dataset> {
    Ok(parse_with_test(format, std::io::Cursor::new(bytes), opts)?.0)
}

/// Parses an upload (a file, or bytes in a `Cursor`) and the test split it may carry ([`parse_upload`]),
/// with float rows.
pub fn parse_with_test(
    format: Format,
    src: impl Read + Seek,
    opts: &ParseOptions,
) -> Result<(Dataset, Option<Dataset>)> {
    let (ds, test) = parse_upload(format, src, opts)?;
    Ok((ds.into_f32(), test.map(Parsed::into_f32)))
}

/// Parses and checks an upload (a file, or bytes in memory) and the test split it may carry (npz:
/// `x_test` and `y_test`, every row labeled): rows kept apart for measuring students, never trained on.
/// `uint8` pixels (npz, image zip) stay bytes.
pub fn parse_upload(
    format: Format,
    mut src: impl Read + Seek,
    opts: &ParseOptions,
) -> Result<(Parsed, Option<Parsed>)> {
    let len = src.seek(std::io::SeekFrom::End(0))?;
    src.rewind()?;
    if len == 0 {
        return Err(Error::invalid_input("the uploaded file is empty"));
    }
    let (ds, test) = match format {
        Format::Npz => parse_npz(src, opts)?,
        Format::Csv => parse_csv(src, opts)?,
        Format::Zip => parse_image_zip(src, len, opts)?,
    };
    let ds = ds.validate()?;
    let test = test.map(|t| t.validate_test(&ds.row_shape())).transpose()?;
    Ok((ds, test))
}

/// An npz array as rows: `uint8` kept as pixels, other numbers as float32.
fn npz_rows(a: NpyArray, what: &str) -> Result<Rows> {
    match a {
        NpyArray::U8(x) => Ok(Rows::Px8(x)),
        other => Ok(Rows::F32(other.into_f32().map_err(|e| e.context(what))?)),
    }
}

fn parse_npz(src: impl Read + Seek, opts: &ParseOptions) -> Result<(Parsed, Option<Parsed>)> {
    // the rows are float32 once read: float64 rows are converted as they are read
    let mut arrays = read_npz_from(src, opts.max_bytes, &["x", "x_test"])?;
    let x = arrays.remove("x").ok_or_else(|| {
        Error::invalid_input(format!(
            "the .npz has no array named 'x' (found: {})",
            arrays.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    if !matches!(x, NpyArray::F32(_) | NpyArray::U8(_) | NpyArray::F64(_)) {
        return Err(Error::invalid_input(
            "x must be float32, float64 or uint8 (uint8 is scaled to [0, 1])",
        ));
    }
    let x = npz_rows(x, "x")?;
    let y = arrays.remove("y").ok_or_else(|| {
        Error::invalid_input("the .npz has no array named 'y' (integer labels, -1 = unlabeled)")
    })?;
    if y.shape().len() != 1 {
        return Err(Error::invalid_input(format!(
            "y must be one label per row, got shape {:?}",
            y.shape()
        )));
    }
    let y: Vec<i64> = y
        .to_i64()
        .map_err(|e| e.context("y"))?
        .into_iter()
        .collect();
    let test = match (arrays.remove("x_test"), arrays.remove("y_test")) {
        (None, None) => None,
        (Some(xt), Some(yt)) => {
            let xt = npz_rows(xt, "x_test")?;
            let yt: Vec<i64> = yt
                .to_i64()
                .map_err(|e| e.context("y_test"))?
                .into_iter()
                .collect();
            Some((xt, yt))
        }
        _ => {
            return Err(Error::invalid_input(
                "x_test and y_test come together: the .npz has only one of them",
            ));
        }
    };
    let labels = match (&opts.labels, arrays.remove("labels")) {
        (Some(l), _) => l.clone(),
        (None, Some(NpyArray::Str(l, _))) => l,
        _ => {
            let k = y.iter().copied().max().unwrap_or(-1) + 1;
            (0..k.max(0)).map(|i| i.to_string()).collect()
        }
    };
    let test = test.map(|(x, y)| Parsed {
        x,
        y,
        labels: labels.clone(),
    });
    Ok((Parsed { x, y, labels }, test))
}

/// The CSV column that marks test rows (`test`; `train` or empty for the rest).
pub const SPLIT_COLUMN: &str = "split";

fn parse_csv(src: impl Read, opts: &ParseOptions) -> Result<(Parsed, Option<Parsed>)> {
    let column = opts.label_column.as_deref().unwrap_or("label");
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(src);
    let headers = rdr
        .headers()
        .map_err(|e| Error::invalid_input(format!("cannot read the CSV header: {e}")))?
        .clone();
    let label_at = headers.iter().position(|h| h == column).ok_or_else(|| {
        Error::invalid_input(format!(
            "the CSV has no label column '{column}' (columns: {}); name it with the `label_column` field",
            headers.iter().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let split_at = headers
        .iter()
        .position(|h| h == SPLIT_COLUMN)
        .filter(|&c| c != label_at);
    let width = headers.len();
    let features = width - 1 - usize::from(split_at.is_some());
    if features < 1 {
        return Err(Error::invalid_input(
            "the CSV needs a label column and at least one feature column",
        ));
    }
    let mut values: Vec<f32> = Vec::new();
    let mut raw_labels: Vec<Option<String>> = Vec::new();
    let mut is_test: Vec<bool> = Vec::new();
    for (r, rec) in rdr.records().enumerate() {
        let line = r + 2;
        let rec = rec.map_err(|e| Error::invalid_input(format!("CSV line {line}: {e}")))?;
        if rec.len() != width {
            return Err(Error::invalid_input(format!(
                "CSV line {line} has {} cells, the header has {width} (ragged rows)",
                rec.len()
            )));
        }
        for (c, cell) in rec.iter().enumerate() {
            if c == label_at {
                raw_labels.push((!cell.is_empty()).then(|| cell.to_string()));
                continue;
            }
            if Some(c) == split_at {
                is_test.push(match cell.to_ascii_lowercase().as_str() {
                    "test" => true,
                    "train" | "" => false,
                    other => {
                        return Err(Error::invalid_input(format!(
                            "CSV line {line}, column '{SPLIT_COLUMN}': '{other}' is neither train nor test"
                        )));
                    }
                });
                continue;
            }
            let v: f32 = cell.parse().map_err(|_| {
                Error::invalid_input(format!(
                    "CSV line {line}, column '{}': '{cell}' is not a number",
                    &headers[c]
                ))
            })?;
            if !v.is_finite() {
                return Err(Error::invalid_input(format!(
                    "CSV line {line}, column '{}': NaN or infinity is not allowed",
                    &headers[c]
                )));
            }
            values.push(v);
        }
    }
    let n = raw_labels.len();
    let labels = match &opts.labels {
        Some(l) => l.clone(),
        None => {
            let present: BTreeSet<&str> = raw_labels.iter().flatten().map(String::as_str).collect();
            let mut l: Vec<String> = present.into_iter().map(str::to_string).collect();
            // numeric class names sort as numbers (2 before 10)
            if l.iter().all(|s| s.parse::<f64>().is_ok()) {
                l.sort_by(|a, b| {
                    a.parse::<f64>()
                        .unwrap()
                        .total_cmp(&b.parse::<f64>().unwrap())
                });
            }
            l
        }
    };
    let index: BTreeMap<&str, i64> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i as i64))
        .collect();
    let y = raw_labels
        .iter()
        .enumerate()
        .map(|(r, l)| match l {
            None => Ok(UNLABELED),
            Some(l) => index.get(l.as_str()).copied().ok_or_else(|| {
                Error::invalid_input(format!(
                    "CSV line {}: label '{l}' is not one of the given label names",
                    r + 2
                ))
            }),
        })
        .collect::<Result<Vec<_>>>()?;
    let x = ArrayD::from_shape_vec(IxDyn(&[n, features]), values)
        .map_err(|e| Error::internal(e.to_string()))?;
    Ok(split_off_test(
        Parsed {
            x: Rows::F32(x),
            y,
            labels,
        },
        &is_test,
    ))
}

/// Separates the rows marked as test rows (if any) into a dataset of their own.
fn split_off_test(all: Parsed, is_test: &[bool]) -> (Parsed, Option<Parsed>) {
    if !is_test.iter().any(|t| *t) {
        return (all, None);
    }
    let pick = |test: bool| -> Vec<usize> {
        (0..all.rows())
            .filter(|&i| is_test.get(i) == Some(&test))
            .collect()
    };
    (all.select(&pick(false)), Some(all.select(&pick(true))))
}

/// The folder of a zip whose class folders hold test images (`_test/<class>/<file>.png`).
pub const TEST_FOLDER: &str = "_test";

fn parse_image_zip(
    src: impl Read + Seek,
    len: u64,
    opts: &ParseOptions,
) -> Result<(Parsed, Option<Parsed>)> {
    let bad = |m: String| Error::invalid_input(format!("image archive: {m}"));
    let mut zip =
        zip::ZipArchive::new(src).map_err(|e| bad(format!("not a readable zip ({e})")))?;
    // (class folder, file name) -> bytes, after checking every member's path
    let mut files: Vec<(String, String, Vec<u8>, bool)> = Vec::new();
    let limit = super::npz::inflate_budget(len as usize, opts.max_bytes);
    let mut budget = limit;
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(|e| bad(e.to_string()))?;
        let name = f.name().to_string();
        if f.enclosed_name().is_none() || name.contains('\\') {
            return Err(bad(format!("member '{name}' escapes the archive")));
        }
        if f.is_dir() {
            continue;
        }
        let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
        let Some(&file) = parts.last() else {
            return Err(bad(format!("member '{name}' has no file name")));
        };
        if file.starts_with('.') || parts.contains(&"__MACOSX") {
            continue; // macOS and editor droppings
        }
        let ext = file.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        if !matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) {
            return Err(bad(format!("member '{name}' is not a .png or .jpg image")));
        }
        if parts.len() < 2 {
            return Err(bad(format!(
                "member '{name}' is not inside a class folder (<class>/<file>.png)"
            )));
        }
        let class = parts[parts.len() - 2].to_string();
        if class == TEST_FOLDER {
            return Err(bad(format!(
                "member '{name}': test images need a class folder ({TEST_FOLDER}/<class>/<file>.png)"
            )));
        }
        let test = parts.len() >= 3 && parts[parts.len() - 3] == TEST_FOLDER;
        let buf =
            super::npz::read_member_bounded(&mut f, &name, &mut budget, limit, "image archive")?;
        files.push((class, name, buf, test));
    }
    if files.is_empty() {
        return Err(bad("no images found (expected <class>/<file>.png)".into()));
    }
    files.sort_by(|a, b| a.1.cmp(&b.1));
    let labels: Vec<String> = files
        .iter()
        .map(|f| f.0.clone())
        .filter(|c| c != UNLABELED_FOLDER)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut decoded = Vec::with_capacity(files.len());
    let mut pixel_budget = opts.max_bytes / 4;
    for (_, name, buf, _) in &files {
        let mut reader = image::ImageReader::new(std::io::Cursor::new(buf))
            .with_guessed_format()
            .map_err(|e| bad(format!("{name}: {e}")))?;
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(opts.max_bytes.min(512 << 20));
        reader.limits(limits);
        let img = reader
            .decode()
            .map_err(|e| bad(format!("cannot decode '{name}': {e}")))?;
        let px = u64::from(img.width()) * u64::from(img.height()) * 3;
        if px > pixel_budget {
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                "the images decode to more pixels than the upload limit allows",
            ));
        }
        pixel_budget -= px;
        decoded.push(img);
    }
    let (w, h) = (decoded[0].width(), decoded[0].height());
    if let Some((i, d)) = decoded
        .iter()
        .enumerate()
        .find(|(_, d)| d.width() != w || d.height() != h)
    {
        return Err(bad(format!(
            "images differ in size: '{}' is {}x{}, '{}' is {w}x{h}; resize them to one size",
            files[i].1,
            d.width(),
            d.height(),
            files[0].1
        )));
    }
    let gray = decoded.iter().all(|d| {
        matches!(
            d.color(),
            image::ColorType::L8
                | image::ColorType::L16
                | image::ColorType::La8
                | image::ColorType::La16
        )
    });
    let c = if gray { 1 } else { 3 };
    let (w, h) = (w as usize, h as usize);
    let mut x = Vec::with_capacity(decoded.len() * c * h * w);
    for d in &decoded {
        if gray {
            x.extend_from_slice(d.to_luma8().as_raw());
        } else {
            let rgb = d.to_rgb8();
            let raw = rgb.as_raw();
            for ch in 0..3 {
                x.extend((0..h * w).map(|p| raw[p * 3 + ch]));
            }
        }
    }
    let y = files
        .iter()
        .map(|f| {
            labels
                .iter()
                .position(|l| *l == f.0)
                .map_or(UNLABELED, |i| i as i64)
        })
        .collect();
    let x = ArrayD::from_shape_vec(IxDyn(&[decoded.len(), c, h, w]), x)
        .map_err(|e| Error::internal(e.to_string()))?;
    let is_test: Vec<bool> = files.iter().map(|f| f.3).collect();
    Ok(split_off_test(
        Parsed {
            x: Rows::Px8(x),
            y,
            labels,
        },
        &is_test,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_held_as_bytes_read_as_the_floats_they_stand_for() {
        let bytes = ndarray::Array::from_shape_fn((7, 1, 2, 3), |(r, _, h, w)| {
            ((r * 37 + h * 11 + w * 5) % 256) as u8
        })
        .into_dyn();
        for rows in [Rows::Px8(bytes.clone()), Rows::U8(bytes.clone())] {
            let floats = rows.clone().into_f32();
            let (b, f) = (rows.rows_view(), floats.rows_view());
            assert_eq!((b.nrows(), b.ncols()), (7, 6));
            assert_eq!(b.to_f32(), f.to_f32());
            assert_eq!(b.select(&[6, 0, 6]), f.select(&[6, 0, 6]));
            assert_eq!(b.range(2..5).to_f32(), f.slice(2..5));
            assert_eq!(b.get(3, 4), f.get(3, 4));
            assert!(b.values().eq(f.values()));
            assert!(b.column(5).eq(f.column(5)));
            let mut got = Vec::new();
            b.extend_row(1, &mut got, |j, v| v + j as f32);
            let want: Vec<f32> = f
                .values()
                .skip(6)
                .take(6)
                .enumerate()
                .map(|(j, v)| v + j as f32)
                .collect();
            assert_eq!(got, want);
            // blocks of 2 rows (2 x 6 floats), the last one short; float rows come in one block
            let mut seen = Vec::new();
            b.for_blocks(2 * 6 * 4, |r, x| {
                assert_eq!(x, f.slice(r.clone()));
                seen.push(r);
                Ok::<_, ()>(())
            })
            .unwrap();
            assert_eq!(seen, vec![0..2, 2..4, 4..6, 6..7]);
            let mut blocks = 0;
            f.for_blocks(1, |_, _| {
                blocks += 1;
                Ok::<_, ()>(())
            })
            .unwrap();
            assert_eq!(blocks, 1);
            let mut empty = Vec::new();
            b.range(3..3)
                .for_blocks(1, |r, x| {
                    empty.push((r, x.dim()));
                    Ok::<_, ()>(())
                })
                .unwrap();
            assert_eq!(empty, vec![(0..0, (0, 6))], "no rows: one empty block");
        }
        // the hash is the floats' hash, whichever way the bytes are held
        let px = Parsed {
            x: Rows::Px8(bytes),
            y: vec![0; 7],
            labels: vec!["a".into()],
        };
        assert_eq!(px.sha256(), px.clone().into_f32().sha256());
    }
}
