//! API tokens: who may do what. Tokens come from `--api-tokens` (one token with role admin, or a file of
//! `ROLE TOKEN` lines); they are kept only as SHA-256 digests and compared in constant time, and never
//! logged. With tokens configured, every write needs `Authorization: Bearer TOKEN` of a role high enough:
//! changes to the zoo (teacher uploads and deletes, rescans) need `admin`; datasets, rankings, jobs,
//! cancels and student deletes need `write`; reads (and predictions) are open unless
//! `--require-token-for-reads`, then any role. A missing or unknown token is 401 with
//! `WWW-Authenticate`, a known token of too low a role 403.
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};
use crate::error::{Error, ErrorKind, Result};

/// What a token may do; each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read,
    Write,
    Admin,
}

impl Role {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }
}

/// The configured tokens (digests) and whether reads need one.
#[derive(Debug, Clone)]
pub struct Tokens {
    entries: Vec<([u8; 32], Role)>,
    pub require_for_reads: bool,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equal in time independent of where the digests differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Tokens {
    /// Reads `--api-tokens`: a file path (lines `ROLE TOKEN`) when such a file exists, else one admin
    /// token. `None` when not configured.
    pub fn load(spec: Option<&str>, require_for_reads: bool) -> Result<Option<Self>> {
        let Some(spec) = spec.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let path = std::path::Path::new(spec);
        let entries = if path.is_file() {
            let text = std::fs::read_to_string(path)?;
            let mut v = Vec::new();
            for (n, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or("").trim();
                if line.is_empty() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let (Some(role), Some(token), None) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(Error::invalid_input(format!(
                        "api tokens file {}, line {}: expected `ROLE TOKEN`",
                        path.display(),
                        n + 1
                    )));
                };
                let role = Role::parse(role).ok_or_else(|| {
                    Error::invalid_input(format!(
                        "api tokens file {}, line {}: role must be read, write or admin",
                        path.display(),
                        n + 1
                    ))
                })?;
                if token.len() < 16 {
                    return Err(Error::invalid_input(format!(
                        "api tokens file {}, line {}: a token needs at least 16 characters",
                        path.display(),
                        n + 1
                    )));
                }
                v.push((digest(token), role));
            }
            if v.is_empty() {
                return Err(Error::invalid_input(format!(
                    "api tokens file {} has no tokens",
                    path.display()
                )));
            }
            v
        } else {
            if spec.len() < 16 || spec.contains(char::is_whitespace) {
                return Err(Error::invalid_input(
                    "--api-tokens: a token needs at least 16 characters and no spaces (or give the \
                     path of a tokens file)",
                ));
            }
            vec![(digest(spec), Role::Admin)]
        };
        Ok(Some(Self {
            entries,
            require_for_reads,
        }))
    }

    /// The role of a presented token (every entry is compared).
    fn role_of(&self, token: &str) -> Option<Role> {
        let d = digest(token);
        let mut found = None;
        for (e, role) in &self.entries {
            if same(e, &d) {
                found = found.max(Some(*role));
            }
        }
        found
    }
}

/// The role a request needs (`None`: open).
fn needed(method: &Method, path: &str, tokens: &Tokens) -> Option<Role> {
    // the dashboard's page and assets hold no data; the page asks for a token itself
    if method == Method::GET && super::dashboard::is_asset(path) {
        return None;
    }
    let read = tokens.require_for_reads.then_some(Role::Read);
    if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
        return read;
    }
    if method == Method::POST && path.ends_with("/predict") {
        return read;
    }
    let zoo = path == "/v1/zoo/rescan" || path.starts_with("/v1/teachers");
    Some(if zoo { Role::Admin } else { Role::Write })
}

/// The middleware: checks the bearer token against the role the request needs.
pub async fn require(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(tokens) = st.tokens.as_deref() else {
        return next.run(req).await;
    };
    let Some(need) = needed(req.method(), req.uri().path(), tokens) else {
        return next.run(req).await;
    };
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let refuse = |kind, m: String| ApiError(Error::new(kind, m)).into_response();
    match presented.map(|t| tokens.role_of(t)) {
        None => refuse(
            ErrorKind::Unauthorized,
            format!(
                "this request needs a token of role {} or higher: send Authorization: Bearer TOKEN",
                need.as_str()
            ),
        ),
        Some(None) => refuse(
            ErrorKind::Unauthorized,
            "the token is not one this server knows".into(),
        ),
        Some(Some(role)) if role < need => refuse(
            ErrorKind::Forbidden,
            format!(
                "this request needs role {}; the token has role {}",
                need.as_str(),
                role.as_str()
            ),
        ),
        Some(Some(_)) => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_by_route() {
        let t = Tokens {
            entries: vec![],
            require_for_reads: false,
        };
        assert_eq!(needed(&Method::GET, "/v1/teachers", &t), None);
        assert_eq!(needed(&Method::POST, "/v1/teachers/x/predict", &t), None);
        assert_eq!(needed(&Method::POST, "/v1/teachers", &t), Some(Role::Admin));
        assert_eq!(
            needed(&Method::DELETE, "/v1/teachers/x", &t),
            Some(Role::Admin)
        );
        assert_eq!(
            needed(&Method::POST, "/v1/zoo/rescan", &t),
            Some(Role::Admin)
        );
        assert_eq!(needed(&Method::POST, "/v1/jobs", &t), Some(Role::Write));
        assert_eq!(
            needed(&Method::DELETE, "/v1/students/s", &t),
            Some(Role::Write)
        );
        let r = Tokens {
            require_for_reads: true,
            ..t
        };
        assert_eq!(needed(&Method::GET, "/v1/jobs", &r), Some(Role::Read));
    }

    #[test]
    fn tokens_load_from_a_value_or_a_file() {
        let one = Tokens::load(Some("0123456789abcdef0123"), false)
            .unwrap()
            .unwrap();
        assert_eq!(one.role_of("0123456789abcdef0123"), Some(Role::Admin));
        assert_eq!(one.role_of("0123456789abcdef0124"), None);
        assert!(Tokens::load(Some("short"), false).is_err());
        assert!(Tokens::load(None, false).unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tokens");
        std::fs::write(
            &f,
            "# team tokens\nread  rrrrrrrrrrrrrrrrrrrr\nwrite wwwwwwwwwwwwwwwwwwww # ci\n",
        )
        .unwrap();
        let t = Tokens::load(f.to_str(), false).unwrap().unwrap();
        assert_eq!(t.role_of("rrrrrrrrrrrrrrrrrrrr"), Some(Role::Read));
        assert_eq!(t.role_of("wwwwwwwwwwwwwwwwwwww"), Some(Role::Write));
        std::fs::write(&f, "owner xxxxxxxxxxxxxxxxxxxx\n").unwrap();
        assert!(Tokens::load(f.to_str(), false).is_err());
    }
}
