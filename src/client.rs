//! The REST client behind the CLI's `--server URL`: the same requests the dashboard and the example
//! script make, blocking (ureq, plain HTTP), with the server's JSON error turned back into an
//! [`Error`] of the same kind (so the exit codes match the local commands), uploads as multipart, job
//! events read from the server-sent-event stream, and downloads checked against their sha256.
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::distill::{DistillRequest, StudentCard};
use crate::error::{Error, ErrorKind, Result};
use crate::jobs::Job;
use crate::rank::{RankRequest, Ranking};
use crate::zoo::Teacher;

/// A server, and the token sent with every request.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

const BOUNDARY: &str = "faculty-cli-7c1d5e";

/// The kind a server's `ErrorBody` names (its serde name, as `ErrorKind::as_str` writes it), else one
/// from the status.
fn kind_of(kind: &str, status: u16) -> ErrorKind {
    match serde_json::from_value(serde_json::Value::String(kind.to_string())) {
        Ok(k) => k,
        Err(_) if status == 404 => ErrorKind::NotFound,
        Err(_) if (400..500).contains(&status) => ErrorKind::InvalidInput,
        Err(_) => ErrorKind::Internal,
    }
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, token: Option<String>) -> Result<Self> {
        let base = base.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            return Err(Error::invalid_input(format!(
                "--server must be an http:// URL (got '{base}'); for https put faculty behind a proxy \
                 on this machine"
            )));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .build()
            .into();
        Ok(Self { base, token, agent })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn transport(&self, e: ureq::Error) -> Error {
        Error::new(
            ErrorKind::Internal,
            format!("cannot reach the server at {}: {e}", self.base),
        )
    }

    /// The body of a 2xx answer, else the server's error (message and kind) as an [`Error`].
    fn finish(&self, mut res: ureq::http::Response<ureq::Body>) -> Result<Vec<u8>> {
        let status = res.status().as_u16();
        let body = res
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .map_err(|e| self.transport(e))?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let (message, kind) = match serde_json::from_slice::<crate::api::ErrorBody>(&body) {
            Ok(b) => (b.error, b.kind),
            Err(_) => (
                String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
                String::new(),
            ),
        };
        Err(Error::new(
            kind_of(&kind, status),
            format!("the server refused the request ({status}): {message}"),
        ))
    }

    fn send<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<T> {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path));
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let res = match body {
            Some((ctype, bytes)) => self.agent.run(
                req.header("content-type", ctype)
                    .body(bytes)
                    .map_err(http)?,
            ),
            None => self.agent.run(req.body(()).map_err(http)?),
        }
        .map_err(|e| self.transport(e))?;
        let bytes = self.finish(res)?;
        let bytes = if bytes.is_empty() {
            b"null".to_vec()
        } else {
            bytes
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::internal(format!(
                "the server's answer to {method} {path} is not what this client expects: {e}"
            ))
        })
    }

    /// GET a JSON answer.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.send("GET", path, None)
    }

    /// POST JSON, read JSON.
    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        self.send(
            "POST",
            path,
            Some(("application/json", serde_json::to_vec(body)?)),
        )
    }

    /// DELETE.
    pub fn delete(&self, path: &str) -> Result<()> {
        self.send::<serde_json::Value>("DELETE", path, None)
            .map(|_| ())
    }

    /// POST a file as `multipart/form-data` (field `file`) with text fields.
    pub fn upload<T: DeserializeOwned>(
        &self,
        path: &str,
        file: &Path,
        fields: &[(&str, &str)],
    ) -> Result<T> {
        let bytes = std::fs::read(file)
            .map_err(|e| Error::invalid_input(format!("{}: {e}", file.display())))?;
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("upload")
            .replace(['"', '\r', '\n'], "_");
        let body = crate::fuzz::multipart_with(BOUNDARY, &name, &bytes, fields);
        self.send(
            "POST",
            path,
            Some((&format!("multipart/form-data; boundary={BOUNDARY}"), body)),
        )
    }

    /// Every teacher (all pages).
    pub fn teachers(&self) -> Result<Vec<Teacher>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let path = match &token {
                None => "/v1/teachers?page_size=500".to_string(),
                Some(t) => format!("/v1/teachers?page_size=500&page_token={t}"),
            };
            let page: crate::zoo::TeacherPage = self.get(&path)?;
            out.extend(page.teachers);
            match page.next_page_token {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// The newest `limit` items of a list paged newest first (`path` with its filters, e.g.
    /// `/v1/jobs?state=running`; `field` the page's array), and how many match in all.
    pub fn newest<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        field: &str,
        limit: usize,
    ) -> Result<(Vec<T>, usize)> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let sep = if path.contains('?') { '&' } else { '?' };
        loop {
            let size = limit.saturating_sub(out.len()).clamp(1, 500);
            let mut url = format!("{path}{sep}page_size={size}");
            if let Some(t) = &token {
                url += &format!("&page_token={t}");
            }
            let mut page: serde_json::Value = self.get(&url)?;
            let items: Vec<T> = serde_json::from_value(page[field].take())?;
            out.extend(items);
            let total = page["total"].as_u64().unwrap_or(0) as usize;
            match page["next_page_token"].as_str() {
                Some(t) if out.len() < limit => token = Some(t.to_string()),
                _ => return Ok((out, total)),
            }
        }
    }

    /// Uploads a dataset file; its stored description.
    pub fn upload_dataset(
        &self,
        file: &Path,
        label_column: Option<&str>,
        labels: Option<&str>,
    ) -> Result<crate::data::DatasetInfo> {
        let mut fields = Vec::new();
        if let Some(c) = label_column {
            fields.push(("label_column", c));
        }
        if let Some(l) = labels {
            fields.push(("labels", l));
        }
        self.upload("/v1/datasets", file, &fields)
    }

    /// Ranks the zoo for a stored dataset.
    pub fn rank(&self, req: &RankRequest) -> Result<Ranking> {
        self.post("/v1/rankings", req)
    }

    /// Submits a job.
    pub fn submit(&self, req: &DistillRequest) -> Result<Job> {
        self.post("/v1/jobs", req)
    }

    /// Reads a server-sent-event answer, calling `on(event, data)` for each event until it returns false
    /// or the stream ends; a non-2xx answer is the server's error.
    fn events(
        &self,
        res: ureq::http::Response<ureq::Body>,
        mut on: impl FnMut(&str, &str) -> Result<bool>,
    ) -> Result<()> {
        if !res.status().is_success() {
            self.finish(res)?;
            unreachable!("finish returns an error for a non-2xx answer");
        }
        let reader = BufReader::new(res.into_body().into_reader());
        let (mut event, mut data) = (String::new(), String::new());
        for line in reader.lines() {
            let line = line.map_err(|e| Error::internal(format!("event stream: {e}")))?;
            if let Some(d) = line.strip_prefix("data:") {
                data.push_str(d.trim_start());
            } else if let Some(e) = line.strip_prefix("event:") {
                event = e.trim().to_string();
            } else if line.is_empty() && !data.is_empty() {
                let go_on = on(&event, &data)?;
                event.clear();
                data.clear();
                if !go_on {
                    break;
                }
            }
        }
        Ok(())
    }

    fn authorized<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => req.header("authorization", format!("Bearer {t}")),
            None => req,
        }
    }

    /// Follows a job's server-sent events, calling `on_job` with every update (each with its latest epoch
    /// only, the others counted in `epochs_dropped`), until it finishes; the final job, whole.
    pub fn follow(&self, id: &str, mut on_job: impl FnMut(&Job)) -> Result<Job> {
        let req = self.authorized(
            self.agent
                .get(self.url(&format!("/v1/jobs/{id}/events?epochs=latest"))),
        );
        let res = req.call().map_err(|e| self.transport(e))?;
        self.events(res, |_, data| {
            let job: Job = serde_json::from_str(data)
                .map_err(|e| Error::internal(format!("job event: {e}")))?;
            on_job(&job);
            Ok(!job.state.finished())
        })?;
        // the events carried the latest epoch only, and the stream can end before the final state when
        // the server restarts: the final job is read whole
        self.get(&format!("/v1/jobs/{id}"))
    }

    /// Ranks over the streaming endpoint, calling `on_teacher(line, done, total)` as teachers are scored;
    /// the stored ranking.
    pub fn rank_streamed(
        &self,
        req: &RankRequest,
        mut on_teacher: impl FnMut(&crate::rank::TeacherResult, usize, usize),
    ) -> Result<Ranking> {
        let http = self
            .authorized(self.agent.post(self.url("/v1/rankings/stream")))
            .content_type("application/json");
        let res = http
            .send(serde_json::to_vec(req)?)
            .map_err(|e| self.transport(e))?;
        let mut ranking = None;
        self.events(res, |event, data| {
            let bad = |e: serde_json::Error| Error::internal(format!("ranking event: {e}"));
            match event {
                "teacher" => {
                    #[derive(serde::Deserialize)]
                    struct Line {
                        done: usize,
                        total: usize,
                        teacher: crate::rank::TeacherResult,
                    }
                    let l: Line = serde_json::from_str(data).map_err(bad)?;
                    on_teacher(&l.teacher, l.done, l.total);
                    Ok(true)
                }
                "ranking" => {
                    ranking = Some(serde_json::from_str(data).map_err(bad)?);
                    Ok(false)
                }
                "error" => {
                    let b: crate::api::ErrorBody = serde_json::from_str(data).map_err(bad)?;
                    Err(Error::new(
                        kind_of(&b.kind, 0),
                        format!("the server could not rank: {}", b.error),
                    ))
                }
                _ => Ok(true),
            }
        })?;
        ranking.ok_or_else(|| Error::internal("the ranking stream ended before the ranking"))
    }

    /// Downloads `path` into `out` (through a temporary file, renamed when complete), checking the
    /// sha256 when `sha256` is given; the file's sha256.
    pub fn download(&self, path: &str, out: &Path, sha256: Option<&str>) -> Result<String> {
        let res = self
            .authorized(self.agent.get(self.url(path)))
            .call()
            .map_err(|e| self.transport(e))?;
        if !res.status().is_success() {
            self.finish(res)?;
            unreachable!("finish returns an error for a non-2xx answer");
        }
        let dir = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        let mut reader = res.into_body().into_reader();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = std::io::Read::read(&mut reader, &mut buf)
                .map_err(|e| Error::internal(format!("download of {path}: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n])?;
        }
        let got = hex::encode(hasher.finalize());
        if let Some(want) = sha256
            && want != got
        {
            return Err(Error::internal(format!(
                "download of {path} is corrupt: sha256 {got}, the server says {want}; nothing written"
            )));
        }
        tmp.persist(out)
            .map_err(|e| Error::internal(format!("{}: {e}", out.display())))?;
        Ok(got)
    }

    /// A student's card and its ONNX file written to `out` (sha256 checked).
    pub fn download_student(&self, id: &str, out: &Path) -> Result<StudentCard> {
        let card: StudentCard = self.get(&format!("/v1/students/{id}"))?;
        self.download(
            &format!("/v1/students/{id}/model.onnx"),
            out,
            Some(&card.sha256),
        )?;
        Ok(card)
    }
}

fn http(e: ureq::http::Error) -> Error {
    Error::internal(format!("request: {e}"))
}
