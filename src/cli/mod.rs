//! Parts of the `faculty` command (binary only): `remote`, the commands that talk to a server.
pub mod remote;
