//! The teacher zoo: discovery on disk (`scan`), what one teacher is (`teacher`), and the sled-backed
//! catalog with rescans, uploads and deletes (`catalog`), and the check an uploaded model passes in a
//! child process before the server loads it (`check`).
pub mod catalog;
pub mod check;
pub mod scan;
pub mod teacher;

pub use catalog::{
    ORIGIN_FILE, RescanReport, TRASH_GRACE_S, TeacherPage, TeacherQuery, Upload, Zoo,
};
pub use teacher::{Teacher, TensorSig, inspect};
