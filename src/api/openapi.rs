//! The OpenAPI document, generated from the handlers' annotations and served at `/openapi.json`.
//! A copy is checked in as `openapi.json`; a test fails when the two drift.
use axum::Json;
use utoipa::OpenApi;

use super::{datasets, error::ErrorBody, jobs, teachers};
use crate::data::{ClassCount, DatasetInfo, Format};
use crate::distill::{
    Accuracy, Activation, Budget, BudgetCandidate, BudgetReport, Delivered, DistillRequest,
    EpochMetrics, Estimate, HopTrial, Method, MultihopOptions, MultihopReport, ProbeReport,
    StudentArg, StudentCard, StudentSpec, TeacherRef, TestReport, TrainConfig, Weighting,
    WeightingReport,
};
use crate::jobs::{Job, JobState};
use crate::onnx::{OutputKind, session::Predictor};
use crate::rank::{Direction, RankRequest, Ranking, TeacherResult, Verdict};
use crate::zoo::catalog::Failed;
use crate::zoo::{RescanReport, Teacher, TeacherPage, TensorSig};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "faculty",
        description = "Find the most related teacher in an ONNX zoo and distill a student from it."
    ),
    paths(
        super::healthz,
        teachers::list,
        teachers::get_one,
        teachers::download,
        teachers::upload,
        teachers::delete,
        teachers::predict,
        teachers::rescan,
        datasets::upload,
        datasets::list,
        datasets::get_one,
        datasets::delete,
        datasets::create_ranking,
        datasets::list_rankings,
        datasets::stream_ranking,
        datasets::get_ranking,
        datasets::label_map,
        datasets::samples,
        jobs::create,
        jobs::list,
        jobs::get_one,
        jobs::cancel,
        jobs::events,
        jobs::list_students,
        jobs::get_student,
        jobs::delete_student,
        jobs::download_student
    ),
    components(schemas(
        ErrorBody,
        Teacher,
        TensorSig,
        TeacherPage,
        RescanReport,
        Failed,
        Predictor,
        OutputKind,
        super::Health,
        teachers::UploadForm,
        teachers::PredictRequest,
        teachers::PredictResponse,
        datasets::DatasetForm,
        datasets::DatasetList,
        DatasetInfo,
        ClassCount,
        Format,
        RankRequest,
        Ranking,
        TeacherResult,
        Verdict,
        Direction,
        DistillRequest,
        Method,
        StudentArg,
        StudentSpec,
        Activation,
        TrainConfig,
        Job,
        JobState,
        EpochMetrics,
        TeacherRef,
        StudentCard,
        Delivered,
        Budget,
        BudgetCandidate,
        BudgetReport,
        TestReport,
        Estimate,
        Weighting,
        WeightingReport,
        ProbeReport,
        MultihopOptions,
        crate::distill::multihop::Candidates,
        MultihopReport,
        HopTrial,
        Accuracy,
        crate::jobs::JobPage,
        jobs::EpochsShown,
        crate::jobs::StudentPage,
        crate::rank::label_map::LabelMap,
        crate::rank::RankingSummary,
        crate::rank::shards::PartialRanking,
        crate::rank::shards::ShardSummary,
        datasets::RankingList,
        crate::rank::label_map::LabelPair,
        crate::data::preview::Samples,
        crate::data::preview::Sample
    ))
)]
pub struct ApiDoc;

/// The document as pretty JSON (what `openapi.json` in the repository holds).
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("OpenAPI serializes")
}

pub async fn serve() -> Json<serde_json::Value> {
    Json(serde_json::to_value(ApiDoc::openapi()).expect("OpenAPI serializes"))
}
