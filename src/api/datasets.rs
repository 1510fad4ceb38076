//! Dataset and ranking endpoints: upload / list / show / delete a task dataset, rank the zoo for it, and
//! read a stored ranking back.
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::AppState;
use super::error::{ApiError, ApiJson, ApiMultipart, ApiPath, ErrorBody};
use super::teachers::{field_text, multipart_error};
use crate::data::preview::Samples;
use crate::data::{DatasetInfo, Format, ParseOptions};
use crate::error::{Error, ErrorKind};
use crate::rank::label_map::LabelMap;
use crate::rank::shards::PartialRanking;
use crate::rank::{RankRequest, Ranking};

/// The multipart form of a dataset upload.
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct DatasetForm {
    /// `.npz` (x, y; -1 = unlabeled; optional labels), `.csv` (header, label column, numeric features;
    /// empty label = unlabeled) or `.zip` of image folders (`<class>/<file>.png|jpg`, `_unlabeled/`).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// A display name (default: the file name).
    name: Option<String>,
    /// CSV: the label column (default `label`).
    label_column: Option<String>,
    /// Class names as a JSON list.
    labels: Option<String>,
}

/// A page of datasets, newest first.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct DatasetList {
    pub datasets: Vec<DatasetInfo>,
    /// Pass as `page_token` for the next page; null on the last page.
    #[serde(default)]
    pub next_page_token: Option<String>,
    /// Datasets over all pages.
    #[serde(default)]
    pub total: usize,
}

/// Paging of the datasets list.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct DatasetQuery {
    /// Datasets per page, newest first (1-500, default 100).
    pub page_size: Option<usize>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// Uploads a task dataset. The same content uploaded again returns the stored entry (200 instead of 201).
#[utoipa::path(post, path = "/v1/datasets", tag = "datasets",
    request_body(content = DatasetForm, content_type = "multipart/form-data"),
    responses((status = 201, body = DatasetInfo), (status = 200, description = "Already stored", body = DatasetInfo),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn upload(
    State(st): State<AppState>,
    ApiMultipart(mut mp): ApiMultipart,
) -> Result<(StatusCode, Json<DatasetInfo>), ApiError> {
    st.check_disk()?;
    let limit = st.config.max_upload_bytes;
    // the file goes to disk as it arrives: parsing reads it from there, so an upload in memory is its
    // rows, not its bytes and then its rows
    let staging = st.config.data_dir.join(UPLOAD_STAGING);
    std::fs::create_dir_all(&staging)?;
    let tmp = tempfile::Builder::new()
        .prefix("upload-")
        .suffix(".part")
        .tempfile_in(&staging)?;
    let mut file: Option<(Option<String>, u64)> = None;
    let mut opts = ParseOptions {
        max_bytes: limit.saturating_mul(4),
        ..ParseOptions::default()
    };
    let mut name = None;
    while let Some(mut field) = mp.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or("") {
            "file" => {
                let fname = field.file_name().map(str::to_string);
                let mut out = tokio::fs::File::from_std(tmp.reopen()?);
                out.set_len(0).await?;
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
                file = Some((fname, n));
            }
            "name" => name = Some(field_text(field).await?.trim().to_string()),
            "label_column" => opts.label_column = Some(field_text(field).await?.trim().to_string()),
            "labels" => {
                let text = field_text(field).await?;
                opts.labels = Some(crate::zoo::teacher::parse_labels(&text).ok_or_else(|| {
                    Error::invalid_input("labels must be a JSON list of class names")
                })?);
            }
            _ => {}
        }
    }
    let (fname, len) =
        file.ok_or_else(|| ApiError(Error::invalid_input("multipart field `file` is missing")))?;
    let datasets = st.datasets.clone();
    // what parsing may hold at its worst: what the file may inflate to, and the rows
    let need = 2 * crate::data::npz::inflate_budget(len as usize, opts.max_bytes);
    let budget = st.dataset_memory(need).await?;
    let (info, created) = st
        .writing(move || {
            let _budget = budget;
            let mut src = std::io::BufReader::new(tmp.reopen()?);
            let format = Format::detect_from(fname.as_deref(), &mut src)?;
            let (ds, test) = crate::data::parse_upload(format, src, &opts)?;
            drop(tmp); // removes the staging file
            let display = name
                .filter(|n| !n.is_empty())
                .or(fname)
                .unwrap_or_else(|| "dataset".into());
            // the test split first: the dataset names it once both exist
            let test_id = match &test {
                Some(t) => Some(
                    datasets
                        .put(t, &format!("{display} (test split)"), format)?
                        .0
                        .id,
                ),
                None => None,
            };
            let (info, created) = datasets.put(&ds, &display, format)?;
            match test_id {
                Some(t) => Ok((datasets.set_test(&info.id, &t)?, created)),
                None => Ok((info, created)),
            }
        })
        .await?;
    tracing::info!(dataset = %info.id, rows = info.rows, created, "dataset stored");
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(info),
    ))
}

/// Lists stored datasets, newest first, paginated (descriptions only: the rows and labels are not read).
#[utoipa::path(get, path = "/v1/datasets", tag = "datasets", params(DatasetQuery),
    responses((status = 200, body = DatasetList), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(st): State<AppState>,
    super::error::ApiQuery(q): super::error::ApiQuery<DatasetQuery>,
) -> Result<Json<DatasetList>, ApiError> {
    let datasets = st.datasets.clone();
    let (datasets, next_page_token, total) = st
        .blocking(move || {
            datasets.list(crate::store::listing::Paging {
                page_size: q.page_size,
                page_token: q.page_token.as_deref(),
            })
        })
        .await?;
    Ok(Json(DatasetList {
        datasets,
        next_page_token,
        total,
    }))
}

/// One dataset: rows, row shape, labeled / unlabeled counts, per-class counts.
#[utoipa::path(get, path = "/v1/datasets/{id}", tag = "datasets", params(("id" = String, Path)),
    responses((status = 200, body = DatasetInfo), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DatasetInfo>, ApiError> {
    Ok(Json(st.datasets.info(&id)?))
}

/// Deletes a dataset.
#[utoipa::path(delete, path = "/v1/datasets/{id}", tag = "datasets", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    st.datasets.delete(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether `POST /v1/rankings` waits for a sharded ranking.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct RankWait {
    /// With `--rank-shard-size`: wait for the ranking to close (default true, up to 10 minutes); false
    /// answers 202 at once with the ranking's id, to read back with `GET /v1/rankings/{id}`.
    pub wait: Option<bool>,
}

/// The folder of the data directory that uploads are written to while they arrive and are parsed.
pub(crate) const UPLOAD_STAGING: &str = "uploads";

/// How long a sharded ranking request waits for its ranking to close before answering 202.
const RANK_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// A stored ranking, or the partial one while its shards are scored.
enum Outcome {
    Done(Box<Ranking>),
    Partial(Box<PartialRanking>),
}

/// Ranking `id`: stored, or still being scored (202), or failed (an error naming why).
async fn ranking_now(st: &AppState, id: &str) -> Result<Outcome, ApiError> {
    let (rankings, shards, id) = (st.rankings.clone(), st.shards.clone(), id.to_string());
    tokio::task::spawn_blocking(move || match rankings.get(&id) {
        Ok(r) => Ok(Outcome::Done(Box::new(r))),
        Err(e) if e.kind == ErrorKind::NotFound => match shards.shards.partial(&id)? {
            Some(p) if p.state == "failed" => Err(Error::internal(format!(
                "ranking {id} failed: {}",
                p.error.as_deref().unwrap_or("unknown")
            ))),
            Some(p) => Ok(Outcome::Partial(Box::new(p))),
            None => Err(e),
        },
        Err(e) => Err(e),
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))?
    .map_err(ApiError)
}

/// Polls ranking `id` until it is stored or `wait` passes.
async fn wait_ranking(
    st: &AppState,
    id: &str,
    wait: std::time::Duration,
) -> Result<Outcome, ApiError> {
    let until = std::time::Instant::now() + wait;
    loop {
        let now = ranking_now(st, id).await?;
        if matches!(now, Outcome::Done(_)) || std::time::Instant::now() >= until {
            return Ok(now);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn outcome_response(o: Outcome, done: StatusCode) -> Response {
    match o {
        Outcome::Done(r) => (done, Json(r)).into_response(),
        Outcome::Partial(p) => (
            StatusCode::ACCEPTED,
            [(
                axum::http::header::LOCATION,
                format!("/v1/rankings/{}", p.id),
            )],
            Json(p),
        )
            .into_response(),
    }
}

/// Ranks the zoo's teachers for a dataset. Teacher outputs are cached per (teacher, dataset), so ranking
/// the same dataset again (other metrics, other teachers) is near-instant. With `--rank-shard-size` the
/// teachers are scored in shards by every working process; the answer waits for the last one (202 with
/// the partial ranking when `wait=false` or after 10 minutes).
#[utoipa::path(post, path = "/v1/rankings", tag = "rankings", request_body = RankRequest, params(RankWait),
    responses((status = 201, body = Ranking), (status = 202, body = PartialRanking),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_ranking(
    State(st): State<AppState>,
    super::error::ApiQuery(q): super::error::ApiQuery<RankWait>,
    ApiJson(req): ApiJson<RankRequest>,
) -> Result<Response, ApiError> {
    let (zoo, datasets, cache, rankings) = (
        st.zoo.clone(),
        st.datasets.clone(),
        st.outputs.clone(),
        st.rankings.clone(),
    );
    let shard_size = st.config.rank_shard_size;
    if shard_size > 0 {
        let work = st.shards.clone();
        let id = st
            .blocking(move || {
                let info = datasets.info(&req.dataset_id)?;
                work.shards
                    .submit(&zoo, &rankings, &info.id, &req, shard_size)
            })
            .await?;
        let wait = if q.wait.unwrap_or(true) {
            RANK_WAIT
        } else {
            std::time::Duration::ZERO
        };
        return Ok(outcome_response(
            wait_ranking(&st, &id, wait).await?,
            StatusCode::CREATED,
        ));
    }
    let memory = ranking_memory(&st, &req.dataset_id).await?;
    let r = st
        .blocking(move || {
            let _memory = memory; // as long as the rows are held
            let rows = crate::rank::RankRows::load(&datasets, &req.dataset_id)?;
            let r = crate::rank::rank(&zoo, Some(&cache), &rows, &req)?;
            rankings.put(r)
        })
        .await?;
    tracing::info!(ranking = %r.id, dataset = %r.dataset_id, ms = r.elapsed_ms, "ranked");
    Ok((StatusCode::CREATED, Json(r)).into_response())
}

/// Ranks the zoo for a dataset as server-sent events, so a client sees results before the last teacher
/// is scored: a `teacher` event per teacher as soon as its line is known (`{"done", "total", "teacher"}`:
/// incompatible and already-scored teachers first, then the others as they are scored, without rank or
/// ties yet), then one `ranking` event with the stored ranking (ranks, ties, verdict), or an `error`
/// event (`ErrorBody`). A request that is wrong from the start (unknown dataset, unknown metric) gets a
/// 4xx instead of a stream.
#[utoipa::path(post, path = "/v1/rankings/stream", tag = "rankings", request_body = RankRequest,
    responses((status = 200, description = "text/event-stream of `teacher` events, then `ranking` (or `error`)",
        content_type = "text/event-stream"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn stream_ranking(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<RankRequest>,
) -> Result<
    axum::response::sse::Sse<
        impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    st.datasets.info(&req.dataset_id)?;
    crate::rank::check_metrics(&req)?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    if st.config.rank_shard_size > 0 {
        tokio::spawn(stream_shards(st, req, tx));
    } else {
        tokio::spawn(stream_here(st, req, tx));
    }
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|ev| (Ok(ev), rx))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15))))
}

/// A ranking this server scores, as events (see [`stream_ranking`]).
async fn stream_here(
    st: AppState,
    req: RankRequest,
    tx: tokio::sync::mpsc::UnboundedSender<axum::response::sse::Event>,
) {
    use axum::response::sse::Event;
    let (zoo, datasets, cache, rankings) = (
        st.zoo.clone(),
        st.datasets.clone(),
        st.outputs.clone(),
        st.rankings.clone(),
    );
    let progress = tx.clone();
    {
        let out = match ranking_memory(&st, &req.dataset_id).await {
            Err(e) => Err(e),
            Ok(memory) => {
                st.blocking(move || {
                    let _memory = memory; // as long as the rows are held
                    let rows = crate::rank::RankRows::load(&datasets, &req.dataset_id)?;
                    let on = |t: &crate::rank::TeacherResult, done: usize, total: usize| {
                        let ev = Event::default().event("teacher").json_data(
                            serde_json::json!({ "done": done, "total": total, "teacher": t }),
                        );
                        if let Ok(ev) = ev {
                            let _ = progress.send(ev);
                        }
                    };
                    let r = crate::rank::rank_with(&zoo, Some(&cache), &rows, &req, &on)?;
                    rankings.put(r)
                })
                .await
            }
        };
        let last = match out {
            Ok(r) => {
                tracing::info!(ranking = %r.id, dataset = %r.dataset_id, ms = r.elapsed_ms, "ranked (streamed)");
                Event::default().event("ranking").json_data(&r)
            }
            Err(e) => Event::default().event("error").json_data(e.body()),
        };
        if let Ok(ev) = last {
            let _ = tx.send(ev);
        }
    }
}

/// A sharded ranking as events: a `teacher` event per line as its shard is scored, then `ranking` (or
/// `error`).
async fn stream_shards(
    st: AppState,
    req: RankRequest,
    tx: tokio::sync::mpsc::UnboundedSender<axum::response::sse::Event>,
) {
    use axum::response::sse::Event;
    let send = |ev: Result<Event, axum::Error>| {
        if let Ok(ev) = ev {
            let _ = tx.send(ev);
        }
    };
    let (zoo, rankings, work, size) = (
        st.zoo.clone(),
        st.rankings.clone(),
        st.shards.clone(),
        st.config.rank_shard_size,
    );
    let id = st
        .blocking(move || {
            work.shards
                .submit(&zoo, &rankings, &req.dataset_id, &req, size)
        })
        .await;
    let mut seen = std::collections::HashSet::new();
    let until = std::time::Instant::now() + RANK_WAIT;
    let last = loop {
        let now = match &id {
            Ok(id) => ranking_now(&st, id).await,
            Err(e) => Err(ApiError(e.0.clone())),
        };
        match now {
            Err(e) => break Event::default().event("error").json_data(e.body()),
            Ok(Outcome::Done(r)) => {
                // lines scored after the last look (or all of them, when it closed before the first)
                for t in &r.results {
                    if seen.insert(t.teacher_id.clone()) {
                        send(Event::default().event("teacher").json_data(
                            serde_json::json!({ "done": seen.len(), "total": r.results.len(), "teacher": t }),
                        ));
                    }
                }
                break Event::default().event("ranking").json_data(&r);
            }
            Ok(Outcome::Partial(p)) => {
                for t in &p.results {
                    if seen.insert(t.teacher_id.clone()) {
                        send(Event::default().event("teacher").json_data(
                            serde_json::json!({ "done": seen.len(), "total": p.teachers, "teacher": t }),
                        ));
                    }
                }
            }
        }
        if std::time::Instant::now() >= until || tx.is_closed() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    send(last);
}

/// Which rankings to list.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct RankingQuery {
    /// Only this dataset's rankings.
    pub dataset_id: Option<String>,
    /// Rankings per page, newest first (1-500, default 50).
    pub limit: Option<usize>,
    /// The same as `limit` (the name the other lists use); `limit` wins when both are given.
    pub page_size: Option<usize>,
    /// `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// A page of stored rankings, newest first.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RankingList {
    pub rankings: Vec<crate::rank::RankingSummary>,
    /// Pass as `page_token` for the next page; null on the last page.
    #[serde(default)]
    pub next_page_token: Option<String>,
    /// Rankings matching the filter, over all pages.
    #[serde(default)]
    pub total: usize,
}

/// Lists stored rankings (newest first, paginated): id, dataset, recommended teacher, verdict.
#[utoipa::path(get, path = "/v1/rankings", tag = "rankings", params(RankingQuery),
    responses((status = 200, body = RankingList), (status = 400, body = ErrorBody)))]
pub async fn list_rankings(
    State(st): State<AppState>,
    super::error::ApiQuery(q): super::error::ApiQuery<RankingQuery>,
) -> Result<Json<RankingList>, ApiError> {
    let limit = q.limit.or(q.page_size).unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError(Error::invalid_input(format!(
            "limit must be in 1..=500, got {limit}"
        ))));
    }
    let rankings = st.rankings.clone();
    let (list, next_page_token, total) = st
        .blocking(move || {
            let paging = crate::store::listing::Paging {
                page_size: Some(limit),
                page_token: q.page_token.as_deref(),
            };
            rankings.list(q.dataset_id.as_deref(), paging)
        })
        .await?;
    Ok(Json(RankingList {
        rankings: list,
        next_page_token,
        total,
    }))
}

/// A stored ranking; 202 with the lines scored so far while a sharded ranking's shards are scored.
#[utoipa::path(get, path = "/v1/rankings/{id}", tag = "rankings", params(("id" = String, Path)),
    responses((status = 200, body = Ranking), (status = 202, body = PartialRanking),
        (status = 404, body = ErrorBody), (status = 500, body = ErrorBody)))]
pub async fn get_ranking(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(outcome_response(
        ranking_now(&st, &id).await?,
        StatusCode::OK,
    ))
}

/// A teacher's label map on the ranking's dataset: the transport plan and cost between the teacher's
/// classes and the task's, the conditional P(task class | teacher class) distillation carries the teacher
/// through, and for each task class the teacher class that teaches it most (e.g. "Sneaker -> Sandal").
#[utoipa::path(get, path = "/v1/rankings/{id}/teachers/{teacher_id}/label_map", tag = "rankings",
    params(("id" = String, Path), ("teacher_id" = String, Path)),
    responses((status = 200, body = LabelMap), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn label_map(
    State(st): State<AppState>,
    ApiPath((id, teacher_id)): ApiPath<(String, String)>,
) -> Result<Json<LabelMap>, ApiError> {
    let ranking = st.rankings.get(&id)?;
    if !ranking.results.iter().any(|r| r.teacher_id == teacher_id) {
        return Err(ApiError(Error::not_found(format!(
            "teacher '{teacher_id}' is not in ranking {id}"
        ))));
    }
    let teacher = st.zoo.get(&teacher_id)?;
    let (zoo, datasets, cache) = (st.zoo.clone(), st.datasets.clone(), st.outputs.clone());
    let memory = ranking_memory(&st, &ranking.dataset_id).await?;
    let map = st
        .blocking(move || {
            let _memory = memory; // as long as the rows are held
            let rows = crate::rank::RankRows::load(&datasets, &ranking.dataset_id)?;
            crate::rank::label_map::label_map(&zoo, Some(&cache), &teacher, &rows)
        })
        .await?;
    Ok(Json(map))
}

/// How many sample images per class.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct SampleQuery {
    /// 1-16 (default 6).
    pub per_class: Option<usize>,
}

/// A few labeled images of each class (8-bit, channel-first, at most 64 pixels a side), for datasets
/// whose rows are images; 400 for other rows.
#[utoipa::path(get, path = "/v1/datasets/{id}/samples", tag = "datasets",
    params(("id" = String, Path), SampleQuery),
    responses((status = 200, body = Samples), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn samples(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
    super::error::ApiQuery(q): super::error::ApiQuery<SampleQuery>,
) -> Result<Json<Samples>, ApiError> {
    let datasets = st.datasets.clone();
    let s = st
        .blocking(move || {
            use crate::data::preview;
            // only the rows shown are read
            let some = datasets.load_rows(&id, |info, y| {
                preview::image_dims(&info.row_shape)?;
                Ok(preview::pick(
                    y,
                    info.classes.len(),
                    q.per_class.unwrap_or(6),
                ))
            })?;
            preview::render(
                some.x.view(),
                &some.info.row_shape,
                &some.rows,
                &some.y,
                &some.labels,
            )
        })
        .await?;
    Ok(Json(s))
}

/// Reserves the dataset memory a ranking's rows of `dataset_id` will hold ([`AppState::dataset_memory`]).
async fn ranking_memory(
    st: &AppState,
    dataset_id: &str,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    let (datasets, id) = (st.datasets.clone(), dataset_id.to_string());
    st.dataset_memory_for(move || crate::rank::RankRows::load_bytes(&datasets, &id))
        .await
}
