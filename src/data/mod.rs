//! Task datasets: the upload formats (`.npz`, `.csv`, `.zip` of image folders) parsed into one in-memory
//! [`Dataset`], the strict NumPy reader behind `.npz`, content-addressed storage on disk, and sample
//! images for people to look at.
pub mod dataset;
pub mod npz;
pub mod preview;
pub mod store;

pub use dataset::{
    Dataset, Format, ParseOptions, Parsed, RowStore, Rows, RowsView, UNLABELED, parse,
    parse_upload, parse_with_test,
};
pub use store::{ClassCount, DatasetInfo, DatasetStore, Held, dataset_id};
