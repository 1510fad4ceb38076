//! Student architectures: the user's spec (`"mlp:256"`, `"cnn:16,32"`, `{"kind": "mlp", ...}`), the concrete
//! architecture for a dataset (input shape, classes, input standardisation), its parameters as plain
//! vectors (seeded init, checkpoints, ONNX export all use them), and the burn module built from them.
use burn::module::{Module, Param};
use burn::tensor::activation;
use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::data::RowsView;
use crate::error::{Error, Result};

/// Hidden-layer activation of MLP and CNN students.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    Relu,
    Tanh,
    Sigmoid,
}

impl Activation {
    fn parse(s: &str) -> Result<Self> {
        match s {
            "relu" => Ok(Self::Relu),
            "tanh" => Ok(Self::Tanh),
            "sigmoid" => Ok(Self::Sigmoid),
            _ => Err(Error::invalid_input(format!(
                "unknown activation '{s}'; known: relu, tanh, sigmoid"
            ))),
        }
    }
    /// The ONNX operator computing it.
    pub fn onnx_op(self) -> &'static str {
        match self {
            Self::Relu => "Relu",
            Self::Tanh => "Tanh",
            Self::Sigmoid => "Sigmoid",
        }
    }
    fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Self::Relu => activation::relu(x),
            Self::Tanh => activation::tanh(x),
            Self::Sigmoid => activation::sigmoid(x),
        }
    }
}

/// Which student to train, as the user says it. The string forms are `linear`, `mlp[:W1,W2,..][:act]`
/// (default `mlp:256`) and `cnn[:C1,C2,..][:HIDDEN]` (default `cnn:16,32:64`, conv 3x3 + ReLU + 2x2 max
/// pool per block, then a hidden dense layer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StudentSpec {
    Linear,
    Mlp {
        #[serde(default = "default_hidden")]
        hidden: Vec<usize>,
        #[serde(default)]
        activation: Activation,
    },
    Cnn {
        #[serde(default = "default_channels")]
        channels: Vec<usize>,
        #[serde(default = "default_cnn_hidden")]
        hidden: usize,
    },
    /// A CART classification tree of at most `depth` levels (see `distill::tree`).
    Tree {
        #[serde(default = "default_tree_depth")]
        depth: usize,
    },
}

fn default_tree_depth() -> usize {
    4
}

fn default_hidden() -> Vec<usize> {
    vec![256]
}
fn default_channels() -> Vec<usize> {
    vec![16, 32]
}
fn default_cnn_hidden() -> usize {
    64
}

/// Largest width or channel count a spec may ask for, and the most layers.
const MAX_WIDTH: usize = 8192;
const MAX_LAYERS: usize = 8;

impl Default for StudentSpec {
    fn default() -> Self {
        Self::Mlp {
            hidden: default_hidden(),
            activation: Activation::Relu,
        }
    }
}

impl StudentSpec {
    /// Parses the compact string form.
    pub fn parse(s: &str) -> Result<Self> {
        let mut parts = s.trim().split(':');
        let kind = parts.next().unwrap_or_default();
        let list = |p: &str| -> Result<Vec<usize>> {
            p.split(',')
                .map(|w| {
                    w.trim().parse::<usize>().map_err(|_| {
                        Error::invalid_input(format!(
                            "student '{s}': '{w}' is not a positive integer width"
                        ))
                    })
                })
                .collect()
        };
        let spec = match kind {
            "linear" => Self::Linear,
            "mlp" => {
                let hidden = match parts.next() {
                    None | Some("") => default_hidden(),
                    Some(p) => list(p)?,
                };
                let activation = parts
                    .next()
                    .map(Activation::parse)
                    .transpose()?
                    .unwrap_or_default();
                Self::Mlp { hidden, activation }
            }
            "cnn" => {
                let channels = match parts.next() {
                    None | Some("") => default_channels(),
                    Some(p) => list(p)?,
                };
                let hidden = match parts.next() {
                    None => default_cnn_hidden(),
                    Some(p) => *list(p)?.first().unwrap_or(&0),
                };
                Self::Cnn { channels, hidden }
            }
            "tree" => Self::Tree {
                depth: match parts.next() {
                    None | Some("") => default_tree_depth(),
                    Some(p) => *list(p)?.first().unwrap_or(&0),
                },
            },
            _ => {
                return Err(Error::invalid_input(format!(
                    "unknown student '{s}'; use linear, mlp[:W1,W2][:relu|tanh|sigmoid], \
                     cnn[:C1,C2][:HIDDEN] or tree[:DEPTH]"
                )));
            }
        };
        if parts.next().is_some() {
            return Err(Error::invalid_input(format!(
                "student '{s}' has too many ':' parts"
            )));
        }
        spec.check()?;
        Ok(spec)
    }

    /// Checks the spec's own ranges (widths, layers, depth); the rows are checked by [`Arch::new`].
    pub fn check(&self) -> Result<()> {
        let widths: Vec<usize> = match self {
            Self::Linear => vec![],
            Self::Tree { depth } => {
                let max = super::tree::MAX_DEPTH;
                if *depth == 0 || *depth > max {
                    return Err(Error::invalid_input(format!(
                        "tree depth {depth} is out of range 1..={max}"
                    )));
                }
                vec![]
            }
            Self::Mlp { hidden, .. } => hidden.clone(),
            Self::Cnn { channels, hidden } => {
                if channels.is_empty() {
                    return Err(Error::invalid_input(
                        "a cnn student needs at least one conv block",
                    ));
                }
                channels.iter().copied().chain([*hidden]).collect()
            }
        };
        if widths.len() > MAX_LAYERS {
            return Err(Error::invalid_input(format!(
                "student has {} layers; at most {MAX_LAYERS}",
                widths.len()
            )));
        }
        if let Some(w) = widths.iter().find(|w| **w == 0 || **w > MAX_WIDTH) {
            return Err(Error::invalid_input(format!(
                "student width {w} is out of range 1..={MAX_WIDTH}"
            )));
        }
        Ok(())
    }

    /// The compact string form (inverse of [`StudentSpec::parse`]).
    pub fn describe(&self) -> String {
        let join = |v: &[usize]| {
            v.iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Self::Linear => "linear".into(),
            Self::Mlp { hidden, activation } => format!(
                "mlp:{}:{}",
                join(hidden),
                serde_json::to_value(activation)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            ),
            Self::Cnn { channels, hidden } => format!("cnn:{}:{hidden}", join(channels)),
            Self::Tree { depth } => format!("tree:{depth}"),
        }
    }
}

/// A student spec bound to a dataset: everything needed to build, train and export it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arch {
    pub spec: StudentSpec,
    /// One row's shape as the dataset stores it (the ONNX input is [N, ..row_shape]).
    pub row_shape: Vec<usize>,
    /// [C, H, W] the conv blocks see (CNN only).
    pub image: Option<[usize; 3]>,
    pub classes: usize,
    /// Output heads (`mimic_all`: one per teacher on a shared trunk; the prediction is the mean of the
    /// heads' probabilities). 1 for every other student.
    #[serde(default = "one_head")]
    pub heads: usize,
    /// Input standardisation `(x - mean) / std`: per feature (length D) or one value for all (length 1).
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

fn one_head() -> usize {
    1
}

impl Arch {
    /// Whether a hidden layer is narrower than the outputs. Such a network's training from one seed
    /// sometimes fails outright (a dead unit of two costs half the capacity), so its trainings are
    /// restarted (`TrainConfig::restarts`); a linear student's training is convex and a wide network's
    /// rarely fails, so theirs are not.
    pub fn is_bottleneck(&self) -> bool {
        let narrowest = match &self.spec {
            StudentSpec::Mlp { hidden, .. } => hidden.iter().copied().min(),
            StudentSpec::Cnn { channels, hidden } => {
                channels.iter().copied().chain([*hidden]).min()
            }
            StudentSpec::Linear | StudentSpec::Tree { .. } => None,
        };
        narrowest.is_some_and(|w| w < self.classes)
    }
}

/// One parameter tensor: shape and row-major values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamTensor {
    pub shape: Vec<usize>,
    /// In JSON (checkpoints): base64 of the little-endian f32 bytes, 5.3 bytes a value; a list of numbers
    /// (what checkpoints held before) reads too.
    #[serde(with = "f32_base64")]
    pub values: Vec<f32>,
}

/// Every parameter of a student in a fixed order: per conv block weight [O, I, 3, 3] and bias [O], then per
/// dense layer weight [I, O] and bias [O].
pub type Params = Vec<ParamTensor>;

impl Arch {
    /// Binds a spec to a dataset's row shape and class count; standardisation comes from `x` (flat rows).
    pub fn new(
        spec: &StudentSpec,
        row_shape: &[usize],
        classes: usize,
        x: RowsView<'_>,
    ) -> Result<Self> {
        spec.check()?;
        if let StudentSpec::Tree { .. } = spec {
            return Err(Error::internal(
                "a tree student has no network architecture",
            ));
        }
        let d: usize = row_shape.iter().product();
        let image = match spec {
            StudentSpec::Cnn { channels, .. } => {
                let img = image_shape(row_shape).ok_or_else(|| {
                    Error::invalid_input(format!(
                        "a cnn student needs image-shaped rows ([C,H,W], [H,W] or a square number >= 64 of \
                         features); these rows are {row_shape:?}; use an mlp or linear student"
                    ))
                })?;
                if img[1] >> channels.len() == 0 || img[2] >> channels.len() == 0 {
                    return Err(Error::invalid_input(format!(
                        "{} conv blocks halve {}x{} images to nothing; use fewer blocks",
                        channels.len(),
                        img[1],
                        img[2]
                    )));
                }
                Some(img)
            }
            _ => None,
        };
        // read twice in the same order, not copied (a copy of 200,000 images as f64 is 1.25 GB)
        let (mean, std) = if image.is_some() {
            let (m, s) = mean_std(x.nrows() * x.ncols(), || x.values());
            (vec![m], vec![s])
        } else {
            let mut m = Vec::with_capacity(d);
            let mut s = Vec::with_capacity(d);
            for j in 0..x.ncols() {
                let (a, b) = mean_std(x.nrows(), || x.column(j));
                m.push(a);
                s.push(b);
            }
            (m, s)
        };
        Ok(Self {
            spec: spec.clone(),
            row_shape: row_shape.to_vec(),
            image,
            classes,
            heads: 1,
            mean,
            std,
        })
    }

    /// Flat input length D.
    pub fn d_in(&self) -> usize {
        self.row_shape.iter().product()
    }

    pub fn activation(&self) -> Activation {
        match &self.spec {
            StudentSpec::Mlp { activation, .. } => *activation,
            _ => Activation::Relu,
        }
    }

    /// Conv blocks as (in, out) channels.
    pub fn conv_layers(&self) -> Vec<(usize, usize)> {
        match (&self.spec, self.image) {
            (StudentSpec::Cnn { channels, .. }, Some([c, _, _])) => {
                let mut ins = vec![c];
                ins.extend(channels.iter().copied());
                ins.into_iter().zip(channels.iter().copied()).collect()
            }
            _ => vec![],
        }
    }

    /// Dense layers as (in, out).
    pub fn dense_layers(&self) -> Vec<(usize, usize)> {
        let widths: Vec<usize> = match (&self.spec, self.image) {
            (StudentSpec::Linear | StudentSpec::Tree { .. }, _) => vec![self.d_in()],
            (StudentSpec::Mlp { hidden, .. }, _) => std::iter::once(self.d_in())
                .chain(hidden.iter().copied())
                .collect(),
            (StudentSpec::Cnn { channels, hidden }, Some([_, h, w])) => {
                let k = channels.len();
                let last = *channels.last().unwrap_or(&1);
                vec![last * (h >> k) * (w >> k), *hidden]
            }
            (StudentSpec::Cnn { .. }, None) => vec![self.d_in()],
        };
        let mut v: Vec<(usize, usize)> = widths.windows(2).map(|p| (p[0], p[1])).collect();
        v.push((*widths.last().unwrap_or(&1), self.classes * self.heads));
        v
    }

    /// Number of trainable parameters.
    pub fn param_count(&self) -> usize {
        self.conv_layers()
            .iter()
            .map(|(i, o)| i * o * 9 + o)
            .sum::<usize>()
            + self
                .dense_layers()
                .iter()
                .map(|(i, o)| i * o + o)
                .sum::<usize>()
    }

    /// Values one row leaves in memory on its way through the network: the input, each conv block's
    /// unrolled 3x3 patches (the convolution is a matrix product over them), output and pooled output,
    /// each dense layer's output.
    pub fn activations_per_row(&self) -> usize {
        let convs: usize = match self.image {
            Some([_, h, w]) => self
                .conv_layers()
                .iter()
                .enumerate()
                .map(|(l, &(i, o))| {
                    let (full, pooled) = ((h >> l) * (w >> l), (h >> (l + 1)) * (w >> (l + 1)));
                    9 * i * full + o * (full + pooled)
                })
                .sum(),
            None => 0,
        };
        self.d_in() + convs + self.dense_layers().iter().map(|l| l.1).sum::<usize>()
    }

    /// Bytes training this network is expected to hold at its peak, from release-build measurements
    /// (README "Memory"; within 25%): 64 per parameter (weights, gradients, Adam's two moments, the
    /// best epoch's copy, the checkpoint, the export and its ONNX Runtime check) and 4 per activation of
    /// the largest batch it runs: up to 1,024 rows when it predicts, or a batch of labeled rows plus one
    /// of pool rows (each at most `batch_size`) three times over (forward values, their gradients, the
    /// activation masks) when it trains, on a dataset of `labeled` labeled rows of `rows`.
    pub fn training_bytes(&self, batch_size: usize, labeled: usize, rows: usize) -> u64 {
        let train = 3 * (batch_size.min(labeled) + batch_size.min(rows));
        let batch = rows.min(1024).max(train) as u64;
        64 * self.param_count() as u64 + 4 * self.activations_per_row() as u64 * batch
    }

    /// Seeded initialisation, uniform in +-1/sqrt(fan_in) (PyTorch's default for Linear and Conv2d).
    pub fn init(&self, seed: u64) -> Params {
        let mut rng = SplitMix(seed ^ 0x9e37_79b9_7f4a_7c15);
        let mut out = Vec::new();
        let mut uniform = |shape: Vec<usize>, fan_in: usize| {
            let k = 1.0 / (fan_in as f64).sqrt();
            let n: usize = shape.iter().product();
            let values = (0..n)
                .map(|_| ((rng.next_f64() * 2.0 - 1.0) * k) as f32)
                .collect();
            ParamTensor { shape, values }
        };
        for (i, o) in self.conv_layers() {
            out.push(uniform(vec![o, i, 3, 3], i * 9));
            out.push(uniform(vec![o], i * 9));
        }
        for (i, o) in self.dense_layers() {
            out.push(uniform(vec![i, o], i));
            out.push(uniform(vec![o], i));
        }
        out
    }

    /// Standardises flat rows in place the way the exported model will.
    pub fn standardise(&self, x: &mut ndarray::Array2<f32>) {
        let d = x.ncols();
        for mut row in x.rows_mut() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = self.standardised(*v, j, d);
            }
        }
    }

    /// Appends rows `rows` of raw flat rows `x`, standardised, to `out`: a batch is standardised as it is
    /// gathered, so no standardised copy of a whole dataset is kept (a 200,000-image dataset's copy is
    /// 627 MB).
    pub fn gather_standardised(&self, x: RowsView<'_>, rows: &[usize], out: &mut Vec<f32>) {
        let d = x.ncols();
        out.reserve(rows.len() * d);
        for &r in rows {
            x.extend_row(r, out, |j, v| self.standardised(v, j, d));
        }
    }

    /// Value `v` of column `j` (of `d`) standardised: per column, or by one mean and deviation.
    fn standardised(&self, v: f32, j: usize, d: usize) -> f32 {
        let k = if self.mean.len() == d { j } else { 0 };
        (v - self.mean[k]) / self.std[k]
    }
}

/// The mean and standard deviation of values, with a standard deviation of 1 for constant columns.
/// Mean and deviation of the `n` values `v()` yields (read twice).
fn mean_std<I: Iterator<Item = f32>>(n: usize, v: impl Fn() -> I) -> (f32, f32) {
    let n = n.max(1) as f64;
    let m = v().map(f64::from).sum::<f64>() / n;
    let var = v()
        .map(|a| (f64::from(a) - m) * (f64::from(a) - m))
        .sum::<f64>()
        / n;
    let s = var.sqrt();
    (m as f32, if s < 1e-6 { 1.0 } else { s as f32 })
}

/// [C, H, W] for image-shaped rows: [C,H,W], [H,W], or a flat row of square length.
fn image_shape(row: &[usize]) -> Option<[usize; 3]> {
    match *row {
        [c, h, w] if c <= 4 && h >= 2 && w >= 2 => Some([c, h, w]),
        [h, w] if h >= 2 && w >= 2 => Some([1, h, w]),
        [d] => {
            let s = (d as f64).sqrt().round() as usize;
            (s >= 8 && s * s == d).then_some([1, s, s])
        }
        _ => None,
    }
}

/// A tiny deterministic generator (SplitMix64) so initialisation and shuffling do not depend on the
/// backend's global random state.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

#[derive(Module, Debug)]
pub struct ConvBlock {
    pub weight: Param<Tensor<4>>,
    pub bias: Param<Tensor<1>>,
}

#[derive(Module, Debug)]
pub struct Dense {
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
}

/// The burn module of a student. Input: standardised flat rows [N, D]; output: logits [N, C].
#[derive(Module, Debug)]
pub struct Net {
    pub convs: Vec<ConvBlock>,
    pub dense: Vec<Dense>,
}

impl ParamTensor {
    /// The values as burn tensor data (a copy).
    pub fn to_data(&self) -> TensorData {
        TensorData::new(self.values.clone(), self.shape.clone())
    }
}

impl Net {
    /// Builds the module from parameters in [`Params`] order.
    pub fn from_params(arch: &Arch, params: &Params, device: &Device) -> Self {
        Self::from_data(
            arch,
            params.iter().map(ParamTensor::to_data).collect(),
            device,
        )
    }

    /// Builds the module from parameter data in [`Params`] order, taking the buffers without a copy.
    pub fn from_data(arch: &Arch, data: Vec<TensorData>, device: &Device) -> Self {
        let n_conv = arch.conv_layers().len();
        let mut data = data.into_iter();
        let mut next = || data.next().expect("one tensor per parameter");
        let convs = (0..n_conv)
            .map(|_| ConvBlock {
                weight: Param::from_tensor(Tensor::from_data(next(), device)),
                bias: Param::from_tensor(Tensor::from_data(next(), device)),
            })
            .collect();
        let dense = (0..arch.dense_layers().len())
            .map(|_| Dense {
                weight: Param::from_tensor(Tensor::from_data(next(), device)),
                bias: Param::from_tensor(Tensor::from_data(next(), device)),
            })
            .collect();
        Self { convs, dense }
    }

    /// The parameter data in [`Params`] order; a buffer nothing else holds moves out without a copy.
    pub fn into_data(self) -> Vec<TensorData> {
        let mut out = Vec::new();
        for c in self.convs {
            out.push(c.weight.into_value().into_data());
            out.push(c.bias.into_value().into_data());
        }
        for d in self.dense {
            out.push(d.weight.into_value().into_data());
            out.push(d.bias.into_value().into_data());
        }
        out
    }

    /// The gradient of every parameter after `loss.backward()`, in [`Params`] order (zeros for a
    /// parameter the loss does not reach). Each gradient is taken out of `grads`, so its buffer moves
    /// into the `TensorData` without a copy; read it with `TensorData::as_slice::<f32>()`.
    pub fn grads(&self, mut grads: burn::tensor::Gradients) -> Vec<TensorData> {
        fn g<const D: usize>(
            p: &Param<Tensor<D>>,
            grads: &mut burn::tensor::Gradients,
        ) -> TensorData {
            let v = p.val();
            match v.grad_remove(grads) {
                Some(t) => t.into_data(),
                None => TensorData::new(vec![0f32; v.dims().iter().product()], v.dims().to_vec()),
            }
        }
        let mut out = Vec::new();
        for c in &self.convs {
            out.push(g(&c.weight, &mut grads));
            out.push(g(&c.bias, &mut grads));
        }
        for d in &self.dense {
            out.push(g(&d.weight, &mut grads));
            out.push(g(&d.bias, &mut grads));
        }
        out
    }

    /// Logits for standardised flat rows; with several heads, the log of the mean of the heads'
    /// probabilities (so a softmax of it is the prediction, and cross-entropy on it trains the mixture).
    pub fn forward(&self, arch: &Arch, x: Tensor<2>) -> Tensor<2> {
        let raw = self.forward_heads(arch, x);
        mix_heads(raw, arch)
    }

    /// The last layer's output [N, heads * C]: head k's logits are columns k*C..(k+1)*C.
    pub fn forward_heads(&self, arch: &Arch, x: Tensor<2>) -> Tensor<2> {
        let n = x.dims()[0];
        let mut h = x;
        if let Some([c, hh, ww]) = arch.image {
            let mut t: Tensor<4> = h.reshape([n, c, hh, ww]);
            for b in &self.convs {
                t = conv2d(
                    t,
                    b.weight.val(),
                    Some(b.bias.val()),
                    ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
                );
                t = max_pool2d(activation::relu(t), MaxPoolOptions::new([2, 2]));
            }
            let [_, a, b, cc] = t.dims();
            h = t.reshape([n, a * b * cc]);
        }
        let act = arch.activation();
        let last = self.dense.len().saturating_sub(1);
        for (k, d) in self.dense.iter().enumerate() {
            h = h.matmul(d.weight.val()) + d.bias.val().unsqueeze::<2>();
            if k < last {
                h = act.apply(h);
            }
        }
        h
    }
}

/// Several heads' logits [N, K * C] to the log of the mean of their probabilities [N, C]; one head's
/// logits pass through.
pub fn mix_heads(raw: Tensor<2>, arch: &Arch) -> Tensor<2> {
    if arch.heads <= 1 {
        return raw;
    }
    let (n, k, c) = (raw.dims()[0], arch.heads, arch.classes);
    let per_head: Tensor<3> = raw.reshape([n, k, c]);
    let p = activation::softmax(per_head, 2).mean_dim(1).reshape([n, c]);
    p.clamp_min(1e-12).log()
}

/// Serde for `Vec<f32>` as base64 of its little-endian bytes. As a JSON list of numbers, a checkpoint of
/// a 17M-parameter student was 2 x 190 MB of text that took longer to format than the epochs it saved
/// (README "Memory").
mod f32_base64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Base64(String),
            Numbers(Vec<f32>),
        }
        match Stored::deserialize(d)? {
            Stored::Numbers(v) => Ok(v),
            Stored::Base64(text) => {
                let bytes = STANDARD.decode(text).map_err(serde::de::Error::custom)?;
                if bytes.len() % 4 != 0 {
                    return Err(serde::de::Error::custom(
                        "parameter bytes are not a whole number of f32",
                    ));
                }
                Ok(bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_params_are_base64_and_old_number_lists_still_read() {
        let p = ParamTensor {
            shape: vec![2, 2],
            values: vec![1.5, -0.0, f32::MIN_POSITIVE, 3.0e38],
        };
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains("\"values\":\""), "{text}");
        assert_eq!(serde_json::from_str::<ParamTensor>(&text).unwrap(), p);
        let old = r#"{"shape": [2], "values": [0.25, -2.0]}"#;
        let read: ParamTensor = serde_json::from_str(old).unwrap();
        assert_eq!(read.values, vec![0.25, -2.0]);
        assert!(
            serde_json::from_str::<ParamTensor>(r#"{"shape": [1], "values": "AAA="}"#).is_err()
        );
    }

    #[test]
    fn specs_parse_and_describe() {
        assert_eq!(StudentSpec::parse("linear").unwrap(), StudentSpec::Linear);
        let m = StudentSpec::parse("mlp:256,128:tanh").unwrap();
        assert_eq!(m.describe(), "mlp:256,128:tanh");
        assert_eq!(StudentSpec::parse(&m.describe()).unwrap(), m);
        assert_eq!(StudentSpec::parse("mlp").unwrap(), StudentSpec::default());
        let t = StudentSpec::parse("tree:3").unwrap();
        assert_eq!(t, StudentSpec::Tree { depth: 3 });
        assert_eq!(StudentSpec::parse(&t.describe()).unwrap(), t);
        assert_eq!(
            StudentSpec::parse("tree").unwrap(),
            StudentSpec::Tree { depth: 4 }
        );
        let c = StudentSpec::parse("cnn:8,16:32").unwrap();
        assert_eq!(StudentSpec::parse(&c.describe()).unwrap(), c);
        for bad in [
            "mlp:0",
            "mlp:abc",
            "transformer",
            "mlp:64:swish",
            "cnn::",
            "mlp:1:relu:x",
            "mlp:99999",
            "tree:0",
            "tree:17",
            "tree:x",
        ] {
            assert!(StudentSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shapes_and_param_counts() {
        let x = ndarray::Array2::<f32>::zeros((4, 784));
        let a = Arch::new(
            &StudentSpec::parse("mlp:256").unwrap(),
            &[784],
            10,
            x.view().into(),
        )
        .unwrap();
        assert_eq!(a.param_count(), 784 * 256 + 256 + 256 * 10 + 10);
        let c = Arch::new(
            &StudentSpec::parse("cnn:8,16:32").unwrap(),
            &[1, 28, 28],
            5,
            x.view().into(),
        )
        .unwrap();
        assert_eq!(c.dense_layers(), vec![(16 * 7 * 7, 32), (32, 5)]);
        let p = c.init(7);
        assert_eq!(p, c.init(7), "seeded init is reproducible");
        assert_ne!(p, c.init(8));
        assert_eq!(
            p.iter().map(|t| t.values.len()).sum::<usize>(),
            c.param_count()
        );
        let t = ndarray::Array2::<f32>::zeros((4, 64));
        assert!(
            Arch::new(
                &StudentSpec::parse("cnn").unwrap(),
                &[64],
                2,
                t.view().into()
            )
            .is_ok()
        );
        assert!(
            Arch::new(
                &StudentSpec::parse("cnn").unwrap(),
                &[16],
                2,
                t.view().into()
            )
            .is_err()
        );
    }

    #[test]
    fn gathered_batches_are_the_standardised_rows_bit_for_bit() {
        // training standardises each batch as it gathers it instead of keeping a standardised copy of
        // the dataset: the batches must be exactly the rows of that copy (per-column for an MLP, one
        // mean for a CNN), or students would change
        let mut rng = SplitMix(3);
        let x = ndarray::Array2::from_shape_fn((40, 64), |(i, j)| {
            (rng.next_f64() as f32) * (1 + j % 5) as f32 + i as f32 * 0.1
        });
        let rows = [7usize, 0, 39, 7, 12];
        for spec in ["mlp:8", "cnn:4:8"] {
            let a = Arch::new(
                &StudentSpec::parse(spec).unwrap(),
                &[64],
                3,
                x.view().into(),
            )
            .unwrap();
            let mut copy = x.clone();
            a.standardise(&mut copy);
            let mut got = vec![1.5];
            a.gather_standardised(x.view().into(), &rows, &mut got);
            assert_eq!(got.len(), 1 + rows.len() * 64, "{spec}: appended");
            assert_eq!(got[0], 1.5, "{spec}: what was there is kept");
            let want: Vec<f32> = rows.iter().flat_map(|&r| copy.row(r).to_vec()).collect();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got[1..]), bits(&want), "{spec}");
            assert_ne!(
                bits(&got[1..]),
                bits(
                    &x.select(ndarray::Axis(0), &rows)
                        .into_raw_vec_and_offset()
                        .0
                ),
                "{spec}: standardised"
            );
        }
    }
}
