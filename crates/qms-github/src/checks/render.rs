//! Workflow status → the check runs GitHub should show, with their Markdown output. Pure.
//!
//! One check run per started step (`QMS / <step>`) and one summary (`QMS`), on the head SHA of the
//! current run. Nothing here knows what was already sent; `sync` compares.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use qms_api::{
    GateResult, GateVerdict, QmsWorkflow, QmsWorkflowStatus, StepPhase, StepStatus, StepType,
    TaskPhase, WorkflowState, WorkflowTemplateSpec,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::intent::ExternalId;

/// GitHub refuses `output.summary` / `output.text` longer than this many bytes.
pub const MAX_OUTPUT_BYTES: usize = 65_535;
/// GitHub takes at most 50 annotations per create/update request.
pub const ANNOTATIONS_PER_REQUEST: usize = 50;
pub const SUMMARY_CHECK: &str = "QMS";
const TRUNCATED: &str = "\n\n… (truncated: GitHub keeps at most 65,535 bytes)";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Queued,
    InProgress,
    Completed,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conclusion {
    Success,
    Failure,
    Neutral,
    Cancelled,
    Skipped,
    TimedOut,
    ActionRequired,
}

impl Conclusion {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Neutral => "neutral",
            Self::Cancelled => "cancelled",
            Self::Skipped => "skipped",
            Self::TimedOut => "timed_out",
            Self::ActionRequired => "action_required",
        }
    }
}

/// A button on a check run (`requested_action` event when clicked). GitHub limits: label 20,
/// description 40, identifier 20 characters; at most 3 actions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckAction {
    pub label: String,
    pub description: String,
    pub identifier: String,
}

/// An annotation as GitHub's check run API takes it (and as agents report it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckAnnotation {
    pub path: String,
    pub start_line: u64,
    pub end_line: u64,
    /// `notice`, `warning` or `failure`.
    pub annotation_level: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

impl CheckAnnotation {
    /// Within GitHub's limits (message ≤ 64 KB, title ≤ 255 chars, a known level).
    pub fn sanitized(&self) -> CheckAnnotation {
        let level = match self.annotation_level.as_str() {
            "notice" | "warning" | "failure" => self.annotation_level.clone(),
            _ => "warning".to_owned(),
        };
        CheckAnnotation {
            path: self.path.clone(),
            start_line: self.start_line.max(1),
            end_line: self.end_line.max(self.start_line.max(1)),
            annotation_level: level,
            message: truncate_utf8(&self.message, 64 * 1024 - 64),
            title: self.title.as_ref().map(|t| t.chars().take(255).collect()),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct DesiredCheck {
    pub name: String,
    pub step: Option<String>,
    pub run: u32,
    pub head_sha: String,
    pub external_id: String,
    pub status: CheckStatus,
    pub conclusion: Option<Conclusion>,
    pub title: String,
    pub summary: String,
    pub text: Option<String>,
    pub actions: Vec<CheckAction>,
    pub details_url: Option<String>,
    /// Hash of everything above that is written to GitHub.
    pub fingerprint: String,
}

#[derive(Clone, Debug)]
pub struct RenderConfig {
    pub details_url_template: Option<String>,
    /// Annotations shown on one check run at most (failures first); the rest are counted in its
    /// summary. See `GithubConfig::max_annotations_per_check_run`.
    pub max_annotations_per_check_run: usize,
}

/// Default of [`RenderConfig::max_annotations_per_check_run`]: enough for any review to show
/// every failure, few enough that a check run page stays usable (20 requests of 50).
pub const DEFAULT_MAX_ANNOTATIONS_PER_CHECK_RUN: usize = 1_000;

impl Default for RenderConfig {
    fn default() -> Self {
        Self {
            details_url_template: None,
            max_annotations_per_check_run: DEFAULT_MAX_ANNOTATIONS_PER_CHECK_RUN,
        }
    }
}

/// The check runs `wf` should have now. Empty while the operator has not started a run, when the
/// spec moved to a new SHA the operator has not picked up yet, and when the workflow is deleted:
/// in those cases every open check run is to be completed as `cancelled`.
pub fn desired_checks(
    wf: &QmsWorkflow,
    template: Option<&WorkflowTemplateSpec>,
    cfg: &RenderConfig,
) -> Vec<DesiredCheck> {
    let Some(status) = &wf.status else {
        return Vec::new();
    };
    let Some(head) = status.head_sha.clone() else {
        return Vec::new();
    };
    if wf.metadata.deletion_timestamp.is_some() || head != wf.spec.head_sha {
        return Vec::new();
    }
    let ctx = Ctx {
        wf,
        namespace: wf.metadata.namespace.clone().unwrap_or_default(),
        name: wf.metadata.name.clone().unwrap_or_default(),
        run: status.run,
        head,
        cfg,
    };
    let mut out = vec![summary_check(&ctx, template)];
    for step in ordered_steps(wf, template) {
        let step_type = template.and_then(|t| t.step(&step.name)).map(|s| s.type_);
        if let Some(check) = step_check(&ctx, step, step_type) {
            out.push(check);
        }
    }
    out
}

struct Ctx<'a> {
    wf: &'a QmsWorkflow,
    namespace: String,
    name: String,
    run: u32,
    head: String,
    cfg: &'a RenderConfig,
}

impl Ctx<'_> {
    fn state(&self) -> WorkflowState {
        self.wf.status.as_ref().map(|s| s.state).unwrap_or_default()
    }

    fn external_id(&self, step: Option<&str>) -> String {
        ExternalId {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            run: self.run,
            step: step.map(str::to_owned),
        }
        .render()
    }

    fn details_url(&self, step: Option<&str>) -> Option<String> {
        let t = self.cfg.details_url_template.as_ref()?;
        Some(
            t.replace("{namespace}", &self.namespace)
                .replace("{name}", &self.name)
                .replace("{run}", &self.run.to_string())
                .replace("{step}", step.unwrap_or(""))
                .replace("{repository}", &self.wf.spec.repository)
                .replace("{pr}", &self.wf.spec.pull_request.to_string())
                .replace("{sha}", &self.head),
        )
    }

    fn header(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "**Review** `{}/{}` of {} · run {} · commit `{}` · state **{}**\n",
            self.namespace,
            self.name,
            self.subject(),
            self.run,
            short(&self.head),
            self.state()
        );
    }

    /// `owner/repo#12` for a pull request; the merge group's branch for a merge group.
    fn subject(&self) -> String {
        let spec = &self.wf.spec;
        if spec.push.is_some() {
            return format!(
                "the push to `{}` of {}",
                one_line(&spec.base_ref).replace('`', "'"),
                spec.repository
            );
        }
        match &spec.merge_group {
            Some(mg) => format!(
                "merge group `{}` of {} (queued up to #{})",
                one_line(
                    mg.head_ref
                        .strip_prefix("refs/heads/")
                        .unwrap_or(&mg.head_ref)
                )
                .replace('`', "'"),
                spec.repository,
                spec.pull_request
            ),
            None => format!("{}#{}", spec.repository, spec.pull_request),
        }
    }

    fn link(&self, out: &mut String, step: Option<&str>) {
        if let Some(url) = self.details_url(step) {
            let _ = writeln!(out, "\n[Details]({url})");
        }
    }
}

/// Template order; steps in status but not in the template (template changed) come last.
fn ordered_steps<'a>(
    wf: &'a QmsWorkflow,
    template: Option<&WorkflowTemplateSpec>,
) -> Vec<&'a StepStatus> {
    let Some(status) = &wf.status else {
        return Vec::new();
    };
    let mut out: Vec<&StepStatus> = Vec::new();
    if let Some(t) = template {
        for ts in &t.steps {
            if let Some(s) = status.step(&ts.name) {
                out.push(s);
            }
        }
    }
    for s in &status.steps {
        if !out.iter().any(|o| o.name == s.name) {
            out.push(s);
        }
    }
    out
}

fn step_check(
    ctx: &Ctx<'_>,
    step: &StepStatus,
    step_type: Option<StepType>,
) -> Option<DesiredCheck> {
    let (status, conclusion) = step_outcome(ctx.state(), step)?;
    let waiting = step.phase == StepPhase::WaitingForApproval;
    let (passed, total) = gate_counts(&step.gates);
    let title = format!(
        "{}: {}{}",
        step.name,
        phase_word(step.phase, conclusion),
        if total > 0 {
            format!(" ({passed}/{total} gates passed)")
        } else {
            String::new()
        }
    );
    let summary = step_summary(ctx, step, step_type, status, conclusion);
    let text = step_text(step);
    let actions = if waiting {
        approval_actions()
    } else {
        Vec::new()
    };
    Some(finish(DesiredCheck {
        name: format!("{SUMMARY_CHECK} / {}", step.name),
        step: Some(step.name.clone()),
        run: ctx.run,
        head_sha: ctx.head.clone(),
        external_id: ctx.external_id(Some(&step.name)),
        status,
        conclusion,
        title,
        summary,
        text,
        actions,
        details_url: ctx.details_url(Some(&step.name)),
        fingerprint: String::new(),
    }))
}

/// A step's check-run status and conclusion in a run in `state`; `None` while it has no check run
/// yet (pending in a running review).
fn step_outcome(
    state: WorkflowState,
    step: &StepStatus,
) -> Option<(CheckStatus, Option<Conclusion>)> {
    let open = matches!(step.phase, StepPhase::Running | StepPhase::Backoff);
    Some(match step.phase {
        // A step the run ended before: it still gets a concluded check run, so a check that is
        // required never waits for a step that will not run. Fail closed: only a completed run
        // can mark it skipped (GitHub counts skipped as passing); otherwise it is cancelled.
        StepPhase::Pending if state.is_terminal() => (
            CheckStatus::Completed,
            Some(if state == WorkflowState::Completed {
                Conclusion::Skipped
            } else {
                Conclusion::Cancelled
            }),
        ),
        StepPhase::Pending => return None,
        // The run ended while this step was open (ERROR, timeout): it must still end with a
        // conclusion, never stay "in progress" forever.
        _ if open && state.is_terminal() => (
            CheckStatus::Completed,
            Some(if state == WorkflowState::Error {
                Conclusion::Failure
            } else {
                Conclusion::Cancelled
            }),
        ),
        StepPhase::Running | StepPhase::Backoff => (CheckStatus::InProgress, None),
        StepPhase::WaitingForApproval => (CheckStatus::Completed, Some(Conclusion::ActionRequired)),
        StepPhase::Succeeded => (
            CheckStatus::Completed,
            Some(
                if step.gates.iter().any(|g| g.verdict == GateVerdict::Warning) {
                    Conclusion::Neutral
                } else {
                    Conclusion::Success
                },
            ),
        ),
        StepPhase::Failed => (
            CheckStatus::Completed,
            Some(if timed_out(step) {
                Conclusion::TimedOut
            } else {
                Conclusion::Failure
            }),
        ),
        StepPhase::Skipped => (CheckStatus::Completed, Some(Conclusion::Skipped)),
    })
}

/// The Markdown summary of a step's check run.
fn step_summary(
    ctx: &Ctx<'_>,
    step: &StepStatus,
    step_type: Option<StepType>,
    status: CheckStatus,
    conclusion: Option<Conclusion>,
) -> String {
    let state = ctx.state();
    let waiting = step.phase == StepPhase::WaitingForApproval;
    let mut summary = String::new();
    // A completed step's output does not mention the (moving) workflow state, so finishing later
    // steps does not rewrite it.
    if status != CheckStatus::Completed || waiting {
        ctx.header(&mut summary);
    } else {
        let _ = writeln!(
            summary,
            "**Review** `{}/{}` · run {} · commit `{}`\n",
            ctx.namespace,
            ctx.name,
            ctx.run,
            short(&ctx.head)
        );
    }
    let _ = writeln!(
        summary,
        "**Step** `{}`{} · {} · attempt {}",
        step.name,
        step_type
            .map(|t| format!(" ({})", type_word(t)))
            .unwrap_or_default(),
        phase_word(step.phase, conclusion),
        step.attempt
    );
    if step.phase == StepPhase::Pending {
        let _ = writeln!(
            summary,
            "\nThis step did not run: the review ended **{state}** before it started."
        );
    }
    if waiting {
        let _ = writeln!(
            summary,
            "\n**Waiting for a decision.** Use the *Approve* / *Reject* buttons above, or comment \
             `/qms approve [reason]` or `/qms reject <reason>` on the pull request."
        );
    }
    gate_table(&mut summary, &step.gates);
    agents(&mut summary, step);
    ctx.link(&mut summary, Some(&step.name));
    summary
}

/// The Approve / Reject buttons of a step waiting for a decision.
fn approval_actions() -> Vec<CheckAction> {
    vec![
        CheckAction {
            label: "Approve".into(),
            description: "Approve this step for this commit".into(),
            identifier: "approve".into(),
        },
        CheckAction {
            label: "Reject".into(),
            description: "Reject this step for this commit".into(),
            identifier: "reject".into(),
        },
    ]
}

fn summary_check(ctx: &Ctx<'_>, template: Option<&WorkflowTemplateSpec>) -> DesiredCheck {
    let state = ctx.state();
    let status_ref = ctx.wf.status.as_ref();
    let all_gates: Vec<&GateResult> = status_ref
        .map(|s| s.steps.iter().flat_map(|st| st.gates.iter()).collect())
        .unwrap_or_default();
    let (status, conclusion) = summary_outcome(state, &all_gates);
    let passed = all_gates.iter().filter(|g| g.verdict.passes()).count();
    let title = format!(
        "{}{}",
        state,
        if all_gates.is_empty() {
            String::new()
        } else {
            format!(" — {passed}/{} gates passed", all_gates.len())
        }
    );
    let mut summary = String::new();
    ctx.header(&mut summary);
    let steps = ordered_steps(ctx.wf, template);
    steps_table(&mut summary, &steps);
    let owned: Vec<GateResult> = all_gates.iter().map(|g| (*g).clone()).collect();
    gate_table(&mut summary, &owned);
    for s in &steps {
        agents(&mut summary, s);
    }
    ctx.link(&mut summary, None);
    let text = status_ref.map(history_text).unwrap_or_default();
    finish(DesiredCheck {
        name: SUMMARY_CHECK.to_owned(),
        step: None,
        run: ctx.run,
        head_sha: ctx.head.clone(),
        external_id: ctx.external_id(None),
        status,
        conclusion,
        title,
        summary,
        text: (!text.is_empty()).then_some(text),
        actions: Vec::new(),
        details_url: ctx.details_url(None),
        fingerprint: String::new(),
    })
}

/// The summary check run's status and conclusion: the review's state; a warning makes a
/// completed review neutral.
fn summary_outcome(
    state: WorkflowState,
    all_gates: &[&GateResult],
) -> (CheckStatus, Option<Conclusion>) {
    match state {
        WorkflowState::Initialized => (CheckStatus::Queued, None),
        WorkflowState::Completed => (
            CheckStatus::Completed,
            Some(
                if all_gates.iter().any(|g| g.verdict == GateVerdict::Warning) {
                    Conclusion::Neutral
                } else {
                    Conclusion::Success
                },
            ),
        ),
        s if s.is_failure() => (CheckStatus::Completed, Some(Conclusion::Failure)),
        _ => (CheckStatus::InProgress, None),
    }
}

/// One row per step: phase, attempt, gates passed.
fn steps_table(summary: &mut String, steps: &[&StepStatus]) {
    if steps.is_empty() {
        return;
    }
    let _ = writeln!(
        summary,
        "| Step | Phase | Attempt | Gates |\n|---|---|---|---|"
    );
    for s in steps {
        let (p, t) = gate_counts(&s.gates);
        let _ = writeln!(
            summary,
            "| {} | {} | {} | {p}/{t} |",
            cell(&s.name),
            phase_word(s.phase, None),
            s.attempt
        );
    }
}

/// The run's state transitions, oldest first (empty without any).
fn history_text(status: &QmsWorkflowStatus) -> String {
    let mut text = String::new();
    if status.history.is_empty() {
        return text;
    }
    let _ = writeln!(text, "### History\n");
    for t in &status.history {
        let _ = writeln!(
            text,
            "- {} {} → {}: {}",
            t.at,
            t.from,
            t.to,
            one_line(&t.reason)
        );
    }
    text
}

/// Cuts outputs to GitHub's limits and computes the fingerprint.
fn finish(mut c: DesiredCheck) -> DesiredCheck {
    c.title = c.title.chars().take(255).collect();
    c.summary = truncate_utf8(&c.summary, MAX_OUTPUT_BYTES);
    c.text = c.text.map(|t| truncate_utf8(&t, MAX_OUTPUT_BYTES));
    let mut h = Sha256::new();
    for part in [
        c.status.as_str(),
        c.conclusion.map(Conclusion::as_str).unwrap_or(""),
        &c.title,
        &c.summary,
        c.text.as_deref().unwrap_or(""),
        c.details_url.as_deref().unwrap_or(""),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for a in &c.actions {
        h.update(a.identifier.as_bytes());
        h.update([0]);
    }
    c.fingerprint = h.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    c
}

fn timed_out(step: &StepStatus) -> bool {
    let last = step.tasks.iter().map(|t| t.attempt).max().unwrap_or(0);
    step.tasks
        .iter()
        .any(|t| t.attempt == last && t.phase == TaskPhase::TimedOut)
}

fn gate_counts(gates: &[GateResult]) -> (usize, usize) {
    (
        gates.iter().filter(|g| g.verdict.passes()).count(),
        gates.len(),
    )
}

fn gate_table(out: &mut String, gates: &[GateResult]) {
    if gates.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n### Quality gates\n\n| Gate | Metric | Value | Operator | Threshold | Verdict | Blocking |\n|---|---|---|---|---|---|---|"
    );
    for g in gates {
        let num = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_else(|| "—".into());
        let unit = g
            .unit
            .and_then(|u| serde_json::to_value(u).ok())
            .and_then(|v| v.as_str().map(|s| format!(" {s}")))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {} | {}{} | {} | {} | {} | {} |",
            cell(&g.name),
            cell(&g.metric),
            num(g.value),
            unit,
            g.operator
                .map(|o| o.symbol())
                .unwrap_or("—")
                .replace('|', "\\|"),
            num(g.threshold),
            verdict_word(g.verdict),
            if g.blocking { "yes" } else { "no" }
        );
    }
    baselines(out, gates);
}

/// Under the gates table: the base-branch baseline each gate used (or why not), and carried
/// values, so a reviewer sees what the ratchet compared against.
fn baselines(out: &mut String, gates: &[GateResult]) {
    let mut first = true;
    for g in gates {
        let Some(b) = &g.baseline else { continue };
        if first {
            out.push('\n');
            first = false;
        }
        let sha = b.sha.get(..7).unwrap_or(&b.sha);
        let what = if g.carried {
            "carried forward from base-branch"
        } else {
            "baseline"
        };
        let used = if b.used {
            "used".to_owned()
        } else {
            format!("not used: {}", one_line(b.note.as_deref().unwrap_or("")))
        };
        let _ = writeln!(
            out,
            "- `{}` {what} `{sha}` = {} (at {}), tolerance {}: {used}",
            cell(&g.name),
            b.value,
            cell(&b.at),
            b.tolerance
        );
    }
}

fn agents(out: &mut String, step: &StepStatus) {
    let with_result: Vec<_> = step
        .tasks
        .iter()
        .filter(|t| t.result.is_some() || !t.message.is_empty())
        .collect();
    if with_result.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n### Agents ({})\n", step.name);
    for t in with_result {
        let summary = t
            .result
            .as_ref()
            .map(|r| r.summary.as_str())
            .unwrap_or(&t.message);
        let _ = writeln!(
            out,
            "- **{}** (attempt {}, {:?}): {}",
            one_line(&t.agent),
            t.attempt,
            t.phase,
            one_line(summary)
        );
    }
}

fn step_text(step: &StepStatus) -> Option<String> {
    let mut text = String::new();
    if !step.message.is_empty() {
        let _ = writeln!(text, "{}\n", step.message);
    }
    for g in step.gates.iter().filter(|g| !g.message.is_empty()) {
        let _ = writeln!(text, "- gate `{}`: {}", g.name, one_line(&g.message));
    }
    for t in step.tasks.iter().filter(|t| !t.message.is_empty()) {
        let _ = writeln!(
            text,
            "- task `{}` ({}): {}",
            t.job_name,
            t.agent,
            one_line(&t.message)
        );
    }
    (!text.is_empty()).then_some(text)
}

fn phase_word(phase: StepPhase, conclusion: Option<Conclusion>) -> &'static str {
    match (phase, conclusion) {
        (_, Some(Conclusion::Cancelled)) => "cancelled",
        (StepPhase::Running | StepPhase::Backoff, Some(Conclusion::Failure)) => "error",
        (StepPhase::Pending, Some(Conclusion::Skipped)) => "not run",
        (StepPhase::Pending, _) => "pending",
        (StepPhase::Running, _) => "running",
        (StepPhase::Backoff, _) => "waiting to retry",
        (StepPhase::WaitingForApproval, _) => "waiting for approval",
        (StepPhase::Succeeded, Some(Conclusion::Neutral)) => "passed with warnings",
        (StepPhase::Succeeded, _) => "passed",
        (StepPhase::Failed, Some(Conclusion::TimedOut)) => "timed out",
        (StepPhase::Failed, _) => "failed",
        (StepPhase::Skipped, _) => "skipped",
    }
}

fn type_word(t: StepType) -> &'static str {
    match t {
        StepType::Parallel => "parallel",
        StepType::Sequential => "sequential",
        StepType::Conditional => "conditional",
        StepType::Manual => "manual",
    }
}

fn verdict_word(v: GateVerdict) -> &'static str {
    match v {
        GateVerdict::Passed => "✅ passed",
        GateVerdict::Failed => "❌ failed",
        GateVerdict::Warning => "⚠️ warning",
        GateVerdict::Overridden => "🔓 overridden",
        GateVerdict::Error => "❌ error",
    }
}

/// Table cells: no line breaks, escaped pipes (agents' text must not break the table).
fn cell(s: &str) -> String {
    one_line(s).replace('|', "\\|")
}

fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// `s` cut to at most `max` bytes on a UTF-8 character boundary, ending with a marker saying so.
pub fn truncate_utf8(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let marker = if TRUNCATED.len() < max { TRUNCATED } else { "" };
    let mut cut = max - marker.len();
    while cut > 0 && !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{marker}", &s[..cut])
}

/// Rank of an annotation level: failures first, then warnings, then notices.
fn level_rank(level: &str) -> u8 {
    match level {
        "failure" => 0,
        "warning" => 1,
        _ => 2,
    }
}

/// What a completed step check run shows of its annotations: at most `cap`, failures first, then
/// warnings, then notices (each level in the agents' order), and how many of each were left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnnotationPlan {
    /// In the order they are sent; `annotations_sent` in the status counts a prefix of this.
    pub send: Vec<CheckAnnotation>,
    /// Left out by the cap: failures, warnings, notices.
    pub omitted: [usize; 3],
}

impl AnnotationPlan {
    pub fn new(all: &[CheckAnnotation], cap: usize) -> Self {
        let mut sorted: Vec<CheckAnnotation> = all.iter().map(CheckAnnotation::sanitized).collect();
        // Stable: within a level the agents' order is kept, so the plan is the same on every
        // sync and after a restart.
        sorted.sort_by_key(|a| level_rank(&a.annotation_level));
        let rest = sorted.split_off(cap.min(sorted.len()));
        let mut omitted = [0; 3];
        for a in &rest {
            omitted[level_rank(&a.annotation_level) as usize] += 1;
        }
        Self {
            send: sorted,
            omitted,
        }
    }

    pub fn omitted_total(&self) -> usize {
        self.omitted.iter().sum()
    }
}

/// `d` with its annotations: none until the check run is completed (the set is final only then,
/// so the order, and with it `annotations_sent`, never shifts); then the [`AnnotationPlan`] and,
/// when the cap left some out, a line at the end of the summary saying how many and where to see
/// them.
pub fn attach_annotations(
    d: DesiredCheck,
    all: &[CheckAnnotation],
    cap: usize,
) -> (DesiredCheck, AnnotationPlan) {
    if d.status != CheckStatus::Completed || all.is_empty() {
        return (d, AnnotationPlan::default());
    }
    let plan = AnnotationPlan::new(all, cap);
    let omitted = plan.omitted_total();
    if omitted == 0 {
        return (d, plan);
    }
    let [f, w, n] = plan.omitted;
    let workflow = ExternalId::parse(&d.external_id)
        .map(|e| format!("{}/{}", e.namespace, e.name))
        .unwrap_or_default();
    let mut note = format!(
        "\n\n**{omitted} more annotation{}** ({f} failures, {w} warnings, {n} notices) are not \
         shown here: a check run shows at most {cap}, failures first. See them all with \
         `kubectl describe qmsworkflow {workflow}` (each task's full result is in the \
         ConfigMap it names, `qms-result-<task>`)",
        if omitted == 1 { "" } else { "s" }
    );
    match &d.details_url {
        Some(url) => {
            let _ = write!(note, " or in the [details]({url}).");
        }
        None => note.push('.'),
    }
    let mut d = d;
    // The note survives the byte limit: the summary gives way instead.
    d.summary = format!(
        "{}{note}",
        truncate_utf8(&d.summary, MAX_OUTPUT_BYTES.saturating_sub(note.len()))
    );
    (finish(d), plan)
}

/// The annotations still to send, in requests of at most 50.
pub fn annotation_batches(all: &[CheckAnnotation], already_sent: usize) -> Vec<&[CheckAnnotation]> {
    all.get(already_sent..)
        .unwrap_or(&[])
        .chunks(ANNOTATIONS_PER_REQUEST)
        .collect()
}

/// Annotations of each step, as the operator passes them (key: step name).
pub type StepAnnotations = BTreeMap<String, Vec<CheckAnnotation>>;
