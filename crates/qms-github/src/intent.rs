//! Webhook event + what is known (current workflow, template, sender's trust) → the change to make.
//!
//! Pure: no client, no clock (time comes in `Facts::now`). The server gathers the facts, calls
//! [`decide`], and applies the [`Outcome`] atomically together with the delivery key.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use qms_api::{
    Approval, Decision, MergeGroupRef, MergeGroups, Override, PushRef, QmsWorkflow,
    QmsWorkflowSpec, RetryRequest, StepPhase, StepType, TemplateRef, WorkflowTemplate,
    WorkflowTemplateSpec,
};

use crate::commands::{self, Command};
use crate::events::{
    CheckRunEvent, CheckSuiteEvent, Event, IssueCommentEvent, MergeGroupEvent, PullRequest,
    PullRequestEvent, PushEvent,
};
use crate::naming::{self, DeliveryKey};

/// Everything [`decide`] may look at besides the event.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    pub now: DateTime<Utc>,
    pub namespace: &'a str,
    pub run_drafts: bool,
    pub delivery: &'a DeliveryKey,
    /// The workflow the event is about, if it exists.
    pub workflow: Option<&'a QmsWorkflow>,
    /// The workflow's template, or for a new workflow the one selected for the repository.
    pub template: Option<&'a WorkflowTemplate>,
    /// Whether the acting user is trusted (commands, requested actions, fork PR authors);
    /// `None` when it was not looked up.
    pub trusted: Option<bool>,
    /// The pull request, fetched for `/qms ok-to-test` (comments do not carry the head SHA).
    pub pull_request: Option<&'a PullRequest>,
}

#[derive(Clone, Debug)]
pub enum Change {
    Create(Box<QmsWorkflow>),
    /// The workflow's new spec; the store writes the fields that differ (JSON patch guarded by
    /// the resourceVersion it was read at).
    UpdateSpec(Box<QmsWorkflowSpec>),
    /// Cancel: delete the workflow (the operator's finalizer deletes its Jobs, ours completes its
    /// check runs as `cancelled`).
    Delete,
    /// The pull request was merged: merge these values into the base branch's `QualityBaseline`
    /// (idempotent), then delete the workflow as for [`Change::Delete`].
    Merged(Box<BaselineUpdate>),
}

/// Values a merged pull request (or a push's completed run) makes the baseline of
/// `repository@branch`.
#[derive(Clone, Debug, PartialEq)]
pub struct BaselineUpdate {
    pub repository: String,
    pub branch: String,
    pub sha: String,
    /// `None` for a push.
    pub pull_request: Option<u64>,
    /// When the code landed on the branch (merge or push): orders updates.
    pub at: String,
    pub values: Vec<qms_api::BaselineValue>,
}

#[derive(Clone, Debug)]
pub enum Outcome {
    /// Nothing to do (answered 202 with the reason).
    Ignore(String),
    /// Store `change` (with the delivery key), then post `reply` on the PR if any.
    Apply {
        change: Change,
        reply: Option<String>,
        note: String,
    },
    /// Nothing to store; answer the user on the PR.
    Reply(String),
    /// A PR from a fork waiting for `/qms ok-to-test`: shown as check run `QMS` = action_required.
    ForkPending {
        repository: String,
        pull_request: u64,
        head_sha: String,
    },
    /// Cannot be decided now (e.g. the workflow is being deleted); answered 503 so the delivery
    /// shows as failed and can be redelivered.
    Retry(String),
}

/// The template of a pull request of `repository`: the most specific `repositories` match
/// (exact, then `owner/*`, then `*`; ties by name), else the one marked `default` (ties by name).
/// Templates for merge groups only (`mergeGroups: only`) are never used for pull requests.
pub fn select_template<'a, T: Borrow<WorkflowTemplate>>(
    templates: &'a [T],
    repository: &str,
) -> Option<&'a WorkflowTemplate> {
    let for_prs = |t: &WorkflowTemplate| t.spec.merge_groups == MergeGroups::Include;
    best_match(templates, repository, for_prs).or_else(|| default_of(templates, for_prs))
}

/// The template of a merge group of `repository`: a `mergeGroups: only` template matching the
/// repository, else the repository's pull-request template (so the merge group gets the same
/// check names as its pull requests), else a default `only` template, else the default one.
pub fn select_merge_group_template<'a, T: Borrow<WorkflowTemplate>>(
    templates: &'a [T],
    repository: &str,
) -> Option<&'a WorkflowTemplate> {
    let only = |t: &WorkflowTemplate| t.spec.merge_groups == MergeGroups::Only;
    let include = |t: &WorkflowTemplate| t.spec.merge_groups == MergeGroups::Include;
    best_match(templates, repository, only)
        .or_else(|| best_match(templates, repository, include))
        .or_else(|| default_of(templates, only))
        .or_else(|| default_of(templates, include))
}

/// The template of a push to `branch` of `repository`: among the templates whose
/// `pushes.branches` match the branch, the most specific `repositories` match, else a `default`
/// one. `None`: pushes to that branch are not reviewed.
pub fn select_push_template<'a, T: Borrow<WorkflowTemplate>>(
    templates: &'a [T],
    repository: &str,
    branch: &str,
) -> Option<&'a WorkflowTemplate> {
    let for_branch = |t: &WorkflowTemplate| t.spec.reviews_pushes_to(branch);
    best_match(templates, repository, for_branch).or_else(|| default_of(templates, for_branch))
}

fn template_name(t: &WorkflowTemplate) -> String {
    t.metadata.name.clone().unwrap_or_default()
}

/// The most specific `repositories` match among the templates `eligible` accepts.
fn best_match<'a, T: Borrow<WorkflowTemplate>>(
    templates: &'a [T],
    repository: &str,
    eligible: impl Fn(&WorkflowTemplate) -> bool,
) -> Option<&'a WorkflowTemplate> {
    let specificity = |t: &WorkflowTemplateSpec| -> Option<u8> {
        if !t.matches_repository(repository) {
            return None;
        }
        Some(
            if t.repositories
                .iter()
                .any(|p| p.eq_ignore_ascii_case(repository))
            {
                3
            } else if t.repositories.iter().any(|p| p.ends_with("/*")) {
                2
            } else {
                1
            },
        )
    };
    let mut best: Option<(&WorkflowTemplate, u8)> = None;
    for t in templates.iter().map(Borrow::borrow).filter(|t| eligible(t)) {
        if let Some(s) = specificity(&t.spec) {
            let better = match best {
                None => true,
                Some((b, bs)) => s > bs || (s == bs && template_name(t) < template_name(b)),
            };
            if better {
                best = Some((t, s));
            }
        }
    }
    best.map(|(t, _)| t)
}

/// The `default` template (ties by name) among those `eligible` accepts.
fn default_of<T: Borrow<WorkflowTemplate>>(
    templates: &[T],
    eligible: impl Fn(&WorkflowTemplate) -> bool,
) -> Option<&WorkflowTemplate> {
    templates
        .iter()
        .map(Borrow::borrow)
        .filter(|t| t.spec.default && eligible(t))
        .min_by_key(|t| template_name(t))
}

pub fn decide(event: &Event, facts: &Facts<'_>) -> Outcome {
    match event {
        Event::Ping => Outcome::Ignore("pong".into()),
        Event::Other(kind) => Outcome::Ignore(format!("event {kind:?} is not handled")),
        Event::PullRequest(e) => pull_request(e, facts),
        Event::IssueComment(e) => issue_comment(e, facts),
        Event::CheckRun(e) => check_run(e, facts),
        Event::CheckSuite(e) => check_suite(e, facts),
        Event::MergeGroup(e) => merge_group(e, facts),
        Event::Push(e) => push(e, facts),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn being_deleted(wf: &QmsWorkflow) -> bool {
    wf.metadata.deletion_timestamp.is_some()
}

fn pull_request(e: &PullRequestEvent, f: &Facts<'_>) -> Outcome {
    let pr = &e.pull_request;
    match e.action.as_str() {
        "opened" | "reopened" | "ready_for_review" | "synchronize" => {}
        "closed" => {
            return match f.workflow {
                Some(wf) if being_deleted(wf) => Outcome::Ignore("already being cancelled".into()),
                Some(wf) if pr.merged => merged(e, wf, f),
                Some(_) => Outcome::Apply {
                    change: Change::Delete,
                    reply: None,
                    note: "pull request closed: review cancelled".into(),
                },
                None => Outcome::Ignore("pull request closed; no review to cancel".into()),
            };
        }
        other => return Outcome::Ignore(format!("pull_request action {other:?} is not handled")),
    }
    if pr.draft && !f.run_drafts {
        return Outcome::Ignore("draft pull request: waiting for ready_for_review".into());
    }
    if let Some(wf) = f.workflow {
        if being_deleted(wf) {
            return Outcome::Retry(
                "the previous review of this pull request is still being cancelled".into(),
            );
        }
        return update_head(wf, pr);
    }
    if pr.is_from_fork() && f.trusted != Some(true) {
        return Outcome::ForkPending {
            repository: e.repository.full_name.clone(),
            pull_request: e.number,
            head_sha: pr.head.sha.clone(),
        };
    }
    let approved_by = pr
        .is_from_fork()
        .then(|| format!("{} (trusted author)", pr.user.login));
    create(
        e.repository.full_name.as_str(),
        pr,
        e.installation.map(|i| i.id),
        approved_by,
        f,
    )
}

/// A merged pull request: its last COMPLETED values for the merged head SHA become the baseline
/// of its base branch; a review that did not complete for that commit changes nothing.
fn merged(e: &PullRequestEvent, wf: &QmsWorkflow, f: &Facts<'_>) -> Outcome {
    let pr = &e.pull_request;
    // The merge's own time, so `closed` deliveries arriving out of order still end with the
    // last merge's values; the delivery's time only when the payload has none.
    let at = pr
        .merged_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(f.now, |t| t.with_timezone(&Utc));
    let at = rfc3339(at);
    match qms_api::baseline::values_from_merged(wf, &pr.head.sha, &at) {
        Ok(values) if !values.is_empty() => Outcome::Apply {
            note: format!(
                "pull request merged: {} gate values of {} become the baseline of {}@{}",
                values.len(),
                short(&pr.head.sha),
                e.repository.full_name,
                pr.base.ref_
            ),
            change: Change::Merged(Box::new(BaselineUpdate {
                repository: e.repository.full_name.clone(),
                branch: pr.base.ref_.clone(),
                sha: pr.head.sha.clone(),
                pull_request: Some(e.number),
                at,
                values,
            })),
            reply: None,
        },
        Ok(_) => Outcome::Apply {
            change: Change::Delete,
            reply: None,
            note: "pull request merged: no gate values to record; review removed".into(),
        },
        Err(why) => Outcome::Apply {
            change: Change::Delete,
            reply: None,
            note: format!("pull request merged: {why}; review removed"),
        },
    }
}

fn update_head(wf: &QmsWorkflow, pr: &PullRequest) -> Outcome {
    let mut spec = wf.spec.clone();
    spec.head_sha = pr.head.sha.clone();
    spec.base_ref = pr.base.ref_.clone();
    spec.head_ref = pr.head.ref_.clone();
    if spec == wf.spec {
        return Outcome::Ignore(format!("already reviewing {}", short(&pr.head.sha)));
    }
    Outcome::Apply {
        note: format!("head is now {}", short(&pr.head.sha)),
        change: Change::UpdateSpec(Box::new(spec)),
        reply: None,
    }
}

fn create(
    repository: &str,
    pr: &PullRequest,
    installation: Option<u64>,
    ok_to_test_by: Option<String>,
    f: &Facts<'_>,
) -> Outcome {
    let Some(template) = f.template else {
        return Outcome::Ignore(format!(
            "no WorkflowTemplate matches {repository} and none is marked default"
        ));
    };
    if !is_sha(&pr.head.sha) {
        return Outcome::Ignore("the head SHA in the payload is not a commit id".into());
    }
    let name = naming::workflow_name(repository, pr.number);
    let mut labels = BTreeMap::new();
    labels.insert(
        naming::LABEL_REPOSITORY.to_owned(),
        naming::repository_hash(repository),
    );
    labels.insert(naming::LABEL_PULL_REQUEST.to_owned(), pr.number.to_string());
    labels.insert(naming::LABEL_MANAGED_BY.to_owned(), "qms-github".to_owned());
    let mut annotations = BTreeMap::new();
    annotations.insert(
        naming::ANNOTATION_DELIVERIES.to_owned(),
        naming::push_delivery(Vec::new(), f.delivery),
    );
    if let Some(id) = installation {
        annotations.insert(naming::ANNOTATION_INSTALLATION.to_owned(), id.to_string());
    }
    if pr.is_from_fork() {
        annotations.insert(naming::ANNOTATION_FORK.to_owned(), "true".to_owned());
    }
    if let Some(by) = ok_to_test_by {
        annotations.insert(naming::ANNOTATION_OK_TO_TEST.to_owned(), by);
    }
    let spec = QmsWorkflowSpec {
        repository: repository.to_owned(),
        pull_request: pr.number,
        head_sha: pr.head.sha.clone(),
        base_ref: pr.base.ref_.clone(),
        head_ref: pr.head.ref_.clone(),
        template_ref: TemplateRef {
            name: template.metadata.name.clone().unwrap_or_default(),
        },
        approvals: Vec::new(),
        overrides: Vec::new(),
        retry: None,
        merge_group: None,
        push: None,
    };
    let note = format!(
        "review {name} created with template {}",
        template_name(template)
    );
    new_workflow(name, f.namespace, labels, annotations, spec, note)
}

fn issue_comment(e: &IssueCommentEvent, f: &Facts<'_>) -> Outcome {
    if e.action != "created" {
        return Outcome::Ignore(format!("comment {} is not handled", e.action));
    }
    if e.issue.pull_request.is_none() {
        return Outcome::Ignore("comment on an issue, not a pull request".into());
    }
    if e.comment.user.type_.as_deref() == Some("Bot") {
        return Outcome::Ignore("comments of bots are not commands".into());
    }
    let parsed = commands::parse(&e.comment.body);
    if parsed.is_empty() {
        return Outcome::Ignore("no /qms command".into());
    }
    let login = &e.comment.user.login;
    if f.trusted != Some(true) {
        let verbs: Vec<String> = parsed
            .iter()
            .filter_map(|c| c.as_ref().ok())
            .map(|c| format!("`/qms {}`", c.verb()))
            .collect();
        if verbs.is_empty() {
            return Outcome::Reply(errors_text(&parsed));
        }
        return Outcome::Reply(format!(
            "@{login} you are not allowed to use {}: it needs the configured repository permission \
             or an entry in the trusted users/teams. Nothing was changed.",
            verbs.join(", ")
        ));
    }
    let Some(wf) = f.workflow else {
        return comment_without_workflow(e, &parsed, f);
    };
    if being_deleted(wf) {
        return Outcome::Reply(
            "This review is being cancelled; the command was not applied.".into(),
        );
    }
    let mut spec = wf.spec.clone();
    let mut replies = Vec::new();
    for (i, cmd) in parsed.iter().enumerate() {
        match cmd {
            Err(err) => replies.push(err.to_string()),
            Ok(Command::Explain { gate }) => {
                replies.push(crate::explain::reply(gate, wf, f.template, f.now));
            }
            Ok(cmd) => {
                if let Err(msg) = apply_command(cmd, i, login, wf, &mut spec, f) {
                    replies.push(msg);
                }
            }
        }
    }
    let reply = (!replies.is_empty()).then(|| replies.join("\n\n"));
    if spec == wf.spec {
        return match reply {
            Some(r) => Outcome::Reply(r),
            None => Outcome::Ignore("the commands change nothing".into()),
        };
    }
    Outcome::Apply {
        change: Change::UpdateSpec(Box::new(spec)),
        reply,
        note: format!("commands of {login} applied"),
    }
}

fn comment_without_workflow(
    e: &IssueCommentEvent,
    parsed: &[Result<Command, commands::CommandError>],
    f: &Facts<'_>,
) -> Outcome {
    if !parsed.iter().any(|c| c == &Ok(Command::OkToTest)) {
        return Outcome::Reply(
            "There is no QMS review for this pull request yet, so the command was not applied."
                .into(),
        );
    }
    let Some(pr) = f.pull_request else {
        return Outcome::Retry("the pull request could not be read".into());
    };
    if pr.state == "closed" {
        return Outcome::Reply("The pull request is closed; nothing to test.".into());
    }
    if pr.draft && !f.run_drafts {
        return Outcome::Reply(
            "The pull request is a draft: the review starts when it is ready for review.".into(),
        );
    }
    create(
        &e.repository.full_name,
        pr,
        e.installation.map(|i| i.id),
        Some(e.comment.user.login.clone()),
        f,
    )
}

fn errors_text(parsed: &[Result<Command, commands::CommandError>]) -> String {
    parsed
        .iter()
        .filter_map(|c| c.as_ref().err())
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The manual step a decision is for: the step waiting for approval, else the template's (first)
/// manual step.
fn manual_step(wf: &QmsWorkflow, template: Option<&WorkflowTemplate>) -> Option<String> {
    if let Some(status) = &wf.status
        && let Some(current) = &status.current_step
        && status
            .step(current)
            .is_some_and(|s| s.phase == StepPhase::WaitingForApproval)
    {
        return Some(current.clone());
    }
    template?
        .spec
        .steps
        .iter()
        .find(|s| s.type_ == StepType::Manual)
        .map(|s| s.name.clone())
}

/// Applies one command to `spec`; `Err` is the reply explaining why it was not applied.
fn apply_command(
    cmd: &Command,
    index: usize,
    login: &str,
    wf: &QmsWorkflow,
    spec: &mut QmsWorkflowSpec,
    f: &Facts<'_>,
) -> Result<(), String> {
    match cmd {
        Command::Approve { reason } => {
            decide_step(Decision::Approve, reason, login, wf, spec, f, None)
        }
        Command::Reject { reason } => {
            decide_step(Decision::Reject, reason, login, wf, spec, f, None)
        }
        Command::OkToTest => Ok(()),       // the review already runs
        Command::Explain { .. } => Ok(()), // answered by `issue_comment`, changes nothing
        Command::Retry { step } => {
            if let Some(step) = step
                && let Some(t) = f.template
                && t.spec.step(step).is_none()
            {
                return Err(format!(
                    "`/qms retry {step}`: the template has no step {step:?}."
                ));
            }
            spec.retry = Some(RetryRequest {
                id: f.delivery.short_id(&format!("retry-{index}")),
                step: step.clone(),
                by: Some(login.to_owned()),
            });
            Ok(())
        }
        Command::Override { gate, reason, ttl } => {
            if let Some(t) = f.template
                && !t.spec.steps.iter().any(|s| s.quality_gates.contains(gate))
            {
                return Err(format!(
                    "`/qms override {gate}`: no step of the template uses gate {gate:?}."
                ));
            }
            let expires =
                f.now + chrono::Duration::from_std(*ttl).unwrap_or(chrono::Duration::hours(24));
            // Overrides that expired or name an older SHA can never apply again.
            let now = f.now;
            spec.overrides.retain(|o| {
                o.sha == spec.head_sha
                    && DateTime::parse_from_rfc3339(&o.expires).is_ok_and(|e| e > now)
                    && !(o.gate == *gate && o.by == login)
            });
            if spec.overrides.len() >= 64 {
                return Err("Too many active overrides (64); nothing was added.".into());
            }
            spec.overrides.push(Override {
                gate: gate.clone(),
                by: login.to_owned(),
                reason: reason.clone(),
                expires: rfc3339(expires),
                sha: spec.head_sha.clone(),
            });
            Ok(())
        }
    }
}

/// Adds an approval/rejection of the manual step for the current head SHA.
fn decide_step(
    decision: Decision,
    reason: &str,
    login: &str,
    wf: &QmsWorkflow,
    spec: &mut QmsWorkflowSpec,
    f: &Facts<'_>,
    step_hint: Option<&str>,
) -> Result<(), String> {
    let Some(step) = step_hint
        .map(str::to_owned)
        .or_else(|| manual_step(wf, f.template))
    else {
        return Err("This review has no manual step to approve or reject.".into());
    };
    let sha = spec.head_sha.clone();
    let same =
        |a: &Approval| a.step == step && a.sha == sha && a.by == login && a.decision == decision;
    if spec.approvals.iter().any(same) {
        return Ok(());
    }
    // The list is bounded (256): drop the oldest decisions about older SHAs first; they can
    // never count again (Events and the audit log keep them).
    while spec.approvals.len() >= 256 {
        match spec.approvals.iter().position(|a| a.sha != sha) {
            Some(i) => {
                spec.approvals.remove(i);
            }
            None => return Err("Too many decisions on this SHA (256); nothing was added.".into()),
        }
    }
    spec.approvals.push(Approval {
        step,
        decision,
        by: login.to_owned(),
        reason: reason.to_owned(),
        sha,
        at: Some(rfc3339(f.now)),
    });
    Ok(())
}

/// `<namespace>/<name>/<run>/<step>` (step checks) or `<namespace>/<name>/<run>` (summary).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalId {
    pub namespace: String,
    pub name: String,
    pub run: u32,
    pub step: Option<String>,
}

impl ExternalId {
    pub fn parse(s: &str) -> Option<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        let (ns, name, run, step) = match parts.as_slice() {
            [ns, name, run] => (ns, name, run, None),
            [ns, name, run, step] => (ns, name, run, Some((*step).to_owned())),
            _ => return None,
        };
        if ns.is_empty() || name.is_empty() {
            return None;
        }
        Some(Self {
            namespace: (*ns).to_owned(),
            name: (*name).to_owned(),
            run: run.parse().ok()?,
            step: step.filter(|s| !s.is_empty()),
        })
    }

    pub fn render(&self) -> String {
        match &self.step {
            Some(step) => format!("{}/{}/{}/{}", self.namespace, self.name, self.run, step),
            None => format!("{}/{}/{}", self.namespace, self.name, self.run),
        }
    }
}

fn check_run(e: &CheckRunEvent, f: &Facts<'_>) -> Outcome {
    let Some(wf) = f.workflow else {
        return Outcome::Ignore("check run of no known review".into());
    };
    let Some(ext) = e
        .check_run
        .external_id
        .as_deref()
        .and_then(ExternalId::parse)
    else {
        return Outcome::Ignore("check run without a QMS external_id".into());
    };
    if being_deleted(wf) {
        return Outcome::Ignore("the review is being cancelled".into());
    }
    if e.check_run.head_sha != wf.spec.head_sha {
        return Outcome::Reply(format!(
            "@{} that check run is for {}, but the review is now at {}; nothing was changed.",
            e.sender.login,
            short(&e.check_run.head_sha),
            short(&wf.spec.head_sha)
        ));
    }
    match e.action.as_str() {
        "rerequested" => rerun_requested(e, f, wf, &ext),
        "requested_action" => button_pressed(e, f, wf, &ext),
        other => Outcome::Ignore(format!("check_run action {other:?} is not handled")),
    }
}

/// "Re-run" on a check run: GitHub only offers it to users with write access; re-run exactly that
/// step.
fn rerun_requested(
    e: &CheckRunEvent,
    f: &Facts<'_>,
    wf: &QmsWorkflow,
    ext: &ExternalId,
) -> Outcome {
    if let Some(step) = &ext.step
        && f.template.is_some_and(|t| t.spec.step(step).is_none())
    {
        return Outcome::Ignore(format!("the template has no step {step:?}"));
    }
    let mut spec = wf.spec.clone();
    spec.retry = Some(RetryRequest {
        id: f.delivery.short_id("rerequested"),
        step: ext.step.clone(),
        by: Some(e.sender.login.clone()),
    });
    Outcome::Apply {
        change: Change::UpdateSpec(Box::new(spec)),
        reply: None,
        note: format!(
            "re-run of {} requested",
            ext.step.as_deref().unwrap_or("the failed step")
        ),
    }
}

/// The Approve or Reject button of a manual step's check run (trusted senders only).
fn button_pressed(e: &CheckRunEvent, f: &Facts<'_>, wf: &QmsWorkflow, ext: &ExternalId) -> Outcome {
    let decision = match e.requested_action.as_ref().map(|a| a.identifier.as_str()) {
        Some("approve") => Decision::Approve,
        Some("reject") => Decision::Reject,
        other => {
            return Outcome::Ignore(format!("requested action {other:?} is not handled"));
        }
    };
    if f.trusted != Some(true) {
        return Outcome::Reply(format!(
            "@{} you are not allowed to approve or reject this review; nothing was changed.",
            e.sender.login
        ));
    }
    let Some(step) = ext.step.clone() else {
        return Outcome::Ignore("requested action on the summary check".into());
    };
    let is_manual = f
        .template
        .and_then(|t| t.spec.step(&step))
        .is_some_and(|s| s.type_ == StepType::Manual);
    if !is_manual {
        return Outcome::Ignore(format!("step {step:?} is not a manual step"));
    }
    let reason = match decision {
        Decision::Approve => "approved with the check run's Approve button",
        Decision::Reject => "rejected with the check run's Reject button",
    };
    let mut spec = wf.spec.clone();
    if let Err(msg) = decide_step(
        decision,
        reason,
        &e.sender.login,
        wf,
        &mut spec,
        f,
        Some(&step),
    ) {
        return Outcome::Reply(msg);
    }
    if spec == wf.spec {
        return Outcome::Ignore("decision already recorded".into());
    }
    Outcome::Apply {
        change: Change::UpdateSpec(Box::new(spec)),
        reply: None,
        note: format!("{step} {reason} by {}", e.sender.login),
    }
}

fn check_suite(e: &CheckSuiteEvent, f: &Facts<'_>) -> Outcome {
    if e.action != "rerequested" {
        return Outcome::Ignore(format!("check_suite action {:?} is not handled", e.action));
    }
    let Some(wf) = f.workflow else {
        return Outcome::Ignore("check suite of no known review".into());
    };
    if being_deleted(wf) || e.check_suite.head_sha != wf.spec.head_sha {
        return Outcome::Ignore("check suite of an older head SHA".into());
    }
    let mut spec = wf.spec.clone();
    // Without a step the operator re-runs the failed step(s) only (qms-api `RetryRequest`).
    spec.retry = Some(RetryRequest {
        id: f.delivery.short_id("check-suite"),
        step: None,
        by: Some(e.sender.login.clone()),
    });
    Outcome::Apply {
        change: Change::UpdateSpec(Box::new(spec)),
        reply: None,
        note: "re-run of the failed steps requested".into(),
    }
}

/// `merge_group` (GitHub merge queue): `checks_requested` creates the group's review (the
/// template's steps on the group's head SHA, reported under the same check names as on pull
/// requests); `destroyed` (merged, invalidated, dequeued) deletes it, which stops its Jobs and
/// completes its open check runs as `cancelled`.
fn merge_group(e: &MergeGroupEvent, f: &Facts<'_>) -> Outcome {
    match e.action.as_str() {
        "checks_requested" => merge_group_requested(e, f),
        "destroyed" => {
            let reason = e.reason.as_deref().unwrap_or("destroyed");
            match f.workflow {
                Some(wf) if being_deleted(wf) => Outcome::Ignore("already being cancelled".into()),
                Some(_) => Outcome::Apply {
                    change: Change::Delete,
                    reply: None,
                    note: format!("merge group {reason}: review cancelled"),
                },
                None => Outcome::Ignore(format!("merge group {reason}; no review to cancel")),
            }
        }
        other => Outcome::Ignore(format!("merge_group action {other:?} is not handled")),
    }
}

/// `checks_requested`: the group's review, unless it exists or the payload cannot name one.
fn merge_group_requested(e: &MergeGroupEvent, f: &Facts<'_>) -> Outcome {
    let mg = &e.merge_group;
    if let Some(wf) = f.workflow {
        // The name is derived from the head SHA: the same group, asked again.
        return Outcome::Ignore(if being_deleted(wf) {
            "this merge group's review is being cancelled".to_owned()
        } else {
            format!("already reviewing merge group {}", short(&mg.head_sha))
        });
    }
    let repository = e.repository.full_name.as_str();
    let Some(template) = f.template else {
        return Outcome::Ignore(format!(
            "no WorkflowTemplate matches {repository} for merge groups and none is marked default"
        ));
    };
    if !is_sha(&mg.head_sha) || !is_sha(&mg.base_sha) {
        return Outcome::Ignore("the merge group's SHAs in the payload are not commit ids".into());
    }
    let Some(pr) = mg.pull_request() else {
        return Outcome::Ignore(format!(
            "merge group ref {:?} is not gh-readonly-queue/<base>/pr-<number>-<sha>",
            mg.head_ref
        ));
    };
    merge_group_review(e, f, template, pr)
}

/// The new QmsWorkflow of merge group `e` (pull request `pr`) with `template`.
fn merge_group_review(
    e: &MergeGroupEvent,
    f: &Facts<'_>,
    template: &WorkflowTemplate,
    pr: u64,
) -> Outcome {
    let mg = &e.merge_group;
    let repository = e.repository.full_name.as_str();
    let name = naming::merge_group_workflow_name(repository, pr, &mg.head_sha);
    let labels = BTreeMap::from([
        (
            naming::LABEL_REPOSITORY.to_owned(),
            naming::repository_hash(repository),
        ),
        (naming::LABEL_MERGE_GROUP.to_owned(), "true".to_owned()),
        (naming::LABEL_MANAGED_BY.to_owned(), "qms-github".to_owned()),
    ]);
    let mut annotations = BTreeMap::from([(
        naming::ANNOTATION_DELIVERIES.to_owned(),
        naming::push_delivery(Vec::new(), f.delivery),
    )]);
    if let Some(i) = e.installation {
        annotations.insert(naming::ANNOTATION_INSTALLATION.to_owned(), i.id.to_string());
    }
    let branch = |r: &str| r.strip_prefix("refs/heads/").unwrap_or(r).to_owned();
    let spec = QmsWorkflowSpec {
        repository: repository.to_owned(),
        pull_request: pr,
        head_sha: mg.head_sha.clone(),
        base_ref: branch(&mg.base_ref),
        head_ref: branch(&mg.head_ref),
        template_ref: TemplateRef {
            name: template_name(template),
        },
        approvals: Vec::new(),
        overrides: Vec::new(),
        retry: None,
        merge_group: Some(MergeGroupRef {
            head_ref: mg.head_ref.clone(),
            base_sha: mg.base_sha.clone(),
        }),
        push: None,
    };
    let note = format!(
        "merge group review {name} created with template {}",
        template_name(template)
    );
    new_workflow(name, f.namespace, labels, annotations, spec, note)
}

/// `push` to a branch a template reviews pushes to (`spec.pushes.branches`): creates the review
/// of the pushed commit (one per commit and branch, so a redelivery changes nothing), reported
/// under the template's check names on that commit. When it reaches COMPLETED its gate values
/// become the branch's baseline, ordered by the push's time (`checks::reconcile`). Deleted refs,
/// tags and branches no template reviews are ignored, each with its reason.
fn push(e: &PushEvent, f: &Facts<'_>) -> Outcome {
    let repository = e.repository.repository.full_name.as_str();
    if e.is_deletion() {
        return Outcome::Ignore(format!("push deleted {}: nothing to review", e.ref_));
    }
    let Some(branch) = e.branch() else {
        return Outcome::Ignore(format!(
            "push to {:?} is not to a branch (tags are not reviewed)",
            e.ref_
        ));
    };
    if let Some(wf) = f.workflow {
        return Outcome::Ignore(if being_deleted(wf) {
            "this push's review is being removed".to_owned()
        } else {
            format!(
                "already reviewing the push of {} to {branch}",
                short(&e.after)
            )
        });
    }
    let Some(template) = f.template.filter(|t| t.spec.reviews_pushes_to(branch)) else {
        return Outcome::Ignore(format!(
            "no WorkflowTemplate reviews pushes to {repository}@{branch} (spec.pushes.branches)"
        ));
    };
    if !is_sha(&e.after) {
        return Outcome::Ignore("the pushed SHA in the payload is not a commit id".into());
    }
    let name = naming::push_workflow_name(repository, branch, &e.after);
    let labels = BTreeMap::from([
        (
            naming::LABEL_REPOSITORY.to_owned(),
            naming::repository_hash(repository),
        ),
        (naming::LABEL_PUSH.to_owned(), "true".to_owned()),
        (naming::LABEL_MANAGED_BY.to_owned(), "qms-github".to_owned()),
    ]);
    let mut annotations = BTreeMap::from([(
        naming::ANNOTATION_DELIVERIES.to_owned(),
        naming::push_delivery(Vec::new(), f.delivery),
    )]);
    if let Some(i) = e.installation {
        annotations.insert(naming::ANNOTATION_INSTALLATION.to_owned(), i.id.to_string());
    }
    let before =
        (is_sha(&e.before) && !e.before.bytes().all(|b| b == b'0')).then(|| e.before.clone());
    let spec = QmsWorkflowSpec {
        repository: repository.to_owned(),
        pull_request: 0,
        head_sha: e.after.clone(),
        base_ref: branch.to_owned(),
        head_ref: branch.to_owned(),
        template_ref: TemplateRef {
            name: template_name(template),
        },
        approvals: Vec::new(),
        overrides: Vec::new(),
        retry: None,
        merge_group: None,
        push: Some(PushRef {
            before,
            pushed_at: rfc3339(e.pushed_at().unwrap_or(f.now)),
            pusher: e
                .pusher
                .as_ref()
                .and_then(|p| p.name.clone())
                .map(|n| n.chars().take(255).collect()),
            forced: e.forced,
        }),
    };
    let note = format!(
        "push review {name} of {} on {branch} created with template {}",
        short(&e.after),
        template_name(template)
    );
    new_workflow(name, f.namespace, labels, annotations, spec, note)
}

pub fn is_sha(s: &str) -> bool {
    (7..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// A new workflow with the operator's finalizer, written as one create (pull request or merge group).
fn new_workflow(
    name: String,
    namespace: &str,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    spec: QmsWorkflowSpec,
    note: String,
) -> Outcome {
    let wf = QmsWorkflow {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            annotations: Some(annotations),
            finalizers: Some(vec![naming::FINALIZER.to_owned()]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    };
    Outcome::Apply {
        change: Change::Create(Box::new(wf)),
        reply: None,
        note,
    }
}
