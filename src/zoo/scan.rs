//! Finding teacher files in a zoo directory: flat `<name>.onnx` (card: `<name>.card.json`) and Triton-style
//! `<name>/<version>/model.onnx` (card: `card.json` beside it, or in `<name>/`). Hidden entries are skipped
//! (uploads are staged in `.faculty-staging/`).
use std::path::{Path, PathBuf};

use super::teacher::Ident;
use crate::error::{Error, Result};

/// A model file found on disk.
#[derive(Debug, Clone)]
pub struct Found {
    pub ident: Ident,
    pub model: PathBuf,
    pub card: Option<PathBuf>,
}

/// Whether a name is safe as one path component and as an id: letters, digits, `_`, `-`, `.`, not
/// starting with `.` or `-`, at most 128 characters.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with(['.', '-'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// A name made safe for an id (unsafe characters become `_`).
fn id_part(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(['.', '-']) {
        out.insert(0, '_');
    }
    out
}

/// The id of a teacher: `<name>` (flat) or `<name>@<version>`.
pub fn teacher_id(name: &str, version: Option<&str>) -> String {
    match version {
        None => id_part(name),
        Some(v) => format!("{}@{}", id_part(name), id_part(v)),
    }
}

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            Error::invalid_input(format!("cannot read zoo directory {}: {e}", dir.display()))
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !is_hidden(p))
        .collect();
    v.sort();
    Ok(v)
}

/// Every teacher file under `root`, in a stable order.
pub fn discover(root: &Path) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    for entry in sorted_entries(root)? {
        let file_name = entry
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if entry.is_file() {
            if let Some(stem) = file_name.strip_suffix(".onnx") {
                let card = root.join(format!("{stem}.card.json"));
                found.push(Found {
                    ident: Ident {
                        id: teacher_id(stem, None),
                        name: stem.to_string(),
                        version: "1".into(),
                        path: file_name.clone(),
                    },
                    model: entry.clone(),
                    card: card.is_file().then_some(card),
                });
            }
        } else if entry.is_dir() {
            let name = file_name;
            for vdir in sorted_entries(&entry)? {
                let model = vdir.join("model.onnx");
                if !vdir.is_dir() || !model.is_file() {
                    continue;
                }
                let version = vdir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                let card = [vdir.join("card.json"), entry.join("card.json")]
                    .into_iter()
                    .find(|p| p.is_file());
                found.push(Found {
                    ident: Ident {
                        id: teacher_id(&name, Some(&version)),
                        name: name.clone(),
                        version: version.clone(),
                        path: format!("{name}/{version}/model.onnx"),
                    },
                    model,
                    card,
                });
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_safe_components() {
        for ok in ["mnist_cnn", "a.b-c", "V2"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "", "..", "../x", "a/b", "a\\b", ".hidden", "-flag", "sp ace", "é",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(teacher_id("my model", Some("2")), "my_model@2");
    }
}
