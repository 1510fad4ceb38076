//! Exact (unregularised) optimal transport for small problems, as min-cost flow on the bipartite graph
//! solved by successive shortest paths with Dijkstra on reduced costs. It reaches the same optimum as
//! POT's network simplex (`ot.emd`, checked on fixtures) and is the oracle the entropic solvers are
//! tested against. O((n+m)^3)-ish: meant for label spaces (tens to a few hundred classes), not samples.
use ndarray::{Array2, ArrayView1, ArrayView2};

use crate::error::{Error, Result};

/// An exact plan and its cost <P, M>.
#[derive(Debug, Clone)]
pub struct ExactSolution {
    pub plan: Array2<f64>,
    pub cost: f64,
}

/// Masses below this are treated as zero (the marginals are rescaled to the same total first).
const MASS_EPS: f64 = 1e-13;

/// Solves min <P, M> s.t. P 1 = a, P^T 1 = b, P >= 0. `b` is rescaled to `a`'s total mass.
pub fn emd(a: ArrayView1<f64>, b: ArrayView1<f64>, m: ArrayView2<f64>) -> Result<ExactSolution> {
    let (n, k) = m.dim();
    if a.len() != n || b.len() != k {
        return Err(Error::invalid_input(format!(
            "cost matrix is {n}x{k} but the marginals have {} and {} entries",
            a.len(),
            b.len()
        )));
    }
    if a.iter().chain(b.iter()).any(|v| *v < 0.0 || !v.is_finite())
        || m.iter().any(|v| !v.is_finite())
    {
        return Err(Error::invalid_input(
            "marginals must be non-negative and every value finite",
        ));
    }
    let (sa, sb) = (a.sum(), b.sum());
    if sa <= 0.0 || sb <= 0.0 {
        return Err(Error::invalid_input("marginals must have positive mass"));
    }
    // costs shifted to be non-negative: the optimal plan is unchanged (every plan moves the same mass)
    let lo = m.iter().copied().fold(f64::INFINITY, f64::min);
    let c = m.mapv(|x| x - lo);
    let mut supply: Vec<f64> = a.to_vec();
    let mut demand: Vec<f64> = b.iter().map(|v| v * sa / sb).collect();
    let mut flow = Array2::<f64>::zeros((n, k));
    // node potentials for reduced costs: sources 0..n, sinks n..n+k
    let mut pot = vec![0.0f64; n + k];
    let total = sa;
    let mut moved = 0.0;
    while moved < total * (1.0 - 1e-12) {
        // Dijkstra from every source with remaining supply (a virtual super-source)
        let mut dist = vec![f64::INFINITY; n + k];
        let mut prev = vec![usize::MAX; n + k];
        let mut done = vec![false; n + k];
        for i in 0..n {
            if supply[i] > MASS_EPS * total {
                dist[i] = 0.0;
            }
        }
        loop {
            let mut u = usize::MAX;
            let mut best = f64::INFINITY;
            for (x, &d) in dist.iter().enumerate() {
                if !done[x] && d < best {
                    best = d;
                    u = x;
                }
            }
            if u == usize::MAX {
                break;
            }
            done[u] = true;
            if u < n {
                // forward arcs source u -> sink j (infinite capacity)
                for j in 0..k {
                    let rc = c[[u, j]] + pot[u] - pot[n + j];
                    let nd = dist[u] + rc.max(0.0);
                    if nd < dist[n + j] {
                        dist[n + j] = nd;
                        prev[n + j] = u;
                    }
                }
            } else {
                // backward arcs sink j -> source i where flow > 0
                let j = u - n;
                for i in 0..n {
                    if flow[[i, j]] > MASS_EPS * total {
                        let rc = -c[[i, j]] + pot[u] - pot[i];
                        let nd = dist[u] + rc.max(0.0);
                        if nd < dist[i] {
                            dist[i] = nd;
                            prev[i] = u;
                        }
                    }
                }
            }
        }
        // the nearest sink with remaining demand
        let target = (0..k)
            .filter(|&j| demand[j] > MASS_EPS * total && dist[n + j].is_finite())
            .min_by(|&x, &y| dist[n + x].total_cmp(&dist[n + y]));
        let Some(tj) = target else { break };
        for x in 0..n + k {
            if dist[x].is_finite() {
                pot[x] += dist[x];
            }
        }
        // bottleneck along the path
        let mut path = Vec::new();
        let mut node = n + tj;
        while prev[node] != usize::MAX {
            path.push((prev[node], node));
            node = prev[node];
        }
        let src = node;
        let mut delta = supply[src].min(demand[tj]);
        for &(from, to) in &path {
            if from >= n {
                // backward arc: sink (from) -> source (to) cancels flow[to, from-n]
                delta = delta.min(flow[[to, from - n]]);
            }
        }
        for &(from, to) in &path {
            if from < n {
                flow[[from, to - n]] += delta;
            } else {
                flow[[to, from - n]] -= delta;
            }
        }
        supply[src] -= delta;
        demand[tj] -= delta;
        moved += delta;
        if delta <= 0.0 {
            break;
        }
    }
    flow.mapv_inplace(|x| if x.abs() < MASS_EPS * total { 0.0 } else { x });
    let cost = (&flow * &m).sum();
    Ok(ExactSolution { plan: flow, cost })
}
