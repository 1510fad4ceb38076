//! Tree students (`tree:DEPTH`): a CART classification tree grown on a lesson and exported as an ONNX
//! `TreeEnsembleClassifier` (domain `ai.onnx.ml`). Rows take part with a class distribution and a weight:
//! labeled rows with their one-hot label, pool rows with the teacher's prediction carried into the
//! student's labels (soft targets), every row scaled by the lesson's sample weight. Splits minimise the
//! weighted Gini impurity of those distributions (for one-hot rows this is ordinary CART); a leaf predicts
//! the weighted class distribution of the rows that reach it. The tree reads the dataset's raw flat rows
//! (no standardisation: a tree does not need it), so the ONNX file takes the rows as they are.
//!
//! Why not `linfa-trees`: its leaves hold a hard class (no probabilities), it takes no soft targets, and it
//! would bring a second ndarray into the build; this CART is ~150 lines and exactly what the export needs.
use ndarray::{Array2, ArrayView2};
use prost::Message;

use crate::data::RowsView;
use serde::{Deserialize, Serialize};

use super::train::{Lesson, Term};
use crate::onnx::build::{
    attr_floats, attr_int, attr_ints, attr_string, attr_strings, model, node, typed_value_info,
};
use crate::onnx::proto::{OperatorSetIdProto, tensor_proto::DataType};

/// Deepest tree a spec may ask for.
pub const MAX_DEPTH: usize = 16;

/// A node of a fitted tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Node {
    /// Rows with `x[feature] <= threshold` go to `left`, the rest to `right`.
    Split {
        feature: usize,
        threshold: f32,
        left: usize,
        right: usize,
    },
    /// Class probabilities, and the weight of the training rows that reached the leaf.
    Leaf { probs: Vec<f32>, weight: f64 },
}

/// A fitted classification tree over flat rows of `d_in` features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
    pub classes: usize,
    pub d_in: usize,
}

/// What a tree learns: rows (dataset indices), each with a target distribution times its weight
/// (row k of `targets` belongs to `rows[k]`).
pub struct TreeLesson {
    pub rows: Vec<usize>,
    pub targets: Array2<f64>,
}

impl TreeLesson {
    /// The tree's view of a lesson: the labeled training rows with their one-hot labels, and (when the
    /// lesson has a teacher term) the unlabeled rows with the teacher's prediction in the student's labels
    /// (soft targets as they are; probabilities carried through 1 - cost for the OT term); every row scaled
    /// by its sample weight.
    pub fn from_lesson(lesson: &Lesson, classes: usize) -> Self {
        let pool: &[usize] = match lesson.term {
            Term::None => &[],
            _ => &lesson.split.unlabeled,
        };
        let rows: Vec<usize> = lesson.split.train.iter().chain(pool).copied().collect();
        let mut targets = Array2::zeros((rows.len(), classes));
        for (k, &r) in rows.iter().enumerate() {
            let mut t = targets.row_mut(k);
            match lesson.y[r] {
                y if y >= 0 && k < lesson.split.train.len() => t[y as usize] = 1.0,
                _ => t.assign(&row_target(&lesson.term, r, classes)),
            }
            let s = t.sum();
            let w = lesson.weights.as_ref().map_or(1.0, |w| f64::from(w[r]));
            if s > 0.0 {
                t.mapv_inplace(|v| v * w / s);
            }
        }
        Self { rows, targets }
    }
}

/// What a teacher term says of row `r` in the student's labels, as a distribution (zeros without one):
/// soft targets as they are, OT probabilities through 1 - cost, several terms or heads averaged.
fn row_target(term: &Term, r: usize, classes: usize) -> ndarray::Array1<f64> {
    let norm = |v: ndarray::Array1<f64>| {
        let s = v.sum();
        if s > 0.0 { v / s } else { v }
    };
    let mean = |v: Vec<ndarray::Array1<f64>>| {
        let k = v.len().max(1) as f64;
        v.into_iter()
            .fold(ndarray::Array1::zeros(classes), |a, b| a + b)
            / k
    };
    match term {
        Term::None => ndarray::Array1::zeros(classes),
        Term::Soft { targets } => norm(targets.row(r).mapv(f64::from)),
        Term::Transport { probs, cost } => {
            norm(probs.row(r).mapv(f64::from).dot(&cost.mapv(|c| 1.0 - c)))
        }
        Term::Many(terms) => mean(terms.iter().map(|t| row_target(t, r, classes)).collect()),
        Term::Heads(targets) => mean(
            targets
                .iter()
                .map(|t| norm(t.row(r).mapv(f64::from)))
                .collect(),
        ),
    }
}

impl Tree {
    /// Grows a tree of at most `depth` levels of splits on the raw flat rows `x`.
    pub fn fit(x: RowsView<'_>, lesson: &TreeLesson, classes: usize, depth: usize) -> Self {
        // splits compare values many times over: floats (a copy when the rows are bytes)
        let x = x.to_f32();
        let x = x.view();
        let mut t = Tree {
            nodes: Vec::new(),
            classes,
            d_in: x.ncols(),
        };
        let idx: Vec<usize> = (0..lesson.rows.len()).collect();
        t.grow(x, lesson, idx, depth);
        t
    }

    /// Adds the subtree over lesson entries `idx` and returns its node index.
    fn grow(
        &mut self,
        x: ArrayView2<'_, f32>,
        l: &TreeLesson,
        idx: Vec<usize>,
        depth: usize,
    ) -> usize {
        let totals = class_totals(l, &idx, self.classes);
        let at = self.nodes.len();
        let weight: f64 = totals.iter().sum();
        let pure = totals.iter().filter(|v| **v > 1e-12).count() <= 1;
        let split = if depth == 0 || pure || idx.len() < 2 {
            None
        } else {
            best_split(x, l, &idx, &totals)
        };
        let Some((feature, threshold)) = split else {
            let probs = if weight > 0.0 {
                totals.iter().map(|v| (v / weight) as f32).collect()
            } else {
                vec![1.0 / self.classes as f32; self.classes]
            };
            self.nodes.push(Node::Leaf { probs, weight });
            return at;
        };
        self.nodes.push(Node::Leaf {
            probs: vec![],
            weight,
        }); // placeholder, replaced below
        let (li, ri): (Vec<usize>, Vec<usize>) = idx
            .into_iter()
            .partition(|&k| x[[l.rows[k], feature]] <= threshold);
        let left = self.grow(x, l, li, depth - 1);
        let right = self.grow(x, l, ri, depth - 1);
        self.nodes[at] = Node::Split {
            feature,
            threshold,
            left,
            right,
        };
        at
    }

    /// Class probabilities for raw flat rows `rows` of `x`.
    pub fn predict(&self, x: RowsView<'_>, rows: &[usize]) -> Array2<f32> {
        let mut out = Array2::zeros((rows.len(), self.classes));
        for (k, &r) in rows.iter().enumerate() {
            let mut n = 0;
            loop {
                match &self.nodes[n] {
                    Node::Split {
                        feature,
                        threshold,
                        left,
                        right,
                    } => {
                        n = if x.get(r, *feature) <= *threshold {
                            *left
                        } else {
                            *right
                        }
                    }
                    Node::Leaf { probs, .. } => {
                        for (c, p) in probs.iter().enumerate() {
                            out[[k, c]] = *p;
                        }
                        break;
                    }
                }
            }
        }
        out
    }

    /// The tree's parameters as the card counts them: a feature and a threshold per split, a class
    /// distribution per leaf.
    pub fn parameters(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| match n {
                Node::Split { .. } => 2,
                Node::Leaf { .. } => self.classes,
            })
            .sum()
    }

    /// The tree as readable rules, one per leaf: the path's conditions, the predicted class with its
    /// probability, and the weight of training rows behind it. Features are named by their position in the
    /// row (`x[0,12,14]` for image rows).
    pub fn rules(&self, row_shape: &[usize], labels: &[String]) -> Vec<String> {
        let name = |f: usize| {
            let mut idx = Vec::with_capacity(row_shape.len());
            let mut rest = f;
            for d in row_shape.iter().rev() {
                idx.push(rest % d.max(&1));
                rest /= d.max(&1);
            }
            idx.reverse();
            let parts: Vec<String> = idx.iter().map(|i| i.to_string()).collect();
            format!("x[{}]", parts.join(","))
        };
        let mut out = Vec::new();
        let mut stack = vec![(0usize, Vec::<String>::new())];
        while let Some((n, path)) = stack.pop() {
            match &self.nodes[n] {
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    let f = name(*feature);
                    let mut r = path.clone();
                    r.push(format!("{f} > {threshold:.4}"));
                    stack.push((*right, r));
                    let mut l = path;
                    l.push(format!("{f} <= {threshold:.4}"));
                    stack.push((*left, l));
                }
                Node::Leaf { probs, weight } => {
                    let c = super::argmax(probs.iter().copied());
                    let cond = if path.is_empty() {
                        "always".to_string()
                    } else {
                        format!("if {}", path.join(" and "))
                    };
                    out.push(format!(
                        "{cond} then {} ({:.0}%, weight {weight:.1})",
                        labels.get(c).map_or("?", |s| s.as_str()),
                        100.0 * probs[c]
                    ));
                }
            }
        }
        out
    }

    /// The tree as an ONNX model: input `input` [N, ..row_shape] (flattened), outputs `label` [N] (int64)
    /// and `probabilities` [N, C].
    pub fn to_onnx(&self, row_shape: &[usize], metadata: &[(&str, &str)]) -> Vec<u8> {
        let (mut ids, mut feats, mut vals, mut modes, mut trues, mut falses) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let (mut c_nodes, mut c_ids, mut c_weights) = (vec![], vec![], vec![]);
        for (i, n) in self.nodes.iter().enumerate() {
            ids.push(i as i64);
            match n {
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    feats.push(*feature as i64);
                    vals.push(*threshold);
                    modes.push("BRANCH_LEQ");
                    trues.push(*left as i64);
                    falses.push(*right as i64);
                }
                Node::Leaf { probs, .. } => {
                    feats.push(0);
                    vals.push(0.0);
                    modes.push("LEAF");
                    trues.push(0);
                    falses.push(0);
                    for (c, p) in probs.iter().enumerate() {
                        c_nodes.push(i as i64);
                        c_ids.push(c as i64);
                        c_weights.push(*p);
                    }
                }
            }
        }
        let n = self.nodes.len();
        let classes: Vec<i64> = (0..self.classes as i64).collect();
        let mut tree = node(
            "TreeEnsembleClassifier",
            &["flat"],
            "label",
            vec![
                attr_ints("nodes_treeids", &vec![0; n]),
                attr_ints("nodes_nodeids", &ids),
                attr_ints("nodes_featureids", &feats),
                attr_floats("nodes_values", &vals),
                attr_strings("nodes_modes", &modes),
                attr_ints("nodes_truenodeids", &trues),
                attr_ints("nodes_falsenodeids", &falses),
                attr_ints("class_treeids", &vec![0; c_nodes.len()]),
                attr_ints("class_nodeids", &c_nodes),
                attr_ints("class_ids", &c_ids),
                attr_floats("class_weights", &c_weights),
                attr_ints("classlabels_int64s", &classes),
                attr_string("post_transform", "NONE"),
            ],
        );
        tree.output.push("probabilities".into());
        tree.domain = Some("ai.onnx.ml".into());
        let flatten = node("Flatten", &["input"], "flat", vec![attr_int("axis", 1)]);
        let mut input_dims = vec![-1i64];
        input_dims.extend(row_shape.iter().map(|&d| d as i64));
        let c = self.classes as i64;
        let mut m = model(
            vec![flatten, tree],
            vec![],
            vec![typed_value_info("input", &input_dims, DataType::Float)],
            vec![
                typed_value_info("label", &[-1], DataType::Int64),
                typed_value_info("probabilities", &[-1, c], DataType::Float),
            ],
            metadata,
        );
        m.opset_import.push(OperatorSetIdProto {
            domain: Some("ai.onnx.ml".into()),
            version: Some(3),
        });
        m.encode_to_vec()
    }
}

/// Sum over lesson entries `idx` of their weighted target distributions.
fn class_totals(l: &TreeLesson, idx: &[usize], classes: usize) -> Vec<f64> {
    let mut t = vec![0.0; classes];
    for &k in idx {
        for (c, v) in l.targets.row(k).iter().enumerate() {
            t[c] += v;
        }
    }
    t
}

/// The split (feature, threshold) with the lowest weighted Gini impurity of the two sides, if any split
/// separates the rows. Gini of a side with class totals n_c and weight W is W - sum(n_c^2) / W, so the best
/// split maximises sum(L_c^2)/W_L + sum(R_c^2)/W_R.
fn best_split(
    x: ArrayView2<'_, f32>,
    l: &TreeLesson,
    idx: &[usize],
    totals: &[f64],
) -> Option<(usize, f32)> {
    let c = totals.len();
    let w: f64 = totals.iter().sum();
    let parent = totals.iter().map(|v| v * v).sum::<f64>() / w.max(1e-300);
    let mut best: Option<(f64, usize, f32)> = None;
    let mut order = idx.to_vec();
    let mut left = vec![0.0; c];
    for f in 0..x.ncols() {
        order.sort_unstable_by(|a, b| x[[l.rows[*a], f]].total_cmp(&x[[l.rows[*b], f]]));
        let first = x[[l.rows[order[0]], f]];
        if first == x[[l.rows[order[order.len() - 1]], f]] {
            continue; // constant here
        }
        left.iter_mut().for_each(|v| *v = 0.0);
        let (mut wl, mut sl) = (0.0f64, 0.0f64); // weight and sum of squares of the left side
        let mut sr: f64 = totals.iter().map(|v| v * v).sum();
        for k in 0..order.len() - 1 {
            let row = l.targets.row(order[k]);
            for (j, v) in row.iter().enumerate() {
                if *v != 0.0 {
                    let (a, r) = (left[j], totals[j] - left[j]);
                    sl += 2.0 * a * v + v * v;
                    sr += -2.0 * r * v + v * v;
                    left[j] += v;
                }
                wl += v;
            }
            let (xa, xb) = (x[[l.rows[order[k]], f]], x[[l.rows[order[k + 1]], f]]);
            if xa == xb {
                continue;
            }
            let wr = w - wl;
            if wl <= 1e-12 || wr <= 1e-12 {
                continue;
            }
            let score = sl / wl + sr / wr;
            if score > parent + 1e-12 && best.is_none_or(|b| score > b.0) {
                best = Some((score, f, xa + (xb - xa) / 2.0));
            }
        }
    }
    best.map(|(_, f, t)| (f, t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn one_hot(y: &[usize], c: usize) -> Array2<f64> {
        Array2::from_shape_fn((y.len(), c), |(i, j)| f64::from(u8::from(y[i] == j)))
    }

    #[test]
    fn a_stump_finds_the_separating_threshold() {
        let x = array![[0.0f32, 5.0], [1.0, 5.0], [2.0, 5.0], [3.0, 5.0]];
        let y = [0, 0, 1, 1];
        let l = TreeLesson {
            rows: vec![0, 1, 2, 3],
            targets: one_hot(&y, 2),
        };
        let t = Tree::fit(x.view().into(), &l, 2, 1);
        assert_eq!(t.nodes.len(), 3);
        let Node::Split {
            feature, threshold, ..
        } = t.nodes[0]
        else {
            panic!("root must split")
        };
        assert_eq!((feature, threshold), (0, 1.5));
        let p = t.predict(x.view().into(), &[0, 3]);
        assert_eq!(p, array![[1.0, 0.0], [0.0, 1.0]]);
    }

    #[test]
    fn weights_and_soft_targets_move_the_split() {
        // three rows on a line; the middle one's label decides where the split goes
        let x = array![[0.0f32], [1.0], [2.0]];
        let heavy_left = TreeLesson {
            rows: vec![0, 1, 2],
            targets: array![[1.0, 0.0], [5.0, 0.0], [0.0, 1.0]],
        };
        let t = Tree::fit(x.view().into(), &heavy_left, 2, 1);
        assert!(matches!(t.nodes[0], Node::Split { threshold, .. } if threshold == 1.5));
        let soft_right = TreeLesson {
            rows: vec![0, 1, 2],
            targets: array![[1.0, 0.0], [0.1, 0.9], [0.0, 1.0]],
        };
        let t = Tree::fit(x.view().into(), &soft_right, 2, 1);
        assert!(matches!(t.nodes[0], Node::Split { threshold, .. } if threshold == 0.5));
    }

    #[test]
    fn depth_zero_is_the_class_prior_and_rules_read_well() {
        let x = array![[0.0f32], [1.0], [2.0], [3.0]];
        let l = TreeLesson {
            rows: vec![0, 1, 2, 3],
            targets: one_hot(&[0, 1, 1, 1], 2),
        };
        let t = Tree::fit(x.view().into(), &l, 2, 0);
        assert_eq!(
            t.nodes,
            vec![Node::Leaf {
                probs: vec![0.25, 0.75],
                weight: 4.0
            }]
        );
        let labels = vec!["no".to_string(), "yes".to_string()];
        assert_eq!(
            t.rules(&[1], &labels),
            vec!["always then yes (75%, weight 4.0)"]
        );
        let t = Tree::fit(x.view().into(), &l, 2, 3);
        let r = t.rules(&[1], &labels);
        assert_eq!(r[0], "if x[0] <= 0.5000 then no (100%, weight 1.0)");
    }
}
