//! Task data formats. For now the NumPy `.npy` / `.npz` reader (used by the parity fixtures and, next,
//! by dataset uploads).
pub mod npz;
