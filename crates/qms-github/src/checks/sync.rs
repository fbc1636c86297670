//! Converge GitHub's check runs to the desired ones (level-triggered).
//!
//! Input: the workflow (its `status.checkRuns` is what was last synced) and its template. Output:
//! the new `checkRuns`/`dispatches` to store and when to come back. Each call does what it can and
//! stops at the first GitHub error: if GitHub is down or rate-limited the workflow keeps running
//! and a later call catches up, because the next call again compares desired vs. synced.
//!
//! Rules (lessons from Pipelines-as-Code): a completed check run is never moved back to
//! `in_progress` (a re-run or new SHA is a new run number, hence new check runs); every check run
//! we opened ends with a conclusion, `cancelled` when its run was superseded or the workflow went
//! away; annotations go 50 per request.

use chrono::{DateTime, SecondsFormat, Utc};
use qms_api::{CheckRunRef, QmsWorkflow, WorkflowTemplateSpec};
use serde_json::{Value, json};

use crate::checks::dispatch::desired_dispatches;
use crate::checks::render::{
    AnnotationPlan, CheckAnnotation, CheckStatus, DesiredCheck, RenderConfig, StepAnnotations,
    annotation_batches, attach_annotations, desired_checks,
};
use crate::client::{GithubClient, GithubError};
use crate::naming;

pub struct SyncInput<'a> {
    pub workflow: &'a QmsWorkflow,
    pub template: Option<&'a WorkflowTemplateSpec>,
    /// Agents' annotations per step (the operator reads them from the agents' results).
    pub annotations: &'a StepAnnotations,
}

#[derive(Debug, Default)]
pub struct SyncReport {
    /// `status.checkRuns` after this call.
    pub check_runs: Vec<CheckRunRef>,
    /// `status.dispatches` after this call.
    pub dispatches: Vec<String>,
    /// Whether `check_runs`/`dispatches` differ from the workflow's status (store them).
    pub changed: bool,
    /// GitHub write requests made.
    pub writes: u32,
    /// Everything desired is on GitHub.
    pub converged: bool,
    /// When to call again (GitHub blocked us or failed); `None` when converged or not retryable.
    pub retry_at: Option<DateTime<Utc>>,
    /// The error that stopped this call, if any.
    pub error: Option<GithubError>,
}

pub async fn sync(client: &GithubClient, cfg: &RenderConfig, input: SyncInput<'_>) -> SyncReport {
    let wf = input.workflow;
    let status = wf.status.clone().unwrap_or_default();
    let mut records = status.check_runs.clone();
    let mut dispatches = status.dispatches.clone();
    let mut report = SyncReport::default();
    let repo = wf.spec.repository.as_str();

    let desired = desired_checks(wf, input.template, cfg);
    let result = async {
        let inst = installation(client, wf).await?;
        // First end the open check runs nothing wants any more (superseded run, new SHA, workflow
        // deleted), so the old SHA never looks "in progress" next to the new one.
        for rec in records.iter_mut() {
            let wanted = desired
                .iter()
                .any(|d| d.name == rec.name && d.run == rec.run && d.head_sha == rec.head_sha);
            if !wanted && rec.status != "completed" {
                cancel(client, inst, repo, rec, wf, &mut report).await?;
            }
        }
        for d in &desired {
            let empty = Vec::new();
            let anns = d
                .step
                .as_ref()
                .and_then(|s| input.annotations.get(s))
                .unwrap_or(&empty);
            let (d, plan) = attach_annotations(d.clone(), anns, cfg.max_annotations_per_check_run);
            converge_one(client, inst, repo, &d, &plan, &mut records, &mut report).await?;
        }
        for ev in desired_dispatches(wf, input.template) {
            if dispatches.contains(&ev.key) {
                continue;
            }
            client.repository_dispatch(inst, repo, &ev.body).await?;
            report.writes += 1;
            dispatches.push(ev.key);
        }
        Ok::<(), GithubError>(())
    }
    .await;

    // Keep the lists small: the current run's entries and anything still open.
    let run = status.run;
    records.retain(|r| r.run == run || r.status != "completed");
    let prefix = format!("{run}/");
    dispatches.retain(|k| k.starts_with(&prefix));

    report.changed = records != status.check_runs || dispatches != status.dispatches;
    report.check_runs = records;
    report.dispatches = dispatches;
    match result {
        Ok(()) => report.converged = true,
        Err(e) => {
            report.retry_at = e.retry_at();
            report.error = Some(e);
        }
    }
    report
}

async fn installation(client: &GithubClient, wf: &QmsWorkflow) -> Result<Option<u64>, GithubError> {
    let from_annotation = wf
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(naming::ANNOTATION_INSTALLATION))
        .and_then(|v| v.parse::<u64>().ok());
    match from_annotation {
        Some(id) => Ok(Some(id)),
        None => client.installation_for(&wf.spec.repository).await,
    }
}

fn now_str(client: &GithubClient) -> String {
    client.now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn check_body(
    client: &GithubClient,
    d: &DesiredCheck,
    batch: &[CheckAnnotation],
    create: bool,
) -> Value {
    let mut output = json!({ "title": d.title, "summary": d.summary });
    if let Some(text) = &d.text {
        output["text"] = json!(text);
    }
    if !batch.is_empty() {
        output["annotations"] = json!(
            batch
                .iter()
                .map(CheckAnnotation::sanitized)
                .collect::<Vec<_>>()
        );
    }
    let mut body = json!({
        "status": d.status.as_str(),
        "external_id": d.external_id,
        "output": output,
        // Always sent so the Approve/Reject buttons disappear once the step is decided.
        "actions": d.actions,
    });
    if create {
        body["name"] = json!(d.name);
        body["head_sha"] = json!(d.head_sha);
        body["started_at"] = json!(now_str(client));
    }
    if let Some(c) = d.conclusion {
        body["conclusion"] = json!(c.as_str());
        body["completed_at"] = json!(now_str(client));
    }
    if let Some(url) = &d.details_url {
        body["details_url"] = json!(url);
    }
    body
}

async fn converge_one(
    client: &GithubClient,
    inst: Option<u64>,
    repo: &str,
    d: &DesiredCheck,
    plan: &AnnotationPlan,
    records: &mut Vec<CheckRunRef>,
    report: &mut SyncReport,
) -> Result<(), GithubError> {
    let anns = plan.send.as_slice();
    // Same name and run on another SHA (a run number reused): that record was completed by the
    // loop over stale records and is replaced (the list is keyed by name + run).
    records.retain(|r| !(r.name == d.name && r.run == d.run && r.head_sha != d.head_sha));
    let pos = records
        .iter()
        .position(|r| r.name == d.name && r.run == d.run);
    // Whether `annotations_sent` is known to match what GitHub holds (true once this call
    // created the check run or read its count).
    let (idx, counted) = match pos {
        Some(i) => (i, false),
        None => (
            adopt_or_create(client, inst, repo, d, anns, records, report).await?,
            true,
        ),
    };
    let rec = &mut records[idx];
    let reopen = rec.status == "completed" && d.status != CheckStatus::Completed;
    let rewrite = !reopen && rec.fingerprint.as_deref() != Some(d.fingerprint.as_str());
    // Before appending annotations to a check run this call did not create, ask GitHub how many it
    // holds: after a crash between a request and the status write, the status is one batch
    // behind, and resending that batch would show it twice (one read, never a write).
    if !counted && !reopen && (rec.annotations_sent as usize) < anns.len() {
        match client.get_check_run(inst, repo, rec.id).await {
            Ok(found) => rec.annotations_sent = found.output.annotations_count,
            Err(GithubError::Api { status: 404, .. }) => {
                records.remove(idx);
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    let rec = &mut records[idx];
    if rewrite {
        let batch = annotation_batches(anns, rec.annotations_sent as usize)
            .first()
            .copied()
            .unwrap_or(&[]);
        match client
            .update_check_run(inst, repo, rec.id, &check_body(client, d, batch, false))
            .await
        {
            Ok(()) => {}
            // Gone on GitHub (deleted, or the repository moved): forget it; the next sync
            // creates it again instead of retrying a dead id forever.
            Err(GithubError::Api { status: 404, .. }) => {
                records.remove(idx);
                report.writes += 1;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        report.writes += 1;
        rec.status = d.status.as_str().to_owned();
        rec.conclusion = d.conclusion.map(|c| c.as_str().to_owned());
        rec.fingerprint = Some(d.fingerprint.clone());
        rec.annotations_sent += batch.len() as u32;
    }
    if reopen {
        return Ok(());
    }
    send_remaining_annotations(client, inst, repo, d, anns, rec, report).await
}

/// The record of a check run this sync has no id of: adopted when it exists on GitHub (created
/// before a crash lost its id: same external_id, with the annotations GitHub says it holds), else
/// created with the first batch of annotations. Returns its index in `records`.
async fn adopt_or_create(
    client: &GithubClient,
    inst: Option<u64>,
    repo: &str,
    d: &DesiredCheck,
    anns: &[CheckAnnotation],
    records: &mut Vec<CheckRunRef>,
    report: &mut SyncReport,
) -> Result<usize, GithubError> {
    let existing = client
        .list_check_runs(inst, repo, &d.head_sha, &d.name)
        .await?;
    if let Some(found) = existing
        .iter()
        .find(|c| c.external_id.as_deref() == Some(d.external_id.as_str()))
    {
        records.push(CheckRunRef {
            name: d.name.clone(),
            step: d.step.clone(),
            run: d.run,
            head_sha: d.head_sha.clone(),
            id: found.id,
            status: found.status.clone(),
            conclusion: found.conclusion.clone(),
            fingerprint: None,
            annotations_sent: found.output.annotations_count,
        });
    } else {
        let batch = annotation_batches(anns, 0).first().copied().unwrap_or(&[]);
        let id = client
            .create_check_run(inst, repo, &check_body(client, d, batch, true))
            .await?;
        report.writes += 1;
        records.push(CheckRunRef {
            name: d.name.clone(),
            step: d.step.clone(),
            run: d.run,
            head_sha: d.head_sha.clone(),
            id,
            status: d.status.as_str().to_owned(),
            conclusion: d.conclusion.map(|c| c.as_str().to_owned()),
            fingerprint: Some(d.fingerprint.clone()),
            annotations_sent: batch.len() as u32,
        });
    }
    Ok(records.len() - 1)
}

/// The rest of the annotations, 50 per update (GitHub appends them). Progress is kept in the
/// record after each request, so a rate limit or an error stops here and the next sync continues
/// with the next batch.
async fn send_remaining_annotations(
    client: &GithubClient,
    inst: Option<u64>,
    repo: &str,
    d: &DesiredCheck,
    anns: &[CheckAnnotation],
    rec: &mut CheckRunRef,
    report: &mut SyncReport,
) -> Result<(), GithubError> {
    let pending: Vec<&[CheckAnnotation]> = annotation_batches(anns, rec.annotations_sent as usize);
    for batch in pending {
        let body = json!({
            "output": {
                "title": d.title,
                "summary": d.summary,
                "annotations": batch,
            }
        });
        client.update_check_run(inst, repo, rec.id, &body).await?;
        report.writes += 1;
        rec.annotations_sent += batch.len() as u32;
    }
    Ok(())
}

async fn cancel(
    client: &GithubClient,
    inst: Option<u64>,
    repo: &str,
    rec: &mut CheckRunRef,
    wf: &QmsWorkflow,
    report: &mut SyncReport,
) -> Result<(), GithubError> {
    let why = if wf.metadata.deletion_timestamp.is_some() {
        "The review was cancelled (pull request closed or review deleted).".to_owned()
    } else if wf.spec.head_sha != rec.head_sha {
        format!(
            "Superseded: the pull request's head is now `{}`.",
            wf.spec.head_sha.get(..7).unwrap_or(&wf.spec.head_sha)
        )
    } else {
        format!(
            "Superseded by run {} of this review.",
            wf.status.as_ref().map(|s| s.run).unwrap_or(0)
        )
    };
    let body = json!({
        "status": "completed",
        "conclusion": "cancelled",
        "completed_at": now_str(client),
        "output": { "title": "Cancelled", "summary": why },
        "actions": [],
    });
    match client.update_check_run(inst, repo, rec.id, &body).await {
        // Nothing left to close.
        Ok(()) | Err(GithubError::Api { status: 404, .. }) => {}
        Err(e) => return Err(e),
    }
    report.writes += 1;
    rec.status = "completed".into();
    rec.conclusion = Some("cancelled".into());
    rec.fingerprint = None;
    Ok(())
}
