//! Weight-space fusion (`weight_fusion`): several teachers that share one MLP architecture become one
//! student of that architecture, at the inference cost of one of them. Their weights are read from the
//! ONNX initializers (`onnx::mlp`); every teacher's hidden neurons are aligned to a reference teacher's,
//! layer by layer, by exact optimal transport (cost: the distance between the neurons' activations on the
//! task's rows, or between their weight rows with the bias; the previous layer's map is applied to the
//! incoming weights first, as in OT fusion); the aligned weights are averaged (one-shot, no training);
//! a small learned combination (one mixing weight per layer and teacher, the WeightFormer idea at our
//! scale) is trained with cross-entropy + KD to the ensemble; then optional fine-tuning epochs. Plain
//! (unaligned) averaging is measured beside them. The best on validation is kept (and delivered unless the scratch baseline beat it).
use burn::tensor::activation::{log_softmax, relu, sigmoid, tanh};
use burn::tensor::{Device, Tensor, TensorData};
use ndarray::{Array1, Array2, Axis};
use serde::{Deserialize, Serialize};

use super::fusion::Ensemble;
use super::student::{Activation, Arch, ParamTensor, Params, SplitMix, StudentSpec};
use super::train::{Lesson, Split, Start, Term, TrainConfig};
use super::{Fitted, Model, Progress, Trainer, accuracy_of, methods};
use crate::data::{Parsed, RowsView};
use crate::error::{Error, Result};
use crate::onnx::mlp::{self, Mlp};
use crate::zoo::{Teacher, Zoo};

/// How hidden neurons are matched across teachers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Align {
    /// By their activations on the task's rows.
    #[default]
    Activations,
    /// By their incoming weights and bias.
    Weights,
}

/// Settings of weight fusion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WeightFusionOptions {
    pub align: Align,
    /// Train the per-layer, per-teacher mixing weights (else the aligned average is the fused model).
    pub combine: bool,
    /// Epochs of fine-tuning the fused student (CE + KD to the ensemble) after fusion; 0 = none.
    pub fine_tune_epochs: usize,
    /// Rows whose activations align the neurons (at most; evenly spaced over the training rows and pool).
    pub alignment_rows: usize,
}

impl Default for WeightFusionOptions {
    fn default() -> Self {
        Self {
            align: Align::Activations,
            combine: true,
            fine_tune_epochs: 1,
            alignment_rows: 500,
        }
    }
}

impl WeightFusionOptions {
    pub fn check(&self) -> Result<()> {
        if self.fine_tune_epochs > 1000 {
            return Err(Error::invalid_input(
                "weight_fusion: fine_tune_epochs must be at most 1000",
            ));
        }
        if !(2..=100_000).contains(&self.alignment_rows) {
            return Err(Error::invalid_input(
                "weight_fusion: alignment_rows must be in 2..=100000",
            ));
        }
        Ok(())
    }
}

/// One fused model measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FusedCandidate {
    /// `plain average`, `aligned average`, `learned combination` or `fine-tuned`.
    pub name: String,
    pub val_accuracy: Option<f64>,
    /// On the test rows, when the job has them.
    pub test_accuracy: Option<f64>,
    /// The fused model kept (the best on validation); the card's `delivered` says whether the scratch
    /// student beat it.
    pub chosen: bool,
}

/// What weight fusion did, for the card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WeightFusionReport {
    /// The teachers fused, with their own validation accuracy.
    pub teachers: Vec<super::fusion::FusedTeacher>,
    /// The teacher the others were aligned to (the best on validation).
    pub reference: String,
    /// The shared architecture, as a student spec.
    pub architecture: String,
    pub options: WeightFusionOptions,
    pub candidates: Vec<FusedCandidate>,
    /// The learned mixing weights, per layer, per teacher (teachers in the card's order).
    pub mixing: Vec<Vec<f64>>,
    /// The ensemble (mean of the teachers' probabilities) on the validation and the test rows.
    pub ensemble_accuracy: Option<f64>,
    pub ensemble_test_accuracy: Option<f64>,
}

/// The shared MLP of a set of teachers, with their weights in the task's label order.
#[derive(Debug, Clone)]
pub struct Family {
    pub spec: StudentSpec,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub nets: Vec<Mlp>,
}

fn activation_of(op: &str) -> Activation {
    match op {
        "Tanh" => Activation::Tanh,
        "Sigmoid" => Activation::Sigmoid,
        _ => Activation::Relu,
    }
}

/// A zoo teacher read as a plain MLP faculty can train further: its weights with the last layer's
/// columns in the dataset's label order when it names the dataset's labels (`in_task_labels`), as
/// stored otherwise; the student spec that holds it, and its input standardisation.
#[derive(Debug, Clone)]
pub struct ZooNet {
    pub net: Mlp,
    pub spec: StudentSpec,
    pub in_task_labels: bool,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl ZooNet {
    /// The student architecture that holds it, in the dataset's labels (a new head when it names others).
    pub fn arch(&self, ds: &Parsed) -> Arch {
        holding(&self.spec, (&self.mean, &self.std), ds)
    }

    /// Its weights as a student's parameters: its own head when it names the dataset's labels,
    /// otherwise its trunk with a new seeded head for the dataset's classes.
    pub fn start(&self, ds: &Parsed, seed: u64) -> Params {
        let own = to_params(&self.net);
        if self.in_task_labels {
            own
        } else {
            methods::with_new_head(&own, &self.arch(ds), seed)
        }
    }
}

/// Reads teacher `t` as a plain MLP over the dataset's rows; the reason when it is not one.
pub fn read_net(zoo: &Zoo, t: &Teacher, ds: &Parsed) -> std::result::Result<ZooNet, String> {
    let Some(pred) = t.predictor.as_ref() else {
        return Err("it is not usable".into());
    };
    let graph = zoo.graph(&t.id).map_err(|e| e.message)?;
    let mut net = mlp::read(&graph, &pred.output)?;
    let d = ds.view().ncols();
    if net.layers[0].inputs != d {
        return Err(format!(
            "it takes {} features, the dataset's rows have {d}",
            net.layers[0].inputs
        ));
    }
    let perm = methods::kd_permutation(t, ds);
    if let Some(perm) = &perm {
        let last = net.layers.last_mut().expect("at least one layer");
        let (i, o) = (last.inputs, last.outputs);
        if o != perm.len() {
            return Err(format!(
                "its last layer has {o} outputs for {} labels",
                perm.len()
            ));
        }
        let mut w = vec![0f32; i * o];
        for r in 0..i {
            for (c, &p) in perm.iter().enumerate() {
                w[r * o + c] = last.weight[r * o + p];
            }
        }
        last.weight = w;
        last.bias = perm.iter().map(|&p| last.bias[p]).collect();
    }
    let (mean, std) =
        crate::rank::outputs::standardisation(t, d).unwrap_or_else(|| (vec![0.0], vec![1.0]));
    let widths = net.widths();
    let hidden = widths[1..widths.len() - 1].to_vec();
    let spec = if hidden.is_empty() {
        StudentSpec::Linear
    } else {
        StudentSpec::Mlp {
            hidden,
            activation: activation_of(&net.activation),
        }
    };
    Ok(ZooNet {
        net,
        spec,
        in_task_labels: perm.is_some(),
        mean,
        std,
    })
}

/// Reads every teacher's MLP and checks they share an architecture, an input standardisation and the
/// dataset's label names; the last layer's columns are put in the dataset's label order.
pub fn family(zoo: &Zoo, teachers: &[Teacher], ds: &Parsed) -> Result<Family> {
    let mut nets: Vec<ZooNet> = Vec::new();
    for t in teachers {
        let refuse = |why: String| {
            Err(Error::invalid_input(format!(
                "weight_fusion cannot use teacher '{}': {why}",
                t.id
            )))
        };
        let z = match read_net(zoo, t, ds) {
            Ok(z) => z,
            Err(why) => return refuse(why),
        };
        if !z.in_task_labels {
            return refuse(format!(
                "its labels {:?} are not the dataset's {:?} (weight fusion keeps the teachers' output \
                 layer; method multi_teacher fuses across label spaces)",
                t.labels, ds.labels
            ));
        }
        if let Some(f) = nets.first() {
            if f.net.widths() != z.net.widths() || f.net.activation != z.net.activation {
                return refuse(format!(
                    "its architecture (widths {:?}, {}) differs from the first teacher's (widths {:?}, \
                     {}); weight fusion needs one shared architecture",
                    z.net.widths(),
                    z.net.activation,
                    f.net.widths(),
                    f.net.activation
                ));
            }
            if f.mean != z.mean || f.std != z.std {
                return refuse(
                    "its input standardisation (input_mean / input_std) differs from the first \
                     teacher's"
                        .into(),
                );
            }
        }
        nets.push(z);
    }
    let first = nets
        .first()
        .ok_or_else(|| Error::invalid_input("no teachers"))?;
    Ok(Family {
        spec: first.spec.clone(),
        mean: first.mean.clone(),
        std: first.std.clone(),
        nets: nets.into_iter().map(|z| z.net).collect(),
    })
}

impl Family {
    /// The student architecture that holds one of the teachers.
    pub fn arch(&self, ds: &Parsed) -> Arch {
        holding(&self.spec, (&self.mean, &self.std), ds)
    }
}

/// The one-head student architecture of `spec` over the dataset's rows and classes, with a zoo model's
/// input standardisation.
fn holding(spec: &StudentSpec, (mean, std): (&[f32], &[f32]), ds: &Parsed) -> Arch {
    Arch {
        spec: spec.clone(),
        row_shape: ds.row_shape(),
        image: None,
        classes: ds.classes(),
        heads: 1,
        mean: mean.to_vec(),
        std: std.to_vec(),
    }
}

fn to_params(net: &Mlp) -> Params {
    net.layers
        .iter()
        .flat_map(|l| {
            [
                ParamTensor {
                    shape: vec![l.inputs, l.outputs],
                    values: l.weight.clone(),
                },
                ParamTensor {
                    shape: vec![l.outputs],
                    values: l.bias.clone(),
                },
            ]
        })
        .collect()
}

fn matrix(l: &mlp::Dense) -> Array2<f64> {
    Array2::from_shape_fn((l.inputs, l.outputs), |(i, o)| {
        f64::from(l.weight[i * l.outputs + o])
    })
}

fn dense(w: &Array2<f64>, b: &Array1<f64>) -> mlp::Dense {
    mlp::Dense {
        inputs: w.nrows(),
        outputs: w.ncols(),
        weight: w.iter().map(|v| *v as f32).collect(),
        bias: b.iter().map(|v| *v as f32).collect(),
    }
}

/// Hidden activations of every layer but the last on standardised rows `x` [N, D].
fn activations(net: &Mlp, x: &Array2<f64>) -> Vec<Array2<f64>> {
    let act = activation_of(&net.activation);
    let mut h = x.clone();
    let mut out = Vec::new();
    for l in &net.layers[..net.layers.len() - 1] {
        let b = Array1::from_iter(l.bias.iter().map(|v| f64::from(*v)));
        h = h.dot(&matrix(l)) + &b;
        h.mapv_inplace(|v| match act {
            Activation::Relu => v.max(0.0),
            Activation::Tanh => v.tanh(),
            Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
        });
        out.push(h.clone());
    }
    out
}

/// Squared distances between the columns of `a` [R, n] and of `b` [R, m]: [n, m].
fn column_distances(a: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
    let na: Vec<f64> = a.columns().into_iter().map(|c| c.dot(&c)).collect();
    let nb: Vec<f64> = b.columns().into_iter().map(|c| c.dot(&c)).collect();
    let dot = a.t().dot(b);
    Array2::from_shape_fn(dot.dim(), |(i, j)| {
        (na[i] + nb[j] - 2.0 * dot[[i, j]]).max(0.0)
    })
}

/// `other` with its hidden neurons aligned to `reference`'s. `acts` are both nets' hidden activations
/// (align by activations) or `None` (align by weights).
#[allow(clippy::type_complexity)]
fn align(
    reference: &Mlp,
    other: &Mlp,
    acts: Option<(&[Array2<f64>], &[Array2<f64>])>,
) -> Result<Mlp> {
    let mut layers = Vec::new();
    let mut prev: Option<Array2<f64>> = None;
    let last = reference.layers.len() - 1;
    for (l, (r, o)) in reference.layers.iter().zip(&other.layers).enumerate() {
        let mut w = matrix(o);
        let b = Array1::from_iter(o.bias.iter().map(|v| f64::from(*v)));
        if let Some(t) = &prev {
            w = t.t().dot(&w);
        }
        if l == last {
            layers.push(dense(&w, &b));
            break;
        }
        // the cost between other's neuron j and the reference's neuron i
        let cost = match acts {
            Some((ra, oa)) => column_distances(&oa[l], &ra[l]),
            None => {
                let wr = matrix(r);
                let br = Array1::from_iter(r.bias.iter().map(|v| f64::from(*v)));
                let mut a = w.clone();
                a.push_row(b.view()).expect("bias row");
                let mut c = wr;
                c.push_row(br.view()).expect("bias row");
                column_distances(&a, &c)
            }
        };
        let n = cost.nrows();
        let m = cost.ncols();
        let scale = cost.iter().copied().fold(0.0f64, f64::max).max(1e-12);
        let plan = crate::ot::exact::emd(
            Array1::from_elem(n, 1.0 / n as f64).view(),
            Array1::from_elem(m, 1.0 / m as f64).view(),
            (cost / scale).view(),
        )?
        .plan;
        // columns normalised: aligned neuron i = sum_j t[j, i] * other's neuron j
        let t = plan * m as f64;
        layers.push(dense(&w.dot(&t), &b.dot(&t)));
        prev = Some(t);
    }
    Ok(Mlp {
        layers,
        activation: other.activation.clone(),
    })
}

/// The element-wise mean of several nets' parameters.
fn average(nets: &[&Mlp]) -> Mlp {
    let k = nets.len() as f32;
    let mut out = nets[0].clone();
    for (l, layer) in out.layers.iter_mut().enumerate() {
        for (j, v) in layer.weight.iter_mut().enumerate() {
            *v = nets.iter().map(|n| n.layers[l].weight[j]).sum::<f32>() / k;
        }
        for (j, v) in layer.bias.iter_mut().enumerate() {
            *v = nets.iter().map(|n| n.layers[l].bias[j]).sum::<f32>() / k;
        }
    }
    out
}

/// Learns one mixing weight per layer and teacher for the aligned nets: the fused layer is
/// sum_k a[l][k] * aligned_k[l], trained with the lesson (CE + KD to the ensemble) by Adam on the
/// training rows, early-stopped on validation accuracy. Returns the mixing weights and the fused net.
fn combine(
    aligned: &[Mlp],
    arch: &Arch,
    x: RowsView<'_>,
    lesson: &Lesson,
    cfg: &TrainConfig,
    keep_going: &dyn Fn() -> bool,
) -> (Vec<Vec<f64>>, Mlp) {
    let dev = Device::flex().autodiff();
    let (k, layers) = (aligned.len(), aligned[0].layers.len());
    let mut alpha: Vec<Vec<f32>> = vec![vec![1.0 / k as f32; k]; layers];
    let stacks: Vec<(Tensor<2>, Tensor<2>)> = (0..layers)
        .map(|l| {
            let w: Vec<f32> = aligned
                .iter()
                .flat_map(|n| n.layers[l].weight.clone())
                .collect();
            let b: Vec<f32> = aligned
                .iter()
                .flat_map(|n| n.layers[l].bias.clone())
                .collect();
            let (wl, bl) = (w.len() / k, b.len() / k);
            (
                Tensor::from_data(TensorData::new(w, [k, wl]), &dev),
                Tensor::from_data(TensorData::new(b, [k, bl]), &dev),
            )
        })
        .collect();
    let fused = |alpha: &[Vec<f32>]| -> Mlp {
        let mut out = aligned[0].clone();
        for (l, layer) in out.layers.iter_mut().enumerate() {
            for (j, v) in layer.weight.iter_mut().enumerate() {
                *v = (0..k)
                    .map(|t| alpha[l][t] * aligned[t].layers[l].weight[j])
                    .sum();
            }
            for (j, v) in layer.bias.iter_mut().enumerate() {
                *v = (0..k)
                    .map(|t| alpha[l][t] * aligned[t].layers[l].bias[j])
                    .sum();
            }
        }
        out
    };
    let Term::Soft { targets } = &lesson.term else {
        return (to_f64(&alpha), fused(&alpha));
    };
    // validation accuracy, then cross-entropy (few validation rows tie often)
    let val_acc = |alpha: &[Vec<f32>]| -> (f64, f64) {
        let net = fused(alpha);
        let val = &lesson.split.val;
        let p = forward_ndarray(&net, arch, x, val);
        let ce = val
            .iter()
            .zip(p.rows())
            .map(|(&r, row)| -f64::from(row[lesson.y[r] as usize].max(1e-12)).ln())
            .sum::<f64>()
            / val.len().max(1) as f64;
        (accuracy_of(&p, &lesson.y, val).unwrap_or(0.0), -ce)
    };
    let act = arch.activation();
    let d = x.ncols();
    let pool = lesson.pool();
    let soft_all = super::train::soften(targets, cfg.temperature);
    let mut labeled = vec![false; lesson.y.len()];
    for &r in &lesson.split.train {
        labeled[r] = true;
    }
    let mut rng = SplitMix(cfg.seed.wrapping_add(97));
    let (mut m, mut v) = (vec![vec![0f32; k]; layers], vec![vec![0f32; k]; layers]);
    let (lr, b1, b2) = (0.01f32, 0.9f32, 0.999f32);
    let mut best = (val_acc(&alpha), alpha.clone());
    let mut step = 0i32;
    let epochs = 30;
    let mut since = 0;
    for _ in 0..epochs {
        let mut order = pool.clone();
        rng.shuffle(&mut order);
        for batch in order.chunks(cfg.batch_size.max(1)) {
            if !keep_going() {
                return (to_f64(&best.1), fused(&best.1));
            }
            let lab: Vec<usize> = batch
                .iter()
                .copied()
                .filter(|r| labeled[*r] && lesson.y[*r] >= 0)
                .collect();
            let mut xb = Vec::new();
            arch.gather_standardised(x, batch, &mut xb);
            let a_t: Vec<Tensor<1>> = alpha
                .iter()
                .map(|a| {
                    Tensor::<1>::from_data(TensorData::new(a.clone(), [k]), &dev).require_grad()
                })
                .collect();
            let mut h: Tensor<2> = Tensor::from_data(TensorData::new(xb, [batch.len(), d]), &dev);
            for l in 0..layers {
                let (ws, bs) = &stacks[l];
                let (i, o) = (aligned[0].layers[l].inputs, aligned[0].layers[l].outputs);
                let a2: Tensor<2> = a_t[l].clone().reshape([k, 1]);
                let w = (ws.clone() * a2.clone()).sum_dim(0).reshape([i, o]);
                let b = (bs.clone() * a2).sum_dim(0).reshape([1, o]);
                h = h.matmul(w) + b;
                if l + 1 < layers {
                    h = match act {
                        Activation::Relu => relu(h),
                        Activation::Tanh => tanh(h),
                        Activation::Sigmoid => sigmoid(h),
                    };
                }
            }
            let c = arch.classes;
            let t = cfg.temperature;
            let soft: Vec<f32> = batch
                .iter()
                .flat_map(|&r| soft_all.row(r).to_vec())
                .collect();
            let pt: Tensor<2> = Tensor::from_data(TensorData::new(soft, [batch.len(), c]), &dev);
            let kl = (pt.clone() * (pt.clamp_min(1e-8).log() - log_softmax(h.clone() / t, 1)))
                .sum_dim(1)
                .mean()
                * ((1.0 - cfg.alpha) * t * t);
            let loss = if lab.is_empty() {
                kl
            } else {
                let pos: Vec<usize> = lab
                    .iter()
                    .map(|r| batch.iter().position(|b| b == r).expect("in batch"))
                    .collect();
                let mut onehot = vec![0f32; pos.len() * c];
                for (q, &r) in lab.iter().enumerate() {
                    onehot[q * c + lesson.y[r] as usize] = 1.0;
                }
                let idx: Tensor<1, burn::tensor::Int> = Tensor::from_data(
                    TensorData::new(
                        pos.iter().map(|p| *p as i64).collect::<Vec<_>>(),
                        [pos.len()],
                    ),
                    &dev,
                );
                let lp = log_softmax(h.select(0, idx), 1);
                let y: Tensor<2> = Tensor::from_data(TensorData::new(onehot, [pos.len(), c]), &dev);
                let ce = -(lp * y).sum_dim(1).mean();
                kl + ce * cfg.alpha
            };
            let grads = loss.backward();
            step += 1;
            for (l, a) in a_t.iter().enumerate() {
                let g: Vec<f32> = a
                    .grad(&grads)
                    .map(|g| g.into_data().try_to_vec::<f32>().expect("floats"))
                    .unwrap_or_else(|| vec![0.0; k]);
                for q in 0..k {
                    m[l][q] = b1 * m[l][q] + (1.0 - b1) * g[q];
                    v[l][q] = b2 * v[l][q] + (1.0 - b2) * g[q] * g[q];
                    let mh = m[l][q] / (1.0 - b1.powi(step));
                    let vh = v[l][q] / (1.0 - b2.powi(step));
                    alpha[l][q] -= lr * mh / (vh.sqrt() + 1e-8);
                }
            }
        }
        let acc = val_acc(&alpha);
        if acc > best.0 {
            best = (acc, alpha.clone());
            since = 0;
        } else {
            since += 1;
            if since >= 5 {
                break;
            }
        }
    }
    (to_f64(&best.1), fused(&best.1))
}

fn to_f64(a: &[Vec<f32>]) -> Vec<Vec<f64>> {
    a.iter()
        .map(|r| r.iter().map(|v| f64::from(*v)).collect())
        .collect()
}

/// Class probabilities of `net` on rows `rows` of raw flat rows `x`.
fn forward_ndarray(net: &Mlp, arch: &Arch, x: RowsView<'_>, rows: &[usize]) -> Array2<f32> {
    let params = to_params(net);
    let n = super::student::Net::from_params(arch, &params, &Device::flex());
    super::train::predict(&n, arch, x, rows)
}

/// Fuses the family: plain average, aligned average, learned combination, fine-tuning; the best on
/// validation is returned (`None` when cancelled).
#[allow(clippy::too_many_arguments)]
pub(super) fn fuse(
    tr: &mut Trainer<'_>,
    fam: &Family,
    ens: &Ensemble,
    ds: &Parsed,
    split: &Split,
    arch: &Arch,
    opts: &WeightFusionOptions,
    test: Option<&Parsed>,
    (from, to): (f64, f64),
) -> Result<Option<(Fitted, WeightFusionReport)>> {
    let x = tr.raw;
    let val = |m: &Model, tr: &Trainer<'_>| tr.accuracy(m, &ds.y, &split.val);
    // the reference: the teacher best on validation
    let reference = (0..fam.nets.len())
        .max_by(|&a, &b| {
            let acc = |k: usize| ens.members[k].info.accuracy.unwrap_or(0.0);
            acc(a).total_cmp(&acc(b)).then(b.cmp(&a))
        })
        .unwrap_or(0);
    tr.progress.phase("aligning neurons", from);
    let fit = split.fit_rows();
    let step = (fit.len() / opts.alignment_rows).max(1);
    let rows: Vec<usize> = fit.iter().step_by(step).copied().collect();
    let mut xa = x.select(&rows);
    arch.standardise(&mut xa);
    let xa = xa.mapv(f64::from);
    let acts: Vec<Vec<Array2<f64>>> = match opts.align {
        Align::Activations => fam.nets.iter().map(|n| activations(n, &xa)).collect(),
        Align::Weights => vec![],
    };
    let r = &fam.nets[reference];
    let mut aligned = Vec::new();
    for (k, n) in fam.nets.iter().enumerate() {
        if k == reference {
            aligned.push(n.clone());
            continue;
        }
        let a = match opts.align {
            Align::Activations => Some((acts[reference].as_slice(), acts[k].as_slice())),
            Align::Weights => None,
        };
        aligned.push(align(r, n, a)?);
    }
    let model = |net: &Mlp| Model::Net {
        arch: arch.clone(),
        params: to_params(net),
    };
    let mut candidates: Vec<(String, Model, Option<f64>)> = Vec::new();
    let plain = model(&average(&fam.nets.iter().collect::<Vec<_>>()));
    let pa = val(&plain, tr);
    candidates.push(("plain average".into(), plain, pa));
    let avg = average(&aligned.iter().collect::<Vec<_>>());
    let am = model(&avg);
    let aa = val(&am, tr);
    candidates.push(("aligned average".into(), am, aa));
    let ensemble = ens.fused(super::Fusion::Mean);
    let lesson = Lesson {
        term: Term::Soft {
            targets: ensemble.clone(),
        },
        ..Lesson::scratch(&ds.y, split)
    };
    let mut mixing = vec![];
    let mut start_net = avg.clone();
    if opts.combine {
        tr.progress
            .phase("training: mixing weights", from + (to - from) * 0.2);
        let p: &dyn Progress = &*tr.progress;
        let keep = || !p.cancelled();
        let (mix, net) = combine(&aligned, arch, x, &lesson, tr.cfg, &keep);
        if tr.progress.cancelled() {
            return Ok(None);
        }
        mixing = mix;
        let cm = model(&net);
        let ca = val(&cm, tr);
        if ca >= aa {
            start_net = net;
        }
        candidates.push(("learned combination".into(), cm, ca));
    }
    let mut training = super::Training::default();
    if opts.fine_tune_epochs > 0 {
        let cfg = TrainConfig {
            max_epochs: opts.fine_tune_epochs,
            patience: opts.fine_tune_epochs,
            lr: tr.cfg.lr * super::FINE_TUNE_LR,
            ..tr.cfg.clone()
        };
        let span = (from + (to - from) * 0.5, to);
        let Some(t) = tr.stage(
            "training: fine-tune",
            arch,
            &lesson,
            Start::From(to_params(&start_net)),
            &cfg,
            span,
        )?
        else {
            return Ok(None);
        };
        let f = Fitted::net(arch, t);
        let fa = val(&f.model, tr);
        training = f.training;
        candidates.push(("fine-tuned".into(), f.model, fa));
    }
    // deliver the best on validation (a later candidate wins ties: it learned more)
    let best = (0..candidates.len())
        .max_by(|&a, &b| {
            candidates[a]
                .2
                .partial_cmp(&candidates[b].2)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.cmp(&b))
        })
        .expect("candidates");
    let report = WeightFusionReport {
        teachers: ens.members.iter().map(|m| m.info.clone()).collect(),
        reference: ens.members[reference].teacher.id.clone(),
        architecture: fam.spec.describe(),
        options: opts.clone(),
        candidates: candidates
            .iter()
            .enumerate()
            .map(|(k, c)| FusedCandidate {
                name: c.0.clone(),
                val_accuracy: c.2,
                test_accuracy: test.map(|t| {
                    let p = super::predict_external(&c.1, t.view());
                    let all: Vec<usize> = (0..t.rows()).collect();
                    accuracy_of(&p, &t.y, &all).unwrap_or(0.0)
                }),
                chosen: k == best,
            })
            .collect(),
        mixing,
        ensemble_accuracy: accuracy_of(&ensemble.select(Axis(0), &split.val), &ds.y, &split.val),
        ensemble_test_accuracy: None,
    };
    let last = candidates.len() - 1;
    let (name, chosen, _) = candidates.swap_remove(best);
    let fitted = Fitted {
        model: chosen,
        training: if best == last && name == "fine-tuned" {
            training
        } else {
            super::Training::default()
        },
    };
    Ok(Some((fitted, report)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_mlp(widths: &[usize], seed: u64) -> Mlp {
        let mut rng = SplitMix(seed);
        let layers = widths
            .windows(2)
            .map(|p| mlp::Dense {
                inputs: p[0],
                outputs: p[1],
                weight: (0..p[0] * p[1])
                    .map(|_| rng.next_f64() as f32 - 0.5)
                    .collect(),
                bias: (0..p[1]).map(|_| rng.next_f64() as f32 - 0.5).collect(),
            })
            .collect();
        Mlp {
            layers,
            activation: "Relu".into(),
        }
    }

    /// The same function with hidden neurons of each layer renumbered by `perms` (neuron j of hidden
    /// layer l becomes neuron perms[l][j]).
    fn permuted(net: &Mlp, perms: &[Vec<usize>]) -> Mlp {
        let mut out = net.clone();
        for (l, p) in perms.iter().enumerate() {
            let (a, b) = (out.layers[l].clone(), out.layers[l + 1].clone());
            let (o, next_o) = (a.outputs, b.outputs);
            for (j, &pj) in p.iter().enumerate().take(o) {
                for i in 0..a.inputs {
                    out.layers[l].weight[i * o + pj] = a.weight[i * o + j];
                }
                out.layers[l].bias[pj] = a.bias[j];
                for k in 0..next_o {
                    out.layers[l + 1].weight[pj * next_o + k] = b.weight[j * next_o + k];
                }
            }
        }
        out
    }

    fn close(a: &Mlp, b: &Mlp) -> f32 {
        a.layers
            .iter()
            .zip(&b.layers)
            .flat_map(|(x, y)| {
                x.weight
                    .iter()
                    .zip(&y.weight)
                    .chain(x.bias.iter().zip(&y.bias))
                    .map(|(u, v)| (u - v).abs())
            })
            .fold(0.0, f32::max)
    }

    #[test]
    fn aligning_a_renumbered_copy_recovers_the_original() {
        let net = random_mlp(&[6, 8, 5, 3], 1);
        let perms = vec![vec![3, 0, 7, 1, 6, 2, 5, 4], vec![4, 2, 0, 1, 3]];
        let copy = permuted(&net, &perms);
        // the renumbered copy computes the same function
        let mut rng = SplitMix(9);
        let x = Array2::from_shape_fn((200, 6), |_| rng.next_f64() - 0.5);
        let last = |n: &Mlp| {
            let h = activations(n, &x).pop().unwrap();
            let l = n.layers.last().unwrap();
            h.dot(&matrix(l)) + &Array1::from_iter(l.bias.iter().map(|v| f64::from(*v)))
        };
        assert!((last(&net) - last(&copy)).iter().all(|v| v.abs() < 1e-5));
        assert!(close(&net, &copy) > 0.1, "the copy is renumbered");
        // by weights
        let back = align(&net, &copy, None).unwrap();
        assert!(close(&net, &back) < 1e-5, "{}", close(&net, &back));
        // by activations on the rows
        let (ra, oa) = (activations(&net, &x), activations(&copy, &x));
        let back = align(&net, &copy, Some((&ra, &oa))).unwrap();
        assert!(close(&net, &back) < 1e-5, "{}", close(&net, &back));
        // averaging the aligned pair gives the original; plain averaging does not
        let avg = average(&[&net, &back]);
        assert!(close(&net, &avg) < 1e-5);
        assert!(close(&net, &average(&[&net, &copy])) > 0.05);
    }
}
