//! Parts of the `faculty` command (binary only): `remote`, the commands that talk to a server, and
//! `print`, what every command prints.
pub mod print;
pub mod remote;
