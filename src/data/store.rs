//! Datasets at rest: content-addressed by the sha256 of their canonical content. The rows live in the
//! blob store under `datasets/<sha256>.f32` (little-endian float32), or one byte a value when every value
//! is a `uint8` pixel as uploads scale them (k / 255: `datasets/<sha256>.px8`) or a whole number in
//! 0..=255 (`datasets/<sha256>.u8`): four times smaller, read back as the same floats bit for bit. A blob
//! is whole or absent. The description, labels and class names live in the table `datasets`. A dataset
//! is visible only once both exist.
//! The description is also kept as the record's list view (`store::listing`), so that listing datasets
//! or describing one does not read their labels (a record of two million rows is ~4 MB of them).
use std::sync::Arc;

use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

use super::dataset::{Dataset, Format, Parsed, Rows};
use crate::error::{Error, Result};
use crate::store::listing::{Listed, Listing, Paging};
use crate::store::{Blobs, Store};

/// Labeled rows of one class.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClassCount {
    pub name: String,
    pub count: usize,
}

/// What `GET /v1/datasets/{id}` shows.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatasetInfo {
    /// `ds_` + the first 16 hex digits of the sha256.
    pub id: String,
    pub sha256: String,
    /// The uploaded file's name (or the name given).
    pub name: String,
    pub format: Format,
    pub rows: usize,
    /// The shape of one row, e.g. [1, 28, 28].
    pub row_shape: Vec<usize>,
    pub labeled: usize,
    pub unlabeled: usize,
    /// Labeled rows per class, in class-index order.
    pub classes: Vec<ClassCount>,
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// The test split that came with it (stored as a dataset of its own): jobs report test accuracy on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_dataset_id: Option<String>,
}

impl DatasetInfo {
    /// The class names, in class-index order.
    pub fn label_names(&self) -> Vec<String> {
        self.classes.iter().map(|c| c.name.clone()).collect()
    }
}

impl Listed for DatasetInfo {
    fn created(&self) -> u64 {
        self.created
    }
    fn id(&self) -> &str {
        &self.id
    }
}

#[derive(Serialize, Deserialize)]
struct Record {
    info: DatasetInfo,
    y: Vec<i64>,
    /// The sha256 of the rows blob (checked when it is fetched from an object store; absent in records
    /// written before it was kept).
    #[serde(default)]
    rows_sha256: Option<String>,
    /// How the rows blob holds a value (float32 in records written before bytes were an option).
    #[serde(default)]
    rows_dtype: RowsDtype,
}

/// How a rows blob holds a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RowsDtype {
    /// Little-endian float32.
    #[default]
    F32,
    /// One byte b, the value b / 255: `uint8` pixels as uploads scale them.
    Px8,
    /// One byte: rows whose every value is a whole number in 0..=255.
    U8,
}

impl RowsDtype {
    /// Bytes per value.
    fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::Px8 | Self::U8 => 1,
        }
    }

    /// The values `bytes` hold (a whole number of values), appended to `out`.
    fn decode(self, bytes: &[u8], out: &mut Vec<f32>) {
        match self {
            Self::F32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            one_byte => out.extend(bytes.iter().map(|&b| one_byte.value(b))),
        }
    }

    /// The value byte `b` holds (Px8 and U8; the upload scales a pixel the same way).
    fn value(self, b: u8) -> f32 {
        match self {
            Self::Px8 => super::dataset::PX8_VALUES[b as usize],
            _ => super::dataset::U8_VALUES[b as usize],
        }
    }

    /// The byte that holds `v` (Px8 and U8; saturating, so a value out of range is not held).
    fn byte(self, v: f32) -> u8 {
        match self {
            Self::Px8 => (v * 255.0).round() as u8,
            _ => v as u8,
        }
    }

    /// Whether this way holds `v` exactly: the same float bits come back (so -0.0, NaN, fractions and
    /// values out of range are not held by a byte).
    fn holds(self, v: f32) -> bool {
        self == Self::F32 || self.value(self.byte(v)).to_bits() == v.to_bits()
    }

    /// The smallest way to hold `x` that gives back the same float bits.
    fn of(x: &ndarray::ArrayD<f32>) -> Self {
        [Self::Px8, Self::U8]
            .into_iter()
            .find(|d| x.iter().all(|&v| d.holds(v)))
            .unwrap_or(Self::F32)
    }
}

fn rows_unreadable(id: &str, e: std::io::Error) -> Error {
    Error::internal(format!("dataset {id}: rows file unreadable or short: {e}"))
}

/// Some rows of a stored dataset ([`DatasetStore::load_rows`]).
pub struct SomeRows {
    pub info: DatasetInfo,
    /// Every row's label.
    pub y: Vec<i64>,
    pub labels: Vec<String>,
    /// Which rows: row `i` of `x` is the dataset's row `rows[i]`.
    pub rows: Vec<usize>,
    /// The rows, flattened.
    pub x: ndarray::Array2<f32>,
}

/// What loading a stored dataset holds ([`DatasetStore::held`]).
pub struct Held {
    pub info: DatasetInfo,
    pub y: Vec<i64>,
    pub value_bytes: usize,
}

impl Held {
    /// The values of one row.
    pub fn row_len(&self) -> usize {
        self.info.row_shape.iter().product()
    }

    /// The bytes every row takes once loaded as stored ([`DatasetStore::load_parsed`]).
    pub fn bytes(&self) -> u64 {
        (self.info.rows * self.row_len() * self.value_bytes) as u64
    }
}

/// The stored datasets.
pub struct DatasetStore {
    blobs: Arc<Blobs>,
    records: Listing<Record, DatasetInfo>,
}

/// The id a dataset with this sha256 gets.
pub fn dataset_id(sha256: &str) -> String {
    format!("ds_{}", &sha256[..16])
}

impl DatasetStore {
    pub fn open(store: &Store, blobs: Arc<Blobs>) -> Result<Self> {
        Ok(Self {
            blobs,
            records: Listing::open(store.tree("datasets")?, |r: &Record| r.info.clone())?,
        })
    }

    /// Removes temporary files an interrupted store left (at start; they are never visible as datasets).
    pub fn sweep_temporary(&self) -> Result<Vec<String>> {
        self.blobs.sweep("datasets", |n| n.starts_with(".tmp"))
    }

    fn rows_key(sha256: &str, dtype: RowsDtype) -> String {
        match dtype {
            RowsDtype::F32 => format!("datasets/{sha256}.f32"),
            RowsDtype::Px8 => format!("datasets/{sha256}.px8"),
            RowsDtype::U8 => format!("datasets/{sha256}.u8"),
        }
    }

    /// Stores a validated dataset; storing the same content again returns the existing entry. Pixels are
    /// stored as they are; float rows in the smallest way that gives them back bit for bit.
    pub fn put(&self, ds: &Parsed, name: &str, format: Format) -> Result<(DatasetInfo, bool)> {
        let sha256 = ds.sha256();
        let id = dataset_id(&sha256);
        if let Ok(existing) = self.info(&id) {
            return Ok((existing, false));
        }
        let counts = ds.class_counts();
        let labeled = counts.iter().sum();
        let info = DatasetInfo {
            id: id.clone(),
            sha256: sha256.clone(),
            name: name.to_string(),
            format,
            rows: ds.rows(),
            row_shape: ds.row_shape(),
            labeled,
            unlabeled: ds.rows() - labeled,
            classes: ds
                .labels
                .iter()
                .zip(counts)
                .map(|(name, count)| ClassCount {
                    name: name.clone(),
                    count,
                })
                .collect(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            test_dataset_id: None,
        };
        let (rows_dtype, rows) = match &ds.x {
            Rows::Px8(x) | Rows::U8(x) => (
                if matches!(ds.x, Rows::Px8(_)) {
                    RowsDtype::Px8
                } else {
                    RowsDtype::U8
                },
                match x.as_slice() {
                    Some(b) => std::borrow::Cow::Borrowed(b),
                    None => std::borrow::Cow::Owned(x.iter().copied().collect()),
                },
            ),
            Rows::F32(x) => match RowsDtype::of(x) {
                RowsDtype::F32 => (RowsDtype::F32, super::dataset::f32_le_bytes(x)),
                d => (
                    d,
                    std::borrow::Cow::Owned(x.iter().map(|&v| d.byte(v)).collect()),
                ),
            },
        };
        let rows_sha256 = crate::zoo::teacher::sha256_hex(&rows);
        self.blobs
            .put(&Self::rows_key(&sha256, rows_dtype), &rows)?;
        drop(rows);
        let rec = Record {
            info: info.clone(),
            y: ds.y.clone(),
            rows_sha256: Some(rows_sha256),
            rows_dtype,
        };
        self.records.put(&id, &rec)?;
        self.records.flush()?;
        Ok((info, true))
    }

    fn not_found(id: &str) -> Error {
        Error::not_found(format!("no dataset '{id}'"))
    }

    fn record(&self, id: &str) -> Result<Record> {
        self.records.get(id)?.ok_or_else(|| Self::not_found(id))
    }

    /// Records `test_id` as the test split of dataset `id`.
    pub fn set_test(&self, id: &str, test_id: &str) -> Result<DatasetInfo> {
        let mut rec = self.record(id)?;
        rec.info.test_dataset_id = Some(test_id.to_string());
        self.records.put(id, &rec)?;
        self.records.flush()?;
        Ok(rec.info)
    }

    /// The description of a stored dataset (its list view: the labels are not read).
    pub fn info(&self, id: &str) -> Result<DatasetInfo> {
        self.records.view(id)?.ok_or_else(|| Self::not_found(id))
    }

    /// A page of the stored datasets, newest first: the page, the next page's token and how many
    /// there are.
    pub fn list(&self, paging: Paging) -> Result<(Vec<DatasetInfo>, Option<String>, usize)> {
        self.records.page(paging, |d| d, None)
    }

    /// A dataset's rows file, opened (fetched from the object store first if need be).
    fn open_rows(&self, id: &str, rec: &Record) -> Result<std::fs::File> {
        let path = self.blobs.path(
            &Self::rows_key(&rec.info.sha256, rec.rows_dtype),
            rec.rows_sha256.as_deref(),
        )?;
        std::fs::File::open(path).map_err(|e| rows_unreadable(id, e))
    }

    /// Loads the rows back as floats (read a megabyte at a time straight into the floats: the file is not
    /// held besides them).
    pub fn load(&self, id: &str) -> Result<(DatasetInfo, Dataset)> {
        let (info, ds) = self.load_as(id, false)?;
        Ok((info, ds.into_f32()))
    }

    /// Loads the rows back as they are stored: a byte a value when the blob holds bytes (pixels or whole
    /// numbers), floats otherwise. A job holds a 200,000-image dataset in 157 MB this way, not 627 MB.
    pub fn load_parsed(&self, id: &str) -> Result<(DatasetInfo, Parsed)> {
        self.load_as(id, true)
    }

    fn load_as(&self, id: &str, keep_bytes: bool) -> Result<(DatasetInfo, Parsed)> {
        let rec = self.record(id)?;
        let x = self.read_rows(id, &rec, keep_bytes)?;
        let labels = rec.info.label_names();
        Ok((
            rec.info,
            Parsed {
                x,
                y: rec.y,
                labels,
            },
        ))
    }

    /// Every row of a dataset: bytes as they are (`keep_bytes`, when the blob holds bytes), else floats.
    fn read_rows(&self, id: &str, rec: &Record, keep_bytes: bool) -> Result<Rows> {
        let unreadable = |e| rows_unreadable(id, e);
        let mut file = self.open_rows(id, rec)?;
        let n: usize = rec.info.rows * rec.info.row_shape.iter().product::<usize>();
        let size = rec.rows_dtype.size();
        if file.metadata().map_err(unreadable)?.len() != (size * n) as u64 {
            return Err(Error::internal(format!(
                "dataset {id}: rows file has the wrong size (expected {n} values of {size} bytes)"
            )));
        }
        let mut shape = vec![rec.info.rows];
        shape.extend(&rec.info.row_shape);
        let shaped = |e: ndarray::ShapeError| {
            Error::internal(format!("dataset {id}: rows file has the wrong size: {e}"))
        };
        if keep_bytes && rec.rows_dtype != RowsDtype::F32 {
            let mut bytes = vec![0u8; n];
            std::io::Read::read_exact(&mut file, &mut bytes).map_err(unreadable)?;
            let x = ArrayD::from_shape_vec(IxDyn(&shape), bytes).map_err(shaped)?;
            return Ok(match rec.rows_dtype {
                RowsDtype::Px8 => Rows::Px8(x),
                _ => Rows::U8(x),
            });
        }
        let mut values: Vec<f32> = Vec::with_capacity(n);
        let mut buf = vec![0u8; 1 << 20];
        while values.len() < n {
            let chunk = (size * (n - values.len())).min(buf.len());
            std::io::Read::read_exact(&mut file, &mut buf[..chunk]).map_err(unreadable)?;
            rec.rows_dtype.decode(&buf[..chunk], &mut values);
        }
        Ok(Rows::F32(
            ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(shaped)?,
        ))
    }

    /// A dataset's description and labels, and how many bytes a value of its rows takes once loaded as
    /// it is stored (1 for bytes, 4 for floats): what loading it will cost, before loading it.
    pub fn held(&self, id: &str) -> Result<Held> {
        let rec = self.record(id)?;
        Ok(Held {
            value_bytes: rec.rows_dtype.size(),
            info: rec.info,
            y: rec.y,
        })
    }

    /// A few rows of a dataset, read from its rows file one by one (the rest is not read): `pick`
    /// chooses them from the description and the labels.
    pub fn load_rows(
        &self,
        id: &str,
        pick: impl FnOnce(&DatasetInfo, &[i64]) -> Result<Vec<usize>>,
    ) -> Result<SomeRows> {
        use std::io::{Read, Seek, SeekFrom};
        let rec = self.record(id)?;
        let rows = pick(&rec.info, &rec.y)?;
        let d: usize = rec.info.row_shape.iter().product();
        let unreadable = |e| rows_unreadable(id, e);
        let mut file = self.open_rows(id, &rec)?;
        let size = rec.rows_dtype.size();
        let mut x = ndarray::Array2::<f32>::zeros((rows.len(), d));
        let mut buf = vec![0u8; size * d];
        let mut row = Vec::with_capacity(d);
        for (i, &r) in rows.iter().enumerate() {
            if r >= rec.info.rows {
                return Err(Error::internal(format!("dataset {id} has no row {r}")));
            }
            file.seek(SeekFrom::Start((size * d * r) as u64))
                .map_err(unreadable)?;
            file.read_exact(&mut buf).map_err(unreadable)?;
            row.clear();
            rec.rows_dtype.decode(&buf, &mut row);
            x.row_mut(i).assign(&ndarray::ArrayView1::from(&row[..]));
        }
        let labels = rec.info.label_names();
        Ok(SomeRows {
            info: rec.info,
            y: rec.y,
            labels,
            rows,
            x,
        })
    }

    /// Deletes a dataset (its catalog entry first, so a crash never leaves a visible half).
    pub fn delete(&self, id: &str) -> Result<DatasetInfo> {
        let rec = self.record(id)?;
        let info = rec.info;
        self.records.remove(id)?;
        self.records.flush()?;
        self.blobs
            .delete(&Self::rows_key(&info.sha256, rec.rows_dtype))?;
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dataset store over a temporary catalog and blob directory (kept while the directory lives).
    fn temporary() -> (tempfile::TempDir, DatasetStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::temporary().unwrap();
        let blobs = Arc::new(Blobs::open(None, dir.path(), 0).unwrap());
        (dir, DatasetStore::open(&store, blobs).unwrap())
    }

    #[test]
    fn some_rows_read_alone_equal_the_whole_load_and_give_the_same_samples() {
        let (dir, datasets) = temporary();
        let x = ndarray::Array::from_shape_fn((9, 1, 3, 2), |(n, _, h, w)| {
            (n * 6 + h * 2 + w) as f32 * 0.5 - 3.0
        })
        .into_dyn();
        let ds = Dataset {
            x,
            y: vec![0, 1, -1, 1, 0, 2, 2, 1, 0],
            labels: vec!["a".into(), "b".into(), "c".into()],
        };
        let (info, _) = datasets
            .put(&Parsed::from(ds.clone()), "t.npz", Format::Npz)
            .unwrap();
        let (_, whole) = datasets.load(&info.id).unwrap();
        assert_eq!(whole.x, ds.x);
        let some = datasets
            .load_rows(&info.id, |_, _| Ok(vec![8, 0, 3]))
            .unwrap();
        for (i, r) in [8, 0, 3].into_iter().enumerate() {
            assert_eq!(some.x.row(i), whole.flat().row(r));
        }
        assert_eq!(some.y, ds.y);
        // the preview from the rows it shows only is the preview from the whole dataset
        use crate::data::preview;
        let picked = datasets
            .load_rows(&info.id, |i, y| Ok(preview::pick(y, i.classes.len(), 2)))
            .unwrap();
        let alone = preview::render(
            picked.x.view(),
            &info.row_shape,
            &picked.rows,
            &picked.y,
            &picked.labels,
        )
        .unwrap();
        let from_all = preview::samples(&whole, 2).unwrap();
        assert_eq!(
            serde_json::to_value(&alone).unwrap(),
            serde_json::to_value(&from_all).unwrap()
        );
        // a row past the end is an error, not a short read
        assert!(datasets.load_rows(&info.id, |_, _| Ok(vec![9])).is_err());
        // a rows file cut short is refused by name
        let path = dir
            .path()
            .join(DatasetStore::rows_key(&info.sha256, RowsDtype::F32));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        let e = datasets.load(&info.id).unwrap_err();
        assert!(e.message.contains("wrong size"), "{}", e.message);
    }

    #[test]
    fn pixels_and_bytes_are_kept_one_byte_each_and_read_back_bit_for_bit() {
        let (dir, datasets) = temporary();
        let pixels = |f: fn(usize) -> f32| Dataset {
            x: ndarray::Array::from_shape_fn((6, 1, 4, 4), |(n, _, h, w)| f(n * 16 + h * 4 + w))
                .into_dyn(),
            y: vec![0, 1, 0, 1, -1, 1],
            labels: vec!["a".into(), "b".into()],
        };
        // pixels as uploads scale them (k / 255) and whole numbers 0..=255: one byte a value; anything
        // else (0.5 among pixels, a fraction, 256, -0.0, a negative value): float32
        type Case = (fn(usize) -> f32, RowsDtype);
        let cases: [Case; 7] = [
            (|i| ((i * 37) % 256) as f32 / 255.0, RowsDtype::Px8),
            (|i| if i == 7 { 0.5 } else { 1.0 }, RowsDtype::F32),
            (|i| ((i * 37) % 256) as f32, RowsDtype::U8),
            (
                |i| ((i * 37) % 256) as f32 + if i == 50 { 0.5 } else { 0.0 },
                RowsDtype::F32,
            ),
            (|i| if i == 95 { 256.0 } else { 1.0 }, RowsDtype::F32),
            (|i| if i == 3 { -0.0 } else { 0.0 }, RowsDtype::F32),
            (|i| if i == 3 { -1.0 } else { 255.0 }, RowsDtype::F32),
        ];
        for (k, (f, dtype)) in cases.into_iter().enumerate() {
            let ds = pixels(f);
            let (info, _) = datasets
                .put(&Parsed::from(ds.clone()), "p.npz", Format::Npz)
                .unwrap();
            assert_eq!(info.sha256, ds.sha256(), "case {k}: the id is the floats'");
            let file = dir.path().join(DatasetStore::rows_key(&info.sha256, dtype));
            let values = 6 * 16;
            assert_eq!(
                std::fs::metadata(&file).unwrap().len() as usize,
                dtype.size() * values,
                "case {k}: {dtype:?}"
            );
            let (_, back) = datasets.load(&info.id).unwrap();
            let bits = |x: &ndarray::ArrayD<f32>| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&back.x), bits(&ds.x), "case {k}");
            assert_eq!(back.sha256(), info.sha256, "case {k}");
            let some = datasets.load_rows(&info.id, |_, _| Ok(vec![5, 2])).unwrap();
            assert_eq!(some.x.row(0), back.flat().row(5), "case {k}");
            assert_eq!(some.x.row(1), back.flat().row(2), "case {k}");
            // a job's copy: bytes stay bytes, and stand for the same floats
            let (_, held) = datasets.load_parsed(&info.id).unwrap();
            let kept = matches!(
                (&held.x, dtype),
                (Rows::Px8(_), RowsDtype::Px8)
                    | (Rows::U8(_), RowsDtype::U8)
                    | (Rows::F32(_), RowsDtype::F32)
            );
            assert!(kept, "case {k}: {dtype:?} held as {:?}", held.view());
            assert_eq!(bits(&held.x.into_f32()), bits(&ds.x), "case {k}");
            datasets.delete(&info.id).unwrap();
            assert!(!file.exists(), "case {k}: deleting removes the blob");
        }
        // the same pixels uploaded as bytes (a uint8 npz, an image zip): the floats' id, stored as they
        // are, read back as the same floats
        let floats = pixels(cases[0].0);
        let bytes = Parsed {
            x: Rows::Px8(floats.x.mapv(|v| (v * 255.0).round() as u8)),
            y: floats.y.clone(),
            labels: floats.labels.clone(),
        };
        assert_eq!(bytes.sha256(), floats.sha256());
        let (info, _) = datasets.put(&bytes, "u8.npz", Format::Npz).unwrap();
        assert_eq!(info.sha256, floats.sha256());
        let file = dir
            .path()
            .join(DatasetStore::rows_key(&info.sha256, RowsDtype::Px8));
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 6 * 16);
        let (_, back) = datasets.load(&info.id).unwrap();
        assert_eq!(back.x, floats.x);
        assert_eq!(bytes.into_f32().x, floats.x);
    }
}
