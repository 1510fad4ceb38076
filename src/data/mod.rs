//! Task datasets: the upload formats (`.npz`, `.csv`, `.zip` of image folders) parsed into one in-memory
//! [`Dataset`], the strict NumPy reader behind `.npz`, and content-addressed storage on disk.
pub mod dataset;
pub mod npz;
pub mod store;

pub use dataset::{Dataset, Format, ParseOptions, UNLABELED, parse, parse_with_test};
pub use store::{ClassCount, DatasetInfo, DatasetStore, dataset_id};
