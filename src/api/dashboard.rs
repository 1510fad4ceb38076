//! The web dashboard: the files of `static/` compiled into the binary and served at `/` and `/static/...`
//! (plain HTML, CSS and JS, no build step; uPlot vendored from npm with its licence). Every response
//! carries a Content-Security-Policy that lets the page reach only this server.
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiError;
use super::error::ApiPath;
use crate::error::Error;

/// (path under `static/`, content type, bytes)
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../static/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../static/style.css"),
    ),
    (
        "vendor/uplot/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "vendor/uplot/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../static/vendor/uplot/uPlot.min.css"),
    ),
    (
        "vendor/uplot/LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../../static/vendor/uplot/LICENSE"),
    ),
];

/// Only this server: scripts, styles, data, images (sample grids are drawn into canvases, downloads are
/// blob URLs).
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Whether `path` is one of the dashboard's files (open without a token: they hold no data).
pub fn is_asset(path: &str) -> bool {
    path == "/" || path == "/favicon.ico" || path.starts_with("/static/")
}

fn file(name: &str) -> Result<Response, ApiError> {
    let Some((_, ctype, bytes)) = FILES.iter().find(|f| f.0 == name) else {
        return Err(ApiError(Error::not_found(format!(
            "no dashboard file '{name}'"
        ))));
    };
    let mut res = (StatusCode::OK, *bytes).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    // the files change with the binary: revalidate, never serve a stale page after an upgrade
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(res)
}

/// The dashboard page.
pub async fn index() -> Result<Response, ApiError> {
    file("index.html")
}

/// One of its files.
pub async fn asset(ApiPath(path): ApiPath<String>) -> Result<Response, ApiError> {
    file(&path)
}

/// No icon: an empty answer instead of a 404 in the browser's console.
pub async fn favicon() -> StatusCode {
    StatusCode::NO_CONTENT
}
