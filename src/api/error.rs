//! The one place errors become HTTP: status codes per [`ErrorKind`] and the JSON body
//! `{"error": "...", "kind": "..."}`. Request-parsing rejections go through the same format.
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind};

/// The JSON body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
    /// What went wrong, for a program: not_found, invalid_input, invalid_model, conflict,
    /// payload_too_large, unauthorized, forbidden, insufficient_storage, overloaded, runtime_unavailable, internal.
    pub kind: String,
}

/// Seconds a client told 429 should wait before retrying.
pub const RETRY_AFTER_S: &str = "1";

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        Self(e.into())
    }
}

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::InvalidModel => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
        ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::RuntimeUnavailable | ErrorKind::StoreUnavailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    /// The JSON body a client sees (a server error's details go to the log, not to the client, except
    /// where they tell the client what to do: a missing runtime, a full disk).
    pub fn body(self) -> ErrorBody {
        let message = if status_of(self.0.kind).is_server_error() {
            tracing::error!(kind = self.0.kind.as_str(), "{}", self.0.message);
            match self.0.kind {
                ErrorKind::RuntimeUnavailable
                | ErrorKind::StoreUnavailable
                | ErrorKind::InsufficientStorage => self.0.message,
                _ => "internal error; see the server log".to_string(),
            }
        } else {
            self.0.message
        };
        ErrorBody {
            error: message,
            kind: self.0.kind.as_str().into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.kind);
        let kind = self.0.kind;
        let mut res = (status, Json(self.body())).into_response();
        let h = res.headers_mut();
        match kind {
            ErrorKind::Unauthorized => {
                h.insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer realm=\"faculty\""),
                );
            }
            ErrorKind::Overloaded | ErrorKind::StoreUnavailable => {
                h.insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static(RETRY_AFTER_S),
                );
            }
            _ => {}
        }
        res
    }
}

/// `Query` whose rejection speaks our error format.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e: QueryRejection| {
                ApiError(Error::invalid_input(format!(
                    "bad query string: {}",
                    e.body_text()
                )))
            })
    }
}

/// `Path` whose rejection speaks our error format.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|e: PathRejection| {
                ApiError(Error::invalid_input(format!("bad path: {}", e.body_text())))
            })
    }
}

/// The most bytes a JSON request body may have (every route but the uploads, which have their own limit).
pub const JSON_BODY_LIMIT: usize = 2 << 20;

/// `Json` whose rejection speaks our error format.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(e @ JsonRejection::BytesRejection(_))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError(Error::new(
                    ErrorKind::PayloadTooLarge,
                    format!(
                        "request body too large: a JSON body may be at most {} MiB (for predict, send \
                         the rows in several requests; datasets and models are uploaded as files)",
                        JSON_BODY_LIMIT >> 20
                    ),
                )))
            }
            Err(e) => Err(ApiError(Error::invalid_input(format!(
                "bad JSON body: {}",
                e.body_text()
            )))),
        }
    }
}

/// `Multipart` whose rejection speaks our error format.
pub struct ApiMultipart(pub axum::extract::Multipart);

impl<S: Send + Sync> FromRequest<S> for ApiMultipart {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Multipart::from_request(req, state)
            .await
            .map(Self)
            .map_err(|e| {
                ApiError(Error::invalid_input(format!(
                    "expected a multipart/form-data upload: {}",
                    e.body_text()
                )))
            })
    }
}
