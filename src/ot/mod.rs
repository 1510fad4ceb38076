//! Optimal transport: entropic solvers in the log domain (balanced with epsilon scaling, unbalanced,
//! batched over a shared cost matrix) and an exact solver for small problems. Pure numerics on ndarray;
//! nothing here knows about teachers or datasets.
pub mod exact;
pub mod sinkhorn;

pub use exact::{ExactSolution, emd};
pub use sinkhorn::{
    SinkhornOptions, Solution, marginals, normalize_cost, sinkhorn_batch, sinkhorn_batch_from,
    sinkhorn_log, sinkhorn_unbalanced,
};
