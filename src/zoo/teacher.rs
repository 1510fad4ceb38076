//! What faculty knows about one teacher, and how it finds out: [`inspect`] decodes the model, loads it in
//! ONNX Runtime, picks the class-probability output, reads labels, and runs a small probe batch to learn
//! the class count and whether the output is logits. It never fails: a model it cannot use comes back with
//! `usable: false` and the reason.
use std::collections::BTreeMap;

use ndarray::ArrayD;
use ort::session::Session;
use ort::value::{TensorElementType, ValueType};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::onnx::session::{
    ChannelNorm, InputType, Predictor, extract_scores, load_session, load_session_sized,
};
use crate::onnx::{OutputKind, graph};

/// One graph input or output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TensorSig {
    pub name: String,
    /// `float32`, `int64`, ..., or `sequence<map<int64,float32>>` for a ZipMap.
    pub elem_type: String,
    /// Dimensions, -1 where dynamic; empty for non-tensors.
    pub shape: Vec<i64>,
}

/// A teacher in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Teacher {
    /// `<name>` for a flat file, `<name>@<version>` in the versioned layout.
    pub id: String,
    pub name: String,
    pub version: String,
    /// Path of the model file relative to the zoo directory, or for a teacher kept in the object store
    /// its blob key (`teachers/<sha256>.onnx`).
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
    /// Learned numbers: initializers, Constant tensors, classic-ML coefficients and thresholds.
    pub params: u64,
    /// Class names in output order.
    pub labels: Vec<String>,
    /// Where the labels came from: `metadata:<key>`, `card`, `classlabels`, or `index` (no names found).
    pub label_source: String,
    pub num_classes: Option<usize>,
    pub inputs: Vec<TensorSig>,
    pub outputs: Vec<TensorSig>,
    /// How class probabilities are read (absent when the model is unusable).
    pub predictor: Option<Predictor>,
    /// True when the chosen output holds logits and faculty applies a softmax.
    pub softmax_applied: bool,
    pub producer: String,
    pub opsets: BTreeMap<String, i64>,
    pub description: Option<String>,
    /// metadata_props and sidecar card fields (licence, training data, architecture, ...).
    pub provenance: BTreeMap<String, String>,
    pub usable: bool,
    /// Why the teacher is not usable.
    pub reason: Option<String>,
    /// Things worth knowing that do not make it unusable.
    pub warnings: Vec<String>,
    /// Unix seconds when the file was (re)indexed.
    pub indexed_at: u64,
}

/// A sidecar card: JSON next to the model that adds or overrides labels and provenance.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Card {
    pub labels: Option<Vec<serde_json::Value>>,
    /// Row shape (without the batch dimension) for models whose input dimensions are dynamic.
    pub input_shape: Option<Vec<i64>>,
    pub description: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Where a teacher sits in the zoo.
#[derive(Debug, Clone)]
pub struct Ident {
    pub id: String,
    pub name: String,
    pub version: String,
    pub path: String,
}

const LABEL_KEYS: &[&str] = &[
    "labels",
    "classes",
    "class_names",
    "classnames",
    "class_labels",
    "label_names",
    "labelnames",
    "categories",
    "id2label",
];
const PROB_NAMES: &[&str] = &["prob", "softmax", "score", "logit"];

/// The largest batch a model's input may fix (larger, and a few rows would cost a whole batch's run).
const MAX_FIXED_BATCH: usize = 1024;

/// Hex sha256 of a byte string.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Teacher {
    /// The `input_mean` / `input_std` JSON lists its metadata or card declare, if both are there (one
    /// value per feature, or per channel of an image input: see `rank::outputs::standardisation` and
    /// [`ChannelNorm::declared`]).
    pub fn declared_standardisation(&self) -> Option<(Vec<f32>, Vec<f32>)> {
        let read = |k: &str| serde_json::from_str::<Vec<f32>>(self.provenance.get(k)?).ok();
        Some((read("input_mean")?, read("input_std")?))
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn elem_name(t: TensorElementType) -> String {
    use TensorElementType as T;
    match t {
        T::Float32 => "float32",
        T::Float64 => "float64",
        T::Float16 => "float16",
        T::Bfloat16 => "bfloat16",
        T::Int8 => "int8",
        T::Int16 => "int16",
        T::Int32 => "int32",
        T::Int64 => "int64",
        T::Uint8 => "uint8",
        T::Uint16 => "uint16",
        T::Uint32 => "uint32",
        T::Uint64 => "uint64",
        T::Bool => "bool",
        T::String => "string",
        _ => "other",
    }
    .into()
}

fn sig(name: &str, ty: &ValueType) -> TensorSig {
    let (elem_type, shape) = match ty {
        ValueType::Tensor { ty, shape, .. } => (elem_name(*ty), shape.to_vec()),
        ValueType::Sequence(inner) => match inner.as_ref() {
            ValueType::Map { key, value } => (
                format!("sequence<map<{},{}>>", elem_name(*key), elem_name(*value)),
                vec![],
            ),
            _ => ("sequence".into(), vec![]),
        },
        ValueType::Map { key, value } => (
            format!("map<{},{}>", elem_name(*key), elem_name(*value)),
            vec![],
        ),
        ValueType::Optional(_) => ("optional".into(), vec![]),
    };
    TensorSig {
        name: name.into(),
        elem_type,
        shape,
    }
}

/// Parses a label list: a JSON list, a JSON object `{index: name}`, or a comma / newline separated list.
pub fn parse_labels(value: &str) -> Option<Vec<String>> {
    let show = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    match serde_json::from_str::<serde_json::Value>(value.trim()) {
        Ok(serde_json::Value::Array(items)) if !items.is_empty() => {
            return Some(items.iter().map(show).collect());
        }
        Ok(serde_json::Value::Object(map)) if !map.is_empty() => {
            let mut pairs: Vec<(i64, String)> = map
                .iter()
                .map(|(k, v)| Some((k.trim().parse().ok()?, show(v))))
                .collect::<Option<_>>()?;
            pairs.sort();
            return Some(pairs.into_iter().map(|(_, v)| v).collect());
        }
        _ => {}
    }
    let sep = if value.contains('\n') && !value.contains(',') {
        '\n'
    } else {
        ','
    };
    let items: Vec<String> = value.split(sep).map(|s| s.trim().to_string()).collect();
    (items.len() >= 2 && items.iter().all(|s| !s.is_empty())).then_some(items)
}

/// Whether a metadata key names the class labels (`labels`, `acme.class_names`, `ns:classes`, ...).
fn is_label_key(k: &str) -> bool {
    let bare = k
        .rsplit(['.', ':', '/'])
        .next()
        .unwrap_or(k)
        .trim()
        .to_ascii_lowercase();
    LABEL_KEYS.contains(&bare.as_str())
}

/// Finds labels in metadata_props under the common key conventions, with or without a namespace prefix.
fn metadata_labels(meta: &BTreeMap<String, String>) -> Option<(String, Vec<String>)> {
    meta.iter()
        .filter(|(k, _)| is_label_key(k))
        .find_map(|(k, v)| parse_labels(v).map(|l| (format!("metadata:{k}"), l)))
}

/// Deterministic pseudo-random probe rows of `shape` (batch first): values in [0, 1), small whole numbers (valid byte or token ids
/// for any vocabulary) for an integer input; the same every time.
pub fn probe_input(input_type: InputType, shape: &[usize]) -> ArrayD<f32> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut x = ArrayD::from_shape_simple_fn(shape.to_vec(), || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    });
    if input_type.is_integer() {
        x.mapv_inplace(|v| (v * 4.0).floor());
    }
    x
}

fn choose_output(outputs: &[TensorSig]) -> Option<(String, OutputKind)> {
    let tensor_like = |s: &TensorSig| {
        matches!(s.elem_type.as_str(), "float32" | "float64" | "float16")
            && s.shape.len() >= 2
            && s.shape[1..].iter().all(|&d| d != 0)
            && s.shape[1..].iter().product::<i64>().abs() != 1
    };
    let zipmap = |s: &TensorSig| {
        s.elem_type.starts_with("sequence<map<") && s.elem_type.ends_with(",float32>>")
    };
    let named = |s: &TensorSig| {
        let n = s.name.to_ascii_lowercase();
        PROB_NAMES.iter().any(|p| n.contains(p))
    };
    let pick = |s: &TensorSig| {
        let kind = if zipmap(s) {
            OutputKind::Zipmap
        } else {
            OutputKind::Probabilities
        };
        (s.name.clone(), kind)
    };
    outputs
        .iter()
        .find(|s| tensor_like(s) && named(s))
        .or_else(|| outputs.iter().find(|s| tensor_like(s)))
        .or_else(|| outputs.iter().find(|s| zipmap(s)))
        .map(pick)
}

/// What [`inspect`] learned, plus the session it validated the model with (worth keeping in a pool).
pub struct Inspection {
    pub teacher: Teacher,
    pub session: Option<Session>,
    /// What the session pool should count that session at (`onnx::session::session_estimate`).
    pub session_bytes: u64,
    /// The row shape the probe batch that succeeded had (a model with dynamic dimensions gets them
    /// filled in); `None` for an unusable model.
    pub probe_row: Option<Vec<usize>>,
}

/// Inspects model bytes. `card` is the sidecar card's text, if any.
pub fn inspect(bytes: &[u8], ident: Ident, card: Option<&str>, intra_threads: usize) -> Inspection {
    let mut t = Teacher {
        id: ident.id,
        name: ident.name,
        version: ident.version,
        path: ident.path,
        sha256: sha256_hex(bytes),
        bytes: bytes.len() as u64,
        params: 0,
        labels: vec![],
        label_source: "index".into(),
        num_classes: None,
        inputs: vec![],
        outputs: vec![],
        predictor: None,
        softmax_applied: false,
        producer: String::new(),
        opsets: BTreeMap::new(),
        description: None,
        provenance: BTreeMap::new(),
        usable: false,
        reason: None,
        warnings: vec![],
        indexed_at: now_unix(),
    };
    match inspect_into(&mut t, bytes, card, intra_threads) {
        Ok((session, session_bytes, row)) => {
            t.usable = true;
            Inspection {
                teacher: t,
                session: Some(session),
                session_bytes,
                probe_row: Some(row),
            }
        }
        Err(e) => {
            t.usable = false;
            t.reason = Some(e.message);
            t.predictor = None;
            Inspection {
                teacher: t,
                session: None,
                session_bytes: 0,
                probe_row: None,
            }
        }
    }
}

/// How the probe ran a model with a fixed batch: what checking a freed batch against it needs.
struct FixedRun<'a> {
    input: &'a TensorSig,
    input_type: InputType,
    output: &'a str,
    kind: OutputKind,
    /// The shape of one probe row.
    row: &'a [usize],
    /// How far (relative) a freed run's score may stray from the fixed run's.
    tol: f32,
}

impl FixedRun<'_> {
    /// Scores [m, K] of one run of `session` on `rows` (m rows of the probe row's shape).
    fn run(
        &self,
        session: &mut Session,
        rows: &[f32],
        m: usize,
    ) -> std::result::Result<ndarray::Array2<f32>, String> {
        let mut dims = vec![m as i64];
        dims.extend(self.row.iter().map(|&d| d as i64));
        let value = self.input_type.value(dims, rows).map_err(|e| e.message)?;
        let outs = session
            .run(ort::inputs![self.input.name.as_str() => value])
            .map_err(|e| e.to_string())?;
        let out = outs
            .get(self.output)
            .ok_or_else(|| format!("no output named {}", self.output))?;
        extract_scores(out, self.kind, m).map_err(|e| e.message)
    }

    /// A session of `model` with its fixed batch of `b` rows freed (`onnx::batch`), if on `b + 1` probe
    /// rows at once it gives the scores that `fixed` gives `b` rows at a time (the last run padded);
    /// else why not.
    fn freed(
        &self,
        model: &crate::onnx::proto::ModelProto,
        fixed: &mut Session,
        b: usize,
        threads: usize,
    ) -> std::result::Result<Session, String> {
        let freed = crate::onnx::batch::free_batch(model, &self.input.name, b as i64)
            .ok_or("its batch is not the first dimension of a graph input")?;
        let mut session =
            load_session(&prost::Message::encode_to_vec(&freed), threads).map_err(|e| e.message)?;
        let n = b + 1;
        let mut shape = vec![n];
        shape.extend(self.row);
        let x = probe_input(self.input_type, &shape);
        let flat = x.as_slice().expect("a new array is contiguous");
        let len = flat.len() / n;
        let all = self
            .run(&mut session, flat, n)
            .map_err(|e| format!("a batch of {n} fails: {e}"))?;
        for start in (0..n).step_by(b) {
            let m = b.min(n - start);
            let mut chunk = flat[start * len..(start + m) * len].to_vec();
            for _ in m..b {
                chunk.extend_from_slice(&flat[(n - 1) * len..]);
            }
            let want = self.run(fixed, &chunk, b)?;
            for i in 0..m {
                let (w, g) = (want.row(i), all.row(start + i));
                if w.iter()
                    .zip(g)
                    .any(|(w, g)| (w - g).abs() > self.tol * (1.0 + w.abs()))
                {
                    return Err(format!("row {} of a batch of {n} differs", start + i));
                }
            }
        }
        Ok(session)
    }
}

fn inspect_into(
    t: &mut Teacher,
    bytes: &[u8],
    card: Option<&str>,
    threads: usize,
) -> Result<(Session, u64, Vec<usize>)> {
    use crate::error::Error;
    let model = graph::decode(bytes)?;
    if let Some(g) = model.graph.as_ref() {
        let external: Vec<String> = g
            .initializer
            .iter()
            .filter(|i| i.data_location == Some(1) || !i.external_data.is_empty())
            .map(|i| {
                let loc = i
                    .external_data
                    .iter()
                    .find(|e| e.key.as_deref() == Some("location"))
                    .and_then(|e| e.value.clone())
                    .unwrap_or_default();
                format!("{} in '{loc}'", i.name.as_deref().unwrap_or("?"))
            })
            .collect();
        if !external.is_empty() {
            return Err(Error::invalid_model(format!(
                "its weights live in external data files ({}{}); faculty needs them inside the .onnx \
                 file: onnx.save(model, path, save_as_external_data=False)",
                external[..external.len().min(3)].join(", "),
                if external.len() > 3 { ", ..." } else { "" }
            )));
        }
    }
    let info = graph::info(&model);
    t.params = info.params;
    t.producer = info.producer.clone();
    t.opsets = info.opsets.clone();
    if let Some(v) = info.model_version.filter(|&v| v > 0 && v != i64::MAX)
        && !t.path.ends_with("/model.onnx")
    {
        t.version = v.to_string();
    }
    t.provenance = info
        .metadata
        .iter()
        .filter(|(k, _)| !is_label_key(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    t.description = info
        .metadata
        .get("description")
        .cloned()
        .or_else(|| (!info.doc.is_empty()).then(|| info.doc.clone()));
    let mut labels = metadata_labels(&info.metadata);
    let mut declared_shape: Option<Vec<i64>> = info
        .metadata
        .get("input_shape")
        .and_then(|v| serde_json::from_str(v).ok());
    if let Some(text) = card {
        match serde_json::from_str::<Card>(text) {
            Ok(c) => {
                if let Some(l) = c.labels.filter(|l| !l.is_empty()) {
                    let show = |v: &serde_json::Value| {
                        v.as_str().map_or_else(|| v.to_string(), str::to_string)
                    };
                    labels = Some(("card".into(), l.iter().map(show).collect()));
                }
                if c.input_shape.is_some() {
                    declared_shape = c.input_shape;
                }
                if c.description.is_some() {
                    t.description = c.description;
                }
                for (k, v) in c.extra {
                    t.provenance
                        .insert(k, v.as_str().map_or_else(|| v.to_string(), str::to_string));
                }
            }
            Err(e) => t
                .warnings
                .push(format!("sidecar card ignored: not valid JSON ({e})")),
        }
    }
    if labels.is_none() {
        labels = info
            .classlabels
            .clone()
            .map(|l| ("classlabels".to_string(), l));
    }

    let (mut session, session_bytes) = load_session_sized(bytes, threads)?;
    t.inputs = session
        .inputs()
        .iter()
        .map(|o| sig(o.name(), o.dtype()))
        .collect();
    t.outputs = session
        .outputs()
        .iter()
        .map(|o| sig(o.name(), o.dtype()))
        .collect();
    let input = match t.inputs.as_slice() {
        [one] => one.clone(),
        many => {
            return Err(Error::invalid_model(format!(
                "teachers must take exactly one input; this model takes {}",
                many.len()
            )));
        }
    };
    let mut input = input;
    if let Some(row) = declared_shape {
        let fits = row.len() + 1 == input.shape.len()
            && row
                .iter()
                .zip(&input.shape[1..])
                .all(|(&r, &d)| r > 0 && (d < 0 || d == r));
        if !fits {
            return Err(Error::invalid_model(format!(
                "declared input_shape {row:?} does not fit the model input {:?}",
                input.shape
            )));
        }
        input.shape.truncate(1);
        input.shape.extend(row);
    }
    let input_type = InputType::of(&input.elem_type).ok_or_else(|| {
        Error::invalid_model(format!(
            "input '{}' is {}; faculty feeds teachers float32, float64, float16, int32, int64 or uint8 \
             tensors",
            input.name, input.elem_type
        ))
    })?;
    if input.shape.len() < 2 {
        return Err(Error::invalid_model(format!(
            "input '{}' has shape {:?}; expected a batch dimension followed by the row shape",
            input.name, input.shape
        )));
    }
    let (output, mut kind) = choose_output(&t.outputs).ok_or_else(|| {
        let found: Vec<String> =
            t.outputs.iter().map(|o| format!("{} ({} {:?})", o.name, o.elem_type, o.shape)).collect();
        Error::invalid_model(format!(
            "no classifier-like output: expected a float tensor [N, K] with K >= 2 or a ZipMap of class \
             probabilities; the outputs are {}",
            found.join(", ")
        ))
    })?;
    // Probe: a tiny batch tells the class count and whether the scores are probabilities. Dynamic
    // dimensions besides the batch get a few sizes in turn (the rows a dataset brings are checked against
    // the symbolic shape at ranking time).
    let dynamic = input.shape[1..].iter().any(|&d| d <= 0);
    // a model exported for a fixed batch (often 1) is run that many rows at a time
    let probe_rows = match input.shape[0] {
        d if d > MAX_FIXED_BATCH as i64 => {
            return Err(Error::invalid_model(format!(
                "input '{}' fixes a batch of {d} rows; faculty runs a teacher on batches of up to \
                 {MAX_FIXED_BATCH} rows: export it with a dynamic (or smaller) batch dimension",
                input.name
            )));
        }
        d if d > 0 => d as usize,
        _ => 3,
    };
    let sizes: &[usize] = if dynamic { &[32, 64, 224] } else { &[0] };
    let mut probed = None;
    let mut last_err = String::new();
    for &size in sizes {
        let row: Vec<usize> = input.shape[1..]
            .iter()
            .map(|&d| if d > 0 { d as usize } else { size })
            .collect();
        let mut shape = vec![probe_rows];
        shape.extend(&row);
        let x = probe_input(input_type, &shape);
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let flat = x.as_slice().expect("a new array is contiguous");
        let value = input_type.value(dims, flat)?;
        match session.run(ort::inputs![input.name.as_str() => value]) {
            Ok(outs) => {
                probed = Some((
                    extract_scores(&outs[output.as_str()], kind, probe_rows)?,
                    row,
                ));
                break;
            }
            Err(e) => last_err = e.to_string(),
        }
    }
    let (scores, probe_row) = probed.ok_or_else(|| {
        Error::invalid_model(format!(
            "the model fails on a probe batch{}: {last_err}",
            if dynamic {
                format!(
                    " (its input {:?} has dynamic dimensions; tried sizes 32, 64 and 224 for them: \
                     give an input_shape in a card if it needs others)",
                    input.shape
                )
            } else {
                String::new()
            }
        ))
    })?;
    // a float16 output keeps 3 significant digits a value
    let half = t
        .outputs
        .iter()
        .any(|o| o.name == output && o.elem_type == "float16");
    let mut freed_batch = None;
    if input.shape[0] > 0 {
        let b = input.shape[0] as usize;
        let rows = if b == 1 { "" } else { "s" };
        let freed = FixedRun {
            input: &input,
            input_type,
            output: &output,
            kind,
            row: &probe_row,
            tol: if half { 1e-2 } else { 1e-4 },
        }
        .freed(&model, &mut session, b, threads);
        match freed {
            Ok(s) => {
                session = s;
                freed_batch = Some(b);
                input.shape[0] = -1;
                t.warnings.push(format!(
                    "input '{}' fixes the batch at {b} row{rows}: faculty runs it with the batch freed \
                     (checked: the same outputs row for row on a batch of {})",
                    input.name,
                    b + 1
                ));
            }
            Err(why) => t.warnings.push(format!(
                "input '{}' fixes the batch at {b} row{rows}: faculty runs it that many rows at a time, as \
                 freeing the batch did not give the same outputs ({why}); export it with a dynamic \
                 batch dimension to let faculty size its batches",
                input.name
            )),
        }
    }
    if dynamic {
        t.warnings.push(format!(
            "input '{}' has dynamic dimensions {:?}: rows of any shape that fits them are accepted, and \
             checked when a dataset is ranked",
            input.name, input.shape
        ));
    }
    let k = scores.ncols();
    if k < 2 {
        return Err(Error::invalid_model(format!(
            "no classifier-like output: '{output}' gives {k} value per row (a classifier gives one per class)"
        )));
    }
    if scores.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid_model(format!(
            "output '{output}' is NaN or infinite on a probe batch"
        )));
    }
    if kind == OutputKind::Probabilities {
        // a float16 output's rows add up to 1 within its rounding
        let tol = if half { 1e-2 } else { 1e-3 };
        let probs = scores.iter().all(|&v| (-1e-6..=1.0 + 1e-6).contains(&v))
            && scores
                .rows()
                .into_iter()
                .all(|r| (r.sum() - 1.0).abs() < tol);
        if !probs {
            kind = OutputKind::Logits;
            t.softmax_applied = true;
            t.warnings.push(format!(
                "output '{output}' holds logits (rows do not sum to 1): faculty applies a softmax"
            ));
        }
    }
    match labels {
        Some((source, l)) if l.len() == k => {
            t.labels = l;
            t.label_source = source;
        }
        other => {
            if let Some((source, l)) = other {
                t.warnings.push(format!(
                    "labels from {source} name {} classes but the model outputs {k}: using class indices",
                    l.len()
                ));
            }
            t.labels = (0..k).map(|i| i.to_string()).collect();
            t.label_source = "index".into();
        }
    }
    t.num_classes = Some(k);
    if input_type != InputType::Float32 {
        t.warnings.push(format!(
            "input '{}' is {}: rows are converted from float32{}",
            input.name,
            input_type.as_str(),
            if input_type.is_integer() {
                " and must hold whole numbers"
            } else {
                ""
            }
        ));
    }
    let channel_norm = t
        .declared_standardisation()
        .and_then(|(m, s)| ChannelNorm::declared(m, s, &input.shape));
    t.predictor = Some(Predictor {
        input: input.name.clone(),
        input_type,
        input_shape: input.shape.clone(),
        output,
        kind,
        num_classes: k,
        channel_norm,
        freed_batch,
    });
    Ok((session, session_bytes, probe_row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_conventions() {
        assert_eq!(parse_labels("[\"a\", \"b\"]").unwrap(), vec!["a", "b"]);
        assert_eq!(parse_labels("[0, 1, 2]").unwrap(), vec!["0", "1", "2"]);
        assert_eq!(
            parse_labels("{\"1\": \"dog\", \"0\": \"cat\"}").unwrap(),
            vec!["cat", "dog"]
        );
        assert_eq!(
            parse_labels("cat, dog ,eel").unwrap(),
            vec!["cat", "dog", "eel"]
        );
        assert_eq!(parse_labels("cat\ndog").unwrap(), vec!["cat", "dog"]);
        assert!(parse_labels("just one").is_none());
        assert!(parse_labels("a,,b").is_none());
        let meta: BTreeMap<String, String> =
            [("com.acme:Class_Names".to_string(), "x,y".to_string())].into();
        assert_eq!(metadata_labels(&meta).unwrap().1, vec!["x", "y"]);
    }

    #[test]
    fn output_choice_prefers_named_probabilities() {
        let s = |n: &str, t: &str, shape: Vec<i64>| TensorSig {
            name: n.into(),
            elem_type: t.into(),
            shape,
        };
        let outs = vec![
            s("label", "int64", vec![-1]),
            s("emb", "float32", vec![-1, 8]),
            s("probs", "float32", vec![-1, 3]),
        ];
        assert_eq!(choose_output(&outs).unwrap().0, "probs");
        let outs = vec![
            s("output_label", "int64", vec![-1]),
            s("output_probability", "sequence<map<int64,float32>>", vec![]),
        ];
        assert_eq!(choose_output(&outs).unwrap().1, OutputKind::Zipmap);
        assert!(choose_output(&[s("y", "float32", vec![-1, 1])]).is_none());
    }
}
