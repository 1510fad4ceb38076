//! The process-wide ONNX Runtime environment. With `load-dynamic` the library is loaded on the first ort
//! call of any kind, so every ort use goes through [`environment`] first.
//!
//! The library is looked up in this order: `ORT_DYLIB_PATH`; the project's `.ort/` (next to the current
//! directory, the executable, or the source tree it was built from); the `onnxruntime` Python package.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Error, ErrorKind, Result};

/// The ONNX Runtime version faculty is built against (ort rc.15, API 31).
pub const ORT_VERSION: &str = "1.31.1";
const LIB_NAME: &str = "libonnxruntime.so";

fn how_to_install() -> String {
    format!(
        "ONNX Runtime {ORT_VERSION} was not found. Install it with `make setup` (or \
         `python3 -m pip install --no-deps --target .ort onnxruntime=={ORT_VERSION}` in the project \
         directory), or point ORT_DYLIB_PATH at libonnxruntime.so.{ORT_VERSION}"
    )
}

/// Where the ONNX Runtime shared library is, following the documented search order.
pub fn find_dylib() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::new(
                ErrorKind::RuntimeUnavailable,
                format!(
                    "ORT_DYLIB_PATH={} does not exist. {}",
                    p.display(),
                    how_to_install()
                ),
            ))
        };
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).take(4).map(Path::to_path_buf));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    for root in roots {
        if let Some(p) = lib_in(&root.join(".ort/onnxruntime/capi")) {
            return Ok(p);
        }
    }
    if let Some(p) = python_package_lib() {
        return Ok(p);
    }
    Err(Error::new(ErrorKind::RuntimeUnavailable, how_to_install()))
}

fn lib_in(dir: &Path) -> Option<PathBuf> {
    let exact = dir.join(format!("{LIB_NAME}.{ORT_VERSION}"));
    if exact.is_file() {
        return Some(exact);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(LIB_NAME))
        })
        .collect();
    found.sort();
    found.pop()
}

fn python_package_lib() -> Option<PathBuf> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("capi");
    lib_in(&dir)
}

/// The shared ONNX Runtime environment, loading the library on first use. The error (kind
/// `runtime_unavailable`) says how to install the runtime.
pub fn environment() -> Result<&'static ort::environment::Environment> {
    static ENV: OnceLock<Result<ort::environment::Environment>> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = find_dylib()?;
        let builder = ort::init_from(&path).map_err(|e| {
            Error::new(
                ErrorKind::RuntimeUnavailable,
                format!(
                    "could not load ONNX Runtime from {}: {e}. {}",
                    path.display(),
                    how_to_install()
                ),
            )
        })?;
        builder.with_name("faculty").build().map_err(|e| {
            Error::new(
                ErrorKind::RuntimeUnavailable,
                format!("could not start ONNX Runtime: {e}"),
            )
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}
