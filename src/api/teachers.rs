//! Teacher endpoints: list, show, download, upload, delete, predict, rescan.
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::AppState;
use super::error::{ApiError, ApiJson, ApiMultipart, ApiPath, ApiQuery, ErrorBody};
use crate::error::{Error, ErrorKind};
use crate::rank::outputs;
use crate::zoo::{RescanReport, Teacher, TeacherPage, TeacherQuery, Upload};

/// Lists teachers, filtered and paginated.
#[utoipa::path(get, path = "/v1/teachers", tag = "teachers", params(TeacherQuery),
    responses((status = 200, body = TeacherPage), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<TeacherQuery>,
) -> Result<Json<TeacherPage>, ApiError> {
    Ok(Json(st.zoo.list(&q)?))
}

/// One teacher: signature, labels, parameters, sha256, provenance, and why it is unusable if it is.
#[utoipa::path(get, path = "/v1/teachers/{id}", tag = "teachers", params(("id" = String, Path)),
    responses((status = 200, body = Teacher), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Teacher>, ApiError> {
    Ok(Json(st.zoo.get(&id)?))
}

/// Downloads the teacher's ONNX file. The ETag is the sha256; `If-None-Match` gives 304.
#[utoipa::path(get, path = "/v1/teachers/{id}/model.onnx", tag = "teachers", params(("id" = String, Path)),
    responses((status = 200, description = "The ONNX file", content_type = "application/octet-stream"),
        (status = 304, description = "Not modified"), (status = 404, body = ErrorBody),
        (status = 409, description = "The file changed on disk since indexing", body = ErrorBody)))]
pub async fn download(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (teacher, path) = st.zoo.model_file(&id)?;
    let filename = format!("{}.onnx", teacher.id.replace('@', "-v"));
    file_response(&path, &teacher.sha256, teacher.bytes, &filename, &headers).await
}

/// A model file download with `ETag` = its sha256 (and 304 for a matching `If-None-Match`).
pub(crate) async fn file_response(
    path: &std::path::Path,
    sha256: &str,
    bytes: u64,
    filename: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let etag = format!("\"{sha256}\"");
    let etag_value = HeaderValue::from_str(&etag).map_err(|e| Error::internal(e.to_string()))?;
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    let file = tokio::fs::File::open(path).await?;
    let disposition = format!("attachment; filename=\"{filename}\"");
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(bytes)),
            (header::ETAG, etag_value),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition).map_err(|e| Error::internal(e.to_string()))?,
            ),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response())
}

/// The multipart form of an upload.
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct UploadForm {
    /// The ONNX file.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Teacher name (default: the file name without `.onnx`).
    name: Option<String>,
    /// Store as `<name>/<version>/model.onnx`.
    version: Option<String>,
    /// Class names as a JSON list, saved in a sidecar card.
    labels: Option<String>,
    /// Expected sha256 of the file; refused on mismatch.
    sha256: Option<String>,
}

pub(crate) fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError(Error::new(
            ErrorKind::PayloadTooLarge,
            "upload exceeds the server's size limit",
        ))
    } else {
        ApiError(Error::invalid_input(format!(
            "bad multipart upload: {}",
            e.body_text()
        )))
    }
}

pub(crate) async fn field_text(
    field: axum::extract::multipart::Field<'_>,
) -> Result<String, ApiError> {
    field.text().await.map_err(multipart_error)
}

/// Uploads a teacher (multipart field `file`). It is streamed to a staging file, validated by loading it
/// in ONNX Runtime, and only then moved into the zoo.
#[utoipa::path(post, path = "/v1/teachers", tag = "teachers",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = Teacher), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, description = "Not a usable model", body = ErrorBody)))]
pub async fn upload(
    State(st): State<AppState>,
    ApiMultipart(mut mp): ApiMultipart,
) -> Result<(StatusCode, Json<Teacher>), ApiError> {
    st.check_disk()?;
    let limit = st.config.max_upload_bytes;
    let staging = st.zoo.staging_dir()?;
    let tmp = tempfile::Builder::new()
        .prefix("upload-")
        .suffix(".part")
        .tempfile_in(&staging)?;
    let mut up = Upload::default();
    let mut received: Option<u64> = None;
    while let Some(mut field) = mp.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or("") {
            "file" => {
                up.filename = field.file_name().map(str::to_string);
                let mut out = tokio::fs::File::from_std(tmp.reopen()?);
                let mut n: u64 = 0;
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    n += chunk.len() as u64;
                    if n > limit {
                        return Err(ApiError(Error::new(
                            ErrorKind::PayloadTooLarge,
                            format!("upload exceeds the {limit}-byte limit"),
                        )));
                    }
                    out.write_all(&chunk).await?;
                }
                out.flush().await?;
                received = Some(n);
            }
            "name" => up.name = Some(field_text(field).await?.trim().to_string()),
            "version" => up.version = Some(field_text(field).await?.trim().to_string()),
            "sha256" => up.sha256 = Some(field_text(field).await?.trim().to_string()),
            "labels" => {
                let text = field_text(field).await?;
                let labels = crate::zoo::teacher::parse_labels(&text).ok_or_else(|| {
                    Error::invalid_input("labels must be a JSON list of class names")
                })?;
                up.labels = Some(labels);
            }
            _ => {}
        }
    }
    match received {
        None => {
            return Err(ApiError(Error::invalid_input(
                "multipart field `file` is missing",
            )));
        }
        Some(0) => return Err(ApiError(Error::invalid_input("the uploaded file is empty"))),
        Some(_) => {}
    }
    let staged = tmp.into_temp_path();
    let zoo = st.zoo.clone();
    let teacher = st
        .writing(move || {
            let r = zoo.add_upload(&staged, up);
            drop(staged); // removes the staging file unless it was moved into the zoo
            r
        })
        .await?;
    tracing::info!(teacher = %teacher.id, sha256 = %teacher.sha256, "teacher uploaded");
    Ok((StatusCode::CREATED, Json(teacher)))
}

/// Deletes a teacher's file and catalog entry.
#[utoipa::path(delete, path = "/v1/teachers/{id}", tag = "teachers", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let zoo = st.zoo.clone();
    st.writing(move || zoo.remove(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rows to classify.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PredictRequest {
    /// One flat list of numbers per row, as a dataset holds them; reshaped to the teacher's input (e.g.
    /// 784 -> 1x28x28) and standardised with the teacher's declared `input_mean` / `input_std` (one value
    /// per feature, or per channel of an image input; the same as rankings and distillation read a
    /// dataset's rows).
    pub inputs: Vec<Vec<f32>>,
    /// Feed the numbers to the model as they are, skipping the declared standardisation (for rows already
    /// standardised). Default false.
    #[serde(default)]
    pub raw: bool,
}

/// Class probabilities per row.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PredictResponse {
    pub teacher_id: String,
    pub labels: Vec<String>,
    pub probabilities: Vec<Vec<f32>>,
    /// Index into `labels` of each row's most probable class.
    pub predictions: Vec<usize>,
    /// Whether the rows were standardised with the teacher's declared `input_mean` / `input_std` first.
    pub standardised: bool,
}

const PREDICT_MAX_ROWS: usize = 4096;

/// Runs a teacher on a few rows.
#[utoipa::path(post, path = "/v1/teachers/{id}/predict", tag = "teachers", params(("id" = String, Path)),
    request_body = PredictRequest,
    responses((status = 200, body = PredictResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn predict(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<PredictRequest>,
) -> Result<Json<PredictResponse>, ApiError> {
    let n = req.inputs.len();
    if n == 0 || n > PREDICT_MAX_ROWS {
        return Err(ApiError(Error::invalid_input(format!(
            "send between 1 and {PREDICT_MAX_ROWS} rows in `inputs`"
        ))));
    }
    let d = req.inputs[0].len();
    if d == 0 || req.inputs.iter().any(|r| r.len() != d) {
        return Err(ApiError(Error::invalid_input(
            "every row of `inputs` must have the same, non-zero length",
        )));
    }
    let x = ArrayD::from_shape_vec(IxDyn(&[n, d]), req.inputs.concat())
        .map_err(|e| Error::internal(e.to_string()))?;
    let zoo = st.zoo.clone();
    let id2 = id.clone();
    let (teacher, probs, standardised) = st
        .blocking(move || {
            let teacher = zoo.get(&id2)?;
            // `adapt` copies the rows exactly when it standardises them
            let x = if req.raw {
                x.view().into()
            } else {
                outputs::adapt(&teacher, x.view())
            };
            let probs = zoo.predict_standardised(&id2, x.view(), !req.raw)?;
            let per_channel = teacher
                .predictor
                .as_ref()
                .is_some_and(|p| p.channel_norm.is_some());
            Ok((teacher, probs, x.is_owned() || (per_channel && !req.raw)))
        })
        .await?;
    let predictions = probs
        .rows()
        .into_iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b })
                .0
        })
        .collect();
    Ok(Json(PredictResponse {
        teacher_id: id,
        labels: teacher.labels,
        probabilities: probs.rows().into_iter().map(|r| r.to_vec()).collect(),
        predictions,
        standardised,
    }))
}

/// Re-reads the zoo directory: reports added, removed, changed and failed teachers.
#[utoipa::path(post, path = "/v1/zoo/rescan", tag = "zoo",
    responses((status = 200, body = RescanReport)))]
pub async fn rescan(State(st): State<AppState>) -> Result<Json<RescanReport>, ApiError> {
    let zoo = st.zoo.clone();
    Ok(Json(st.blocking(move || zoo.rescan()).await?))
}
