//! A strict reader for NumPy `.npy` arrays and `.npz` archives (a zip of `.npy` files, stored or deflated).
//! Object arrays (pickles) and big-endian data are refused; every size is checked against the bytes that
//! are really there, and decompression is bounded, so a hostile archive costs at most `max_bytes`.
use std::collections::BTreeMap;
use std::io::Read;

use ndarray::{ArrayD, IxDyn};

use crate::error::{Error, Result};

/// One array from an npy file.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyArray {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
    U8(ArrayD<u8>),
    I64(ArrayD<i64>),
    /// Fixed-width unicode strings (dtype `<U`), with their shape.
    Str(Vec<String>, Vec<usize>),
}

impl NpyArray {
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Self::F32(a) => a.shape().to_vec(),
            Self::F64(a) => a.shape().to_vec(),
            Self::U8(a) => a.shape().to_vec(),
            Self::I64(a) => a.shape().to_vec(),
            Self::Str(_, s) => s.clone(),
        }
    }

    /// The array as float32 (`uint8` is scaled to [0, 1], as image pixels are).
    pub fn to_f32(&self) -> Result<ArrayD<f32>> {
        Ok(match self {
            Self::F32(a) => a.clone(),
            Self::F64(a) => a.mapv(|v| v as f32),
            Self::U8(a) => a.mapv(|v| v as f32 / 255.0),
            Self::I64(a) => a.mapv(|v| v as f32),
            Self::Str(..) => {
                return Err(Error::invalid_input(
                    "expected a numeric array, found strings",
                ));
            }
        })
    }

    /// [`NpyArray::to_f32`], consuming the array: float32 is moved, not copied, and the source of a
    /// conversion is freed as soon as it is done.
    pub fn into_f32(self) -> Result<ArrayD<f32>> {
        match self {
            Self::F32(a) => Ok(a),
            other => other.to_f32(),
        }
    }

    /// The array as integers (floats must be whole numbers).
    pub fn to_i64(&self) -> Result<ArrayD<i64>> {
        let whole = |v: f64| {
            (v.fract() == 0.0 && v.is_finite())
                .then_some(v as i64)
                .ok_or_else(|| Error::invalid_input(format!("expected integer labels, found {v}")))
        };
        Ok(match self {
            Self::I64(a) => a.clone(),
            Self::U8(a) => a.mapv(i64::from),
            Self::F32(a) => a
                .iter()
                .map(|&v| whole(v as f64))
                .collect::<Result<Vec<_>>>()
                .map(|v| ArrayD::from_shape_vec(a.raw_dim(), v).expect("same shape"))?,
            Self::F64(a) => a
                .iter()
                .map(|&v| whole(v))
                .collect::<Result<Vec<_>>>()
                .map(|v| ArrayD::from_shape_vec(a.raw_dim(), v).expect("same shape"))?,
            Self::Str(..) => {
                return Err(Error::invalid_input(
                    "expected integer labels, found strings",
                ));
            }
        })
    }
}

fn header_field<'a>(header: &'a str, key: &str) -> Result<&'a str> {
    let pat = format!("'{key}':");
    let at = header
        .find(&pat)
        .ok_or_else(|| Error::invalid_input(format!("npy header has no '{key}'")))?;
    Ok(header[at + pat.len()..].trim_start())
}

/// Parses one `.npy` file.
pub fn parse_npy(bytes: &[u8]) -> Result<NpyArray> {
    parse_npy_from(std::borrow::Cow::Borrowed(bytes))
}

fn bad_npy(m: &str) -> Error {
    Error::invalid_input(format!("not a valid .npy array: {m}"))
}

/// What an `.npy` file's header says, checked.
struct NpyHeader {
    /// Where the data starts.
    offset: usize,
    descr: String,
    kind: char,
    width: usize,
    /// Bytes per element.
    item: usize,
    fortran: bool,
    shape: Vec<usize>,
    count: usize,
}

impl NpyHeader {
    /// The shape to read the data with: Fortran order is read with the reversed shape, then the axes are
    /// reversed back.
    fn read_shape(&self) -> Vec<usize> {
        if self.fortran {
            self.shape.iter().rev().copied().collect()
        } else {
            self.shape.clone()
        }
    }
}

/// Parses and checks the header at the start of `bytes` (the data after it is not looked at).
fn npy_header(bytes: &[u8]) -> Result<NpyHeader> {
    let bad = bad_npy;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("missing the \\x93NUMPY magic"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(&format!("unsupported format version {v}"))),
    };
    if hlen > 1 << 16 || start + hlen > bytes.len() {
        return Err(bad("header length out of range"));
    }
    let header =
        std::str::from_utf8(&bytes[start..start + hlen]).map_err(|_| bad("header is not text"))?;
    let descr_s = header_field(header, "descr")?;
    let descr = descr_s
        .trim_start_matches('\'')
        .split('\'')
        .next()
        .unwrap_or("");
    let fortran = header_field(header, "fortran_order")?.starts_with("True");
    let shape_s = header_field(header, "shape")?;
    let inner = shape_s
        .trim_start_matches('(')
        .split(')')
        .next()
        .unwrap_or("");
    let shape: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad("shape is not a tuple of integers"))
        })
        .collect::<Result<_>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad("shape too large"))?;
    let (order, kind, width) = {
        let mut chars = descr.chars();
        let order = chars.next().unwrap_or(' ');
        let kind = chars.next().unwrap_or(' ');
        let width: usize = chars.as_str().parse().map_err(|_| {
            bad(&format!(
                "unsupported dtype '{descr}' (object arrays are refused)"
            ))
        })?;
        (order, kind, width)
    };
    if order == '>' {
        return Err(bad(
            "big-endian arrays are not supported; save with a little-endian dtype",
        ));
    }
    let item = if kind == 'U' {
        width.checked_mul(4).ok_or_else(|| bad("dtype too wide"))?
    } else {
        width
    };
    Ok(NpyHeader {
        offset: start + hlen,
        descr: descr.to_string(),
        kind,
        width,
        item,
        fortran,
        shape,
        count,
    })
}

fn arr<T: Clone>(v: Vec<T>, s: &[usize], fortran: bool) -> ArrayD<T> {
    let a = ArrayD::from_shape_vec(IxDyn(s), v).expect("length checked");
    if fortran {
        a.reversed_axes().as_standard_layout().into_owned()
    } else {
        a
    }
}

/// [`parse_npy`]; a `uint8` array taken by value keeps the file's buffer (no copy of its data).
fn parse_npy_from(bytes: std::borrow::Cow<'_, [u8]>) -> Result<NpyArray> {
    let bad = bad_npy;
    let h = npy_header(&bytes)?;
    let NpyHeader {
        offset,
        ref descr,
        kind,
        width,
        item,
        fortran,
        ref shape,
        count,
    } = h;
    let data = &bytes[offset..];
    if count.checked_mul(item) != Some(data.len()) {
        return Err(bad(&format!(
            "data holds {} bytes, shape {shape:?} of {descr} needs {}",
            data.len(),
            count.saturating_mul(item)
        )));
    }
    let read_shape = h.read_shape();
    let chunks = |n: usize| data.chunks_exact(n);
    Ok(match (kind, width) {
        ('f', 4) => NpyArray::F32(arr(
            chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            &read_shape,
            fortran,
        )),
        ('f', 8) => NpyArray::F64(arr(
            chunks(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            &read_shape,
            fortran,
        )),
        ('u', 1) | ('b', 1) => {
            let data = match bytes {
                std::borrow::Cow::Owned(mut v) => {
                    v.drain(..offset);
                    v
                }
                std::borrow::Cow::Borrowed(b) => b[offset..].to_vec(),
            };
            NpyArray::U8(arr(data, &read_shape, fortran))
        }
        ('i', 1) => NpyArray::I64(arr(
            data.iter().map(|&b| b as i8 as i64).collect(),
            &read_shape,
            fortran,
        )),
        ('i', 2) => NpyArray::I64(arr(
            chunks(2)
                .map(|c| i16::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect(),
            &read_shape,
            fortran,
        )),
        ('i', 4) => NpyArray::I64(arr(
            chunks(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect(),
            &read_shape,
            fortran,
        )),
        ('i', 8) => NpyArray::I64(arr(
            chunks(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            &read_shape,
            fortran,
        )),
        ('u', 2) => NpyArray::I64(arr(
            chunks(2)
                .map(|c| u16::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect(),
            &read_shape,
            fortran,
        )),
        ('u', 4) => NpyArray::I64(arr(
            chunks(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect(),
            &read_shape,
            fortran,
        )),
        ('U', _) => {
            let strings = chunks(item.max(1))
                .map(|c| {
                    c.chunks_exact(4)
                        .map(|u| u32::from_le_bytes(u.try_into().unwrap()))
                        .take_while(|&u| u != 0)
                        .map(|u| char::from_u32(u).unwrap_or('\u{FFFD}'))
                        .collect()
                })
                .collect();
            NpyArray::Str(strings, shape.clone())
        }
        _ => {
            return Err(bad(&format!(
                "unsupported dtype '{descr}' (object arrays are refused)"
            )));
        }
    })
}

/// An archive may inflate to this many times its compressed size (or `INFLATE_FLOOR`, whichever is more)
/// before it is refused as a bomb: real arrays and images deflate by 1-10x; a run of zeros by 1000x.
pub const INFLATE_RATIO: u64 = 64;
pub const INFLATE_FLOOR: u64 = 64 << 20;

/// The inflation budget of an archive of `compressed` bytes under the request's `max_bytes`.
pub fn inflate_budget(compressed: usize, max_bytes: u64) -> u64 {
    max_bytes.min(
        (compressed as u64)
            .saturating_mul(INFLATE_RATIO)
            .max(INFLATE_FLOOR),
    )
}

fn too_large(what: &str, limit: u64) -> Error {
    Error::new(
        crate::error::ErrorKind::PayloadTooLarge,
        format!(
            "the {what} inflates past its {limit}-byte limit ({INFLATE_RATIO}x its compressed size, at \
             least {} MB, at most 4x the upload limit): a ratio only a zip bomb or an almost empty array \
             has; store arrays uncompressed (np.savez) if yours really is that sparse",
            INFLATE_FLOOR >> 20
        ),
    )
}

/// Reads one archive member, at most `cap` bytes of it (what it can legitimately be) and never past
/// `budget`, which it is charged; past either the archive is refused with `PayloadTooLarge`.
pub(crate) fn read_member_bounded(
    f: &mut impl Read,
    name: &str,
    budget: &mut u64,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let read = f
        .take(*budget + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::invalid_input(format!("{what}: {name}: {e}")))?;
    if read as u64 > *budget {
        return Err(too_large(what, limit));
    }
    *budget -= read as u64;
    Ok(buf)
}

/// The header length, the data length a `.npy` header declares and what its data takes in memory once
/// read (a number narrower than 4 bytes becomes a float32 or wider); `None` when a length overflows.
fn declared_len(h: &NpyHeader) -> Option<(usize, usize, usize)> {
    let numeric = matches!(h.kind, 'f' | 'i' | 'u' | 'b');
    let in_memory = if numeric { h.item.max(4) } else { h.item };
    Some((
        h.offset,
        h.count.checked_mul(h.item)?,
        h.count.checked_mul(in_memory)?,
    ))
}

/// The most bytes an `.npy` header may take: the magic, version and length (12 bytes at most) and
/// a 64 KiB header.
const HEADER_MAX: u64 = 64 * 1024 + 12;

/// Reads and parses an `.npy` member lazily: its header first, then exactly the bytes its shape declares
/// (refused before inflating when that is past the budget, and as soon as the member holds more).
/// float32 data (and float64 data when `as_f32`, converted as `NpyArray::to_f32` does) is read a block at
/// a time into a float32 array, and `uint8` data becomes its array in place: a member costs its array,
/// not its bytes and then its array.
fn read_npy_member(
    f: &mut impl Read,
    name: &str,
    budget: &mut u64,
    limit: u64,
    as_f32: bool,
) -> Result<NpyArray> {
    let what = ".npz archive";
    let io = |e: std::io::Error| Error::invalid_input(format!("{what}: {name}: {e}"));
    let head_max = (*budget).min(HEADER_MAX);
    let mut buf = Vec::new();
    f.take(head_max).read_to_end(&mut buf).map_err(io)?;
    let header = npy_header(&buf).ok();
    let Some((hdr, data, in_memory)) = header.as_ref().and_then(declared_len) else {
        // the budget ran out before a header could be read: the limit is the problem, not the member
        if (buf.len() as u64) == head_max
            && head_max < HEADER_MAX
            && f.read(&mut [0u8; 1]).map_err(io)? > 0
        {
            return Err(too_large(what, limit));
        }
        // not a valid header: let the parser say why, on what was read
        *budget = budget.saturating_sub(buf.len() as u64);
        return parse_npy(&buf);
    };
    let total = hdr.saturating_add(data) as u64;
    if total > *budget {
        return Err(too_large(what, limit));
    }
    // charged at what it takes once read: 1-byte pixels become 4-byte floats
    let charged = hdr.saturating_add(in_memory) as u64;
    if charged > *budget {
        return Err(Error::new(
            crate::error::ErrorKind::PayloadTooLarge,
            format!(
                "member '{name}' holds {data} bytes of numbers that take {in_memory} bytes once read \
                 (as float32, 4 bytes each), past the archive's {limit}-byte limit ({INFLATE_RATIO}x its \
                 compressed size, at most 4x the upload limit: --max-upload-bytes)"
            ),
        ));
    }
    let too_long = || {
        Error::invalid_input(format!(
            "not a valid .npy array: member '{name}' holds more bytes than its shape declares"
        ))
    };
    let ends = |f: &mut dyn Read| -> Result<()> {
        match f.read(&mut [0u8; 1]).map_err(io)? {
            0 => Ok(()),
            _ => Err(too_long()),
        }
    };
    if let Some(h) = header.filter(|h| h.kind == 'f' && (h.width == 4 || (h.width == 8 && as_f32)))
        && buf.len() <= total as usize
    {
        // read a block at a time into the floats: what was read with the header, then the member
        let mut rest = (&buf[hdr..]).chain(&mut *f);
        let mut block = vec![0u8; h.width << 13];
        let mut v: Vec<f32> = Vec::with_capacity(h.count);
        while v.len() < h.count {
            let n = ((h.count - v.len()) * h.width).min(block.len());
            rest.read_exact(&mut block[..n])
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => bad_npy(&format!(
                        "member '{name}' holds fewer bytes than shape {:?} of {} needs ({data})",
                        h.shape, h.descr
                    )),
                    _ => io(e),
                })?;
            match h.width {
                4 => v.extend(
                    block[..n]
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap())),
                ),
                _ => v.extend(
                    block[..n]
                        .chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32),
                ),
            }
        }
        ends(f)?;
        *budget -= charged;
        return Ok(NpyArray::F32(arr(v, &h.read_shape(), h.fortran)));
    }
    if (buf.len() as u64) < total {
        buf.reserve_exact(total as usize - buf.len());
        f.take(total - buf.len() as u64)
            .read_to_end(&mut buf)
            .map_err(io)?;
    }
    if buf.len() as u64 > total {
        return Err(too_long());
    }
    ends(f)?;
    *budget -= charged;
    parse_npy_from(std::borrow::Cow::Owned(buf))
}

/// Reads every `.npy` member of an `.npz` archive, refusing archives that would inflate past their
/// budget (see [`inflate_budget`]); other members are not read.
pub fn read_npz(bytes: &[u8], max_bytes: u64) -> Result<BTreeMap<String, NpyArray>> {
    read_npz_from(std::io::Cursor::new(bytes), max_bytes, &[])
}

/// [`read_npz`] from a file or any other seekable source (dropped once its arrays are read); the
/// members named in `as_f32` are read as float32 when they hold float64 (never held as float64).
pub fn read_npz_from(
    mut src: impl Read + std::io::Seek,
    max_bytes: u64,
    as_f32: &[&str],
) -> Result<BTreeMap<String, NpyArray>> {
    let bad = |m: String| Error::invalid_input(format!("not a valid .npz archive: {m}"));
    let len = src.seek(std::io::SeekFrom::End(0))?;
    src.rewind()?;
    let mut zip = zip::ZipArchive::new(src).map_err(|e| bad(e.to_string()))?;
    let mut out = BTreeMap::new();
    let limit = inflate_budget(len as usize, max_bytes);
    let mut budget = limit;
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).map_err(|e| bad(e.to_string()))?;
        let name = f.name().to_string();
        let Some(key) = name.strip_suffix(".npy") else {
            continue;
        };
        if key.contains(['/', '\\']) || key.contains("..") {
            return Err(bad(format!(
                "member '{name}' has a path; npz members are plain names"
            )));
        }
        let a = read_npy_member(&mut f, &name, &mut budget, limit, as_f32.contains(&key))
            .map_err(|e| e.context(format!("member '{name}'")))?;
        out.insert(key.to_string(), a);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((header.len() as u16).to_le_bytes());
        b.extend(header.as_bytes());
        b.extend(data);
        b
    }

    #[test]
    fn reads_floats_ints_and_strings() {
        let f: Vec<u8> = [1.5f32, -2.0, 3.25, 0.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let a = parse_npy(&npy("<f4", "(2, 2)", &f)).unwrap();
        assert_eq!(a.shape(), vec![2, 2]);
        assert_eq!(a.to_f32().unwrap()[[1, 0]], 3.25);
        let i: Vec<u8> = [3i64, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            parse_npy(&npy("<i8", "(2,)", &i))
                .unwrap()
                .to_i64()
                .unwrap()
                .as_slice()
                .unwrap(),
            &[3, -1]
        );
        let u = parse_npy(&npy("|u1", "(1,)", &[255])).unwrap();
        assert_eq!(u.to_f32().unwrap()[[0]], 1.0);
        let s: Vec<u8> = "ab\0\0c\0\0\0"
            .chars()
            .flat_map(|c| (c as u32).to_le_bytes())
            .collect();
        assert_eq!(
            parse_npy(&npy("<U4", "(2,)", &s)).unwrap(),
            NpyArray::Str(vec!["ab".into(), "c".into()], vec![2])
        );
    }

    #[test]
    fn refuses_hostile_or_inconsistent_arrays() {
        assert!(parse_npy(b"not numpy at all").is_err());
        assert!(
            parse_npy(&npy("|O", "(1,)", &[0; 8]))
                .unwrap_err()
                .message
                .contains("object arrays")
        );
        assert!(
            parse_npy(&npy(">f4", "(1,)", &[0; 4]))
                .unwrap_err()
                .message
                .contains("big-endian")
        );
        assert!(
            parse_npy(&npy("<f4", "(1000000, 1000000)", &[0; 4]))
                .unwrap_err()
                .message
                .contains("needs")
        );
        assert!(parse_npy(&npy("<f4", "(99999999999999999999,)", &[0; 4])).is_err());
        assert!(read_npz(b"PK\x03\x04 truncated", 1000).is_err());
    }

    #[test]
    fn a_budget_too_small_for_the_header_says_so() {
        let f: Vec<u8> = [1.5f32; 8].iter().flat_map(|v| v.to_le_bytes()).collect();
        let z = zip_of(
            &[("x.npy", npy("<f4", "(8,)", &f))],
            zip::CompressionMethod::Stored,
        );
        for max in [0, 10] {
            let e = read_npz(&z, max).unwrap_err();
            assert_eq!(e.kind, crate::error::ErrorKind::PayloadTooLarge, "{e:?}");
            assert!(e.message.contains(&format!("{max}-byte limit")), "{e:?}");
        }
        assert_eq!(read_npz(&z, 1 << 20).unwrap()["x"].shape(), vec![8]);
        // a member that is all there and only too short for a header is still a bad member
        let e = read_npz(
            &zip_of(
                &[("x.npy", b"\x93NUM".to_vec())],
                zip::CompressionMethod::Stored,
            ),
            6,
        )
        .unwrap_err();
        assert!(e.message.contains("NUMPY"), "{e:?}");
    }

    fn zip_of(members: &[(&str, Vec<u8>)], method: zip::CompressionMethod) -> Vec<u8> {
        use std::io::Write;
        let mut buf = std::io::Cursor::new(Vec::new());
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        for (name, bytes) in members {
            z.start_file(*name, opts).unwrap();
            z.write_all(bytes).unwrap();
        }
        z.finish().unwrap();
        buf.into_inner()
    }

    #[test]
    fn members_are_read_straight_into_their_arrays_and_checked_the_same() {
        // float32 members larger than the header read (64 KB), in C and Fortran order, and pixels: read
        // from an archive, stored or deflated, they equal the whole-file parse bit for bit
        let floats: Vec<u8> = (0..30_000)
            .flat_map(|i| (i as f32 * 0.5 - 7.25).to_le_bytes())
            .collect();
        let mut fortran = npy("<f4", "(300, 100)", &floats);
        let at = fortran.windows(5).position(|w| w == b"False").unwrap();
        fortran.splice(at..at + 5, b"True ".iter().copied());
        let pixels: Vec<u8> = (0..100_000).map(|i| (i % 251) as u8).collect();
        let members = [
            ("x.npy", npy("<f4", "(300, 100)", &floats)),
            ("f.npy", fortran),
            ("p.npy", npy("|u1", "(1000, 100)", &pixels)),
            ("s.npy", npy("<f4", "(2,)", &floats[..8])),
        ];
        for method in [
            zip::CompressionMethod::Stored,
            zip::CompressionMethod::Deflated,
        ] {
            let got = read_npz(&zip_of(&members, method), 1 << 24).unwrap();
            for (name, bytes) in &members {
                let key = name.strip_suffix(".npy").unwrap();
                assert_eq!(got[key], parse_npy(bytes).unwrap(), "{name} {method:?}");
            }
            let NpyArray::F32(f) = &got["f"] else {
                panic!("f32")
            };
            assert_eq!(f.shape(), &[300, 100]);
            assert_eq!(
                f[[1, 0]],
                0.5 - 7.25,
                "Fortran order: the second value is [1, 0]"
            );
        }
        // float64 members asked for as float32: converted as they are read, as `to_f32` converts them;
        // other members keep their type
        let doubles: Vec<u8> = (0..20_000)
            .flat_map(|i| (f64::from(i) / 3.0 - 1e-9).to_le_bytes())
            .collect();
        let d = npy("<f8", "(200, 100)", &doubles);
        for method in [
            zip::CompressionMethod::Stored,
            zip::CompressionMethod::Deflated,
        ] {
            let zipped = zip_of(&[("d.npy", d.clone()), ("e.npy", d.clone())], method);
            let got = read_npz_from(std::io::Cursor::new(&zipped), 1 << 24, &["d"]).unwrap();
            let whole = parse_npy(&d).unwrap();
            assert_eq!(
                got["d"],
                NpyArray::F32(whole.to_f32().unwrap()),
                "{method:?}"
            );
            assert_eq!(got["e"], whole, "{method:?}");
        }
        // a member with fewer or more bytes than its shape declares is refused by name
        let short = npy("<f4", "(300, 100)", &floats[..100_000]);
        let mut long = npy("<f4", "(300, 100)", &floats);
        long.extend([0, 0, 0, 0]);
        for (bytes, says) in [(short, "fewer bytes"), (long, "more bytes")] {
            for method in [
                zip::CompressionMethod::Stored,
                zip::CompressionMethod::Deflated,
            ] {
                let e =
                    read_npz(&zip_of(&[("x.npy", bytes.clone())], method), 1 << 24).unwrap_err();
                assert_eq!(e.kind, crate::error::ErrorKind::InvalidInput);
                assert!(e.message.contains(says), "{}", e.message);
                assert!(e.message.contains("x.npy"), "{}", e.message);
            }
        }
    }

    #[test]
    fn npz_inflation_is_bounded() {
        use std::io::Write;
        let zeros = vec![0u8; 4 * 250_000];
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            z.start_file("x.npy", opts).unwrap();
            z.write_all(&npy("<f4", "(250000,)", &zeros)).unwrap();
            z.finish().unwrap();
        }
        let bytes = buf.into_inner();
        assert!(
            bytes.len() < 10_000,
            "a small archive that inflates to 1 MB"
        );
        let e = read_npz(&bytes, 100_000).unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::PayloadTooLarge);
        assert_eq!(
            read_npz(&bytes, 2_000_000).unwrap()["x"].shape(),
            vec![250000]
        );
    }
}
