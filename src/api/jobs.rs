//! Job and student endpoints: submit a distillation job (202), list / show / cancel it, follow it as
//! server-sent events, and list, show, download or delete the students jobs produce.
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde::Deserialize;

use super::AppState;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::distill::{DistillRequest, StudentCard};
use crate::jobs::{Job, JobPage, JobQuery, StudentPage, StudentQuery};

/// Starts a distillation job. Every check that needs no training runs first: a bad request (unknown
/// dataset or teacher, incompatible teacher, impossible student, no labeled rows) gets a 4xx and creates
/// nothing. The job runs in the background; follow it with `GET /v1/jobs/{id}` or `/events`.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = DistillRequest,
    responses((status = 202, body = Job), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<DistillRequest>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    st.check_disk()?;
    // the checks load the dataset (and the eval dataset): their memory is reserved first
    let (datasets, ids) = (
        st.datasets.clone(),
        [Some(req.dataset_id.clone()), req.eval_dataset_id.clone()],
    );
    let memory = st
        .dataset_memory_for(move || {
            ids.iter()
                .flatten()
                .map(|id| datasets.held(id).map(|h| h.bytes()))
                .sum()
        })
        .await?;
    let jobs = st.jobs.clone();
    let job = st
        .writing(move || {
            let _memory = memory;
            jobs.submit(req)
        })
        .await?;
    tracing::info!(job = %job.id, dataset = %job.dataset_id, method = job.request.method.as_str(), "job queued");
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// Lists jobs, newest first, filtered and paginated, each with its latest epoch only (`epochs_dropped`
/// counts the others; GET the job for its whole history).
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobQuery),
    responses((status = 200, body = JobPage), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<JobQuery>,
) -> Result<Json<JobPage>, ApiError> {
    let jobs = st.jobs.clone();
    Ok(Json(st.blocking(move || jobs.list(&q)).await?))
}

/// Options of reading one job.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct JobGetQuery {
    /// `all` (default: the job's whole kept history, up to ~250 KB) or `latest` (its latest epoch only,
    /// the older ones counted in `epochs_dropped`: a few KB, for status displays).
    pub epochs: Option<EpochsShown>,
}

/// One job: state, phase, progress, epoch metrics, and `student_id` once it succeeded.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path), JobGetQuery),
    responses((status = 200, body = Job), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<JobGetQuery>,
) -> Result<Json<Job>, ApiError> {
    let shown = q.epochs.unwrap_or_default();
    if shown == EpochsShown::New {
        return Err(crate::error::Error::invalid_input(
            "epochs=new is for a job's event stream (/events); GET a job with epochs=all or epochs=latest",
        )
        .into());
    }
    let job = st.jobs.get(&id)?;
    Ok(Json(match shown {
        EpochsShown::Latest => job.latest_epoch_only(),
        _ => job,
    }))
}

/// Cancels a job: a queued one at once, a running one at its next training step (the job then reads
/// `cancelled`). A finished job gives 409.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(st.jobs.cancel(&id)?))
}

/// Which epochs a job's events carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EpochsShown {
    /// The job's whole kept history (up to its 2,000 latest epochs).
    #[default]
    All,
    /// The latest epoch only, the others counted in `epochs_dropped` (for progress displays).
    Latest,
    /// The epochs this stream has not sent yet (the first event: all the job keeps); `epochs_dropped`
    /// is then the position of the first one carried among all the job's epochs. A client puts them
    /// there, dropping what it held from there on (a job resumed from a checkpoint starts over from an
    /// earlier position). For charts: each epoch crosses the wire once.
    New,
}

/// What a stream of `epochs=new` has sent: the job's epoch count then, and its restarts.
#[derive(Default, Clone, Copy)]
struct Sent {
    epochs: Option<usize>,
    restarts: u32,
}

/// `j` with the epochs `sent` has not carried yet only (see [`EpochsShown::New`]); records them sent.
fn new_epochs_only(mut j: Job, sent: &mut Sent) -> Job {
    let total = j.epochs_dropped + j.epochs.len();
    let start = match sent.epochs {
        Some(s) if s <= total && sent.restarts == j.restarts => s.max(j.epochs_dropped),
        // the first event, or the job went back to a checkpoint: everything it keeps
        _ => j.epochs_dropped,
    };
    j.epochs.drain(..start - j.epochs_dropped);
    j.epochs_dropped = start;
    *sent = Sent {
        epochs: Some(total),
        restarts: j.restarts,
    };
    j
}

/// Options of a job's event stream.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct EventsQuery {
    /// `all` (default: each event the whole job, up to ~250 KB), `latest` (each event the job's latest
    /// epoch only, its older epochs counted in `epochs_dropped`) or `new` (each event the epochs not sent
    /// before on this stream, `epochs_dropped` their position).
    pub epochs: Option<EpochsShown>,
}

/// The job as server-sent events: one `job` event with the whole job object now, then at its changes (phase,
/// epoch, state) at most one event per `--events-min-interval-ms` (default 250 ms; changes in between are
/// folded into the next event, which carries the whole job), ending after the final state.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs", params(("id" = String, Path), EventsQuery),
    responses((status = 200, description = "text/event-stream of `job` events", content_type = "text/event-stream"),
        (status = 404, body = ErrorBody)))]
pub async fn events(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
    super::error::ApiQuery(q): super::error::ApiQuery<EventsQuery>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let (first, rx) = st.jobs.subscribe(&id)?;
    let gap = Duration::from_millis(st.config.events_min_interval_ms);
    let shown = q.epochs.unwrap_or_default();
    let event = move |j: Job, sent: &mut Sent| {
        let j = match shown {
            EpochsShown::All => j,
            EpochsShown::Latest => j.latest_epoch_only(),
            EpochsShown::New => new_epochs_only(j, sent),
        };
        Event::default()
            .event("job")
            .json_data(&j)
            .unwrap_or_else(|_| Event::default().event("job"))
    };
    // state: (the next job to send, the receiver, done, when the last event went out, what was sent)
    let stream = futures_util::stream::unfold(
        (
            Some(first),
            rx,
            false,
            tokio::time::Instant::now(),
            Sent::default(),
        ),
        move |(pending, mut rx, done, last, mut sent)| async move {
            if done {
                return None;
            }
            if let Some(j) = pending {
                let fin = j.state.finished() || rx.is_none();
                let ev = event(j, &mut sent);
                return Some((Ok(ev), (None, rx, fin, tokio::time::Instant::now(), sent)));
            }
            let r = rx.as_mut()?;
            // the watch keeps only the newest job: what changes while we wait is sent as one event
            tokio::time::sleep_until(last + gap).await;
            match r.changed().await {
                Ok(()) => {
                    let j = r.borrow_and_update().clone();
                    let fin = j.state.finished();
                    let ev = event(j, &mut sent);
                    Some((Ok(ev), (None, rx, fin, tokio::time::Instant::now(), sent)))
                }
                // the job finished and its channel closed: nothing more will come (an unseen final
                // state is still delivered by `changed` first)
                Err(_) => None,
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Lists students, newest first, filtered and paginated, each card without its training history
/// (`history` is empty: GET the student for it).
#[utoipa::path(get, path = "/v1/students", tag = "students", params(StudentQuery),
    responses((status = 200, body = StudentPage), (status = 400, body = ErrorBody)))]
pub async fn list_students(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<StudentQuery>,
) -> Result<Json<StudentPage>, ApiError> {
    let jobs = st.jobs.clone();
    Ok(Json(st.blocking(move || jobs.students().list(&q)).await?))
}

/// A student's card: held-out accuracy next to the scratch baseline and the teacher's, parameters, file
/// size, measured latency, teacher chain, training history.
#[utoipa::path(get, path = "/v1/students/{id}", tag = "students", params(("id" = String, Path)),
    responses((status = 200, body = StudentCard), (status = 404, body = ErrorBody)))]
pub async fn get_student(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<StudentCard>, ApiError> {
    Ok(Json(st.jobs.students().get(&id)?))
}

/// Deletes a student (its card and file).
#[utoipa::path(delete, path = "/v1/students/{id}", tag = "students", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete_student(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    st.jobs.students().delete(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Downloads the student's ONNX file. The ETag is its sha256; `If-None-Match` gives 304.
#[utoipa::path(get, path = "/v1/students/{id}/model.onnx", tag = "students", params(("id" = String, Path)),
    responses((status = 200, description = "The ONNX file", content_type = "application/octet-stream"),
        (status = 304, description = "Not modified"), (status = 404, body = ErrorBody)))]
pub async fn download_student(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let card = st.jobs.students().get(&id)?;
    let path = st.jobs.students().file(&id)?;
    let filename = format!("{}.onnx", card.id);
    super::teachers::file_response(&path, &card.sha256, card.file_size, &filename, &headers).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::EpochMetrics;

    /// A job keeping epochs `dropped + 1 ..= dropped + n` after `restarts` restarts.
    fn job(dropped: usize, n: usize, restarts: u32) -> Job {
        let mut j: Job = serde_json::from_value(serde_json::json!({
            "id": "job_0000000000000000", "state": "running", "phase": "training", "progress": 0.5,
            "dataset_id": "ds_0000000000000000", "request": {"dataset_id": "ds_0000000000000000"},
            "student_id": null, "teacher": null, "epochs": [], "error": null, "created": 0,
            "started": null, "finished": null, "checkpoint_epoch": null, "restarts": restarts,
            "notes": []}))
        .unwrap();
        j.epochs_dropped = dropped;
        j.epochs = (dropped + 1..=dropped + n)
            .map(|epoch| EpochMetrics {
                epoch,
                train_loss: 1.0,
                distill_loss: None,
                val_accuracy: None,
                val_loss: None,
                lr: 0.1,
                stage: None,
            })
            .collect();
        j
    }

    fn carried(j: &Job) -> (usize, Vec<usize>) {
        (j.epochs_dropped, j.epochs.iter().map(|e| e.epoch).collect())
    }

    #[test]
    fn a_stream_of_new_epochs_sends_each_once_and_starts_over_after_a_resume() {
        let mut sent = Sent::default();
        // the first event: all the job keeps
        assert_eq!(
            carried(&new_epochs_only(job(0, 3, 0), &mut sent)),
            (0, vec![1, 2, 3])
        );
        // then only what is new
        assert_eq!(
            carried(&new_epochs_only(job(0, 5, 0), &mut sent)),
            (3, vec![4, 5])
        );
        assert_eq!(
            carried(&new_epochs_only(job(0, 5, 0), &mut sent)),
            (5, vec![])
        );
        // past the history cap (the oldest dropped): still from where the stream was
        assert_eq!(
            carried(&new_epochs_only(job(4, 3, 0), &mut sent)),
            (5, vec![6, 7])
        );
        // the job went back to a checkpoint (a restart): everything it keeps, from its start
        assert_eq!(
            carried(&new_epochs_only(job(0, 6, 1), &mut sent)),
            (0, vec![1, 2, 3, 4, 5, 6])
        );
        // fewer epochs than sent (a new stage's history replaced it): everything it keeps
        assert_eq!(
            carried(&new_epochs_only(job(0, 2, 1), &mut sent)),
            (0, vec![1, 2])
        );
    }
}
