//! `kubectl qms`: a kubectl plugin (krew convention: the binary `kubectl-qms` on PATH) to read QMS
//! reviews and record people's decisions on them. Pure decisions are in [`decide`] and
//! [`render`]; [`cluster`] does the reads and the guarded writes.
#![forbid(unsafe_code)]

pub mod cli;
pub mod cluster;
pub mod decide;
pub mod error;
pub mod render;

use std::fmt::Write;

use chrono::Utc;
use qms_api::{Decision, TaskPhase};

use cli::{Cli, Command};
use cluster::{Cluster, Connect};
use error::Error;

fn by(cluster: &Cluster, who: &cli::Who) -> Result<String, Error> {
    who.as_user
        .clone()
        .or_else(|| cluster.user.clone())
        .filter(|u| !u.is_empty())
        .ok_or(Error::NoUser)
}

/// Runs one command; the text to print on success.
pub async fn run(cli: Cli) -> Result<String, Error> {
    let cluster = Cluster::connect(&Connect {
        kubeconfig: cli.kubeconfig.clone(),
        context: cli.context.clone(),
        namespace: cli.namespace.clone(),
    })
    .await?;
    let repo = cli.repo.as_deref();
    let now = Utc::now();
    match cli.command {
        Command::Status { review: None } => Ok(render::list(&cluster.list_workflows().await?)),
        Command::Status {
            review: Some(review),
        } => {
            let (wf, _) = cluster.workflow(&review, repo).await?;
            Ok(render::status(&wf, now))
        }
        Command::Approve(d) => decide_cmd(&cluster, repo, Decision::Approve, d).await,
        Command::Reject(d) => decide_cmd(&cluster, repo, Decision::Reject, d).await,
        Command::Retry { review, step, who } => {
            let by = by(&cluster, &who)?;
            let (wf, _) = cluster.workflow(&review, repo).await?;
            let template = cluster.template(&wf.spec.template_ref.name).await?;
            if let Some(step) = &step {
                decide::check_step(&wf, template.as_ref(), step)?;
            }
            let id = decide::retry_id(&wf, now, rand::random());
            let name = decide::name_of(&wf);
            let stored = cluster
                .merge_spec(&name, &decide::retry_patch(&id, step.as_deref(), &by))
                .await?;
            Ok(format!(
                "retry {id} of {} requested on {name} by {by}\nWaiting for: {}\n",
                step.as_deref().unwrap_or("the failed step"),
                render::waiting_for(&stored)
            ))
        }
        Command::Override {
            review,
            gate,
            reason,
            expires,
            sha,
            who,
        } => {
            let by = by(&cluster, &who)?;
            let expires = decide::parse_expires(&expires, now)?;
            let (wf, _) = cluster.workflow(&review, repo).await?;
            let template = cluster.template(&wf.spec.template_ref.name).await?;
            decide::check_gate(&wf, template.as_ref(), &gate)?;
            let head = decide::head_sha(&wf, sha.sha.as_deref())?;
            let entry = decide::override_entry(&gate, &by, &reason, expires, &head);
            let name = decide::name_of(&wf);
            cluster
                .append_guarded(&name, "overrides", &head, serde_json::to_value(&entry)?)
                .await?;
            Ok(format!(
                "override of {gate} on {name} for {} recorded by {by}, until {}\n",
                decide::short(&head),
                entry.expires
            ))
        }
        Command::Explain { gate, review } => {
            let found = cluster.gate(&gate).await?;
            let wf = match &review {
                Some(r) => Some(cluster.workflow(r, repo).await?.0),
                None => None,
            };
            if found.is_none() && wf.is_none() {
                return Err(Error::NotFound {
                    kind: "QualityGate",
                    name: gate,
                    namespace: cluster.namespace.clone(),
                    hint: " (kubectl get qualitygates lists them)",
                });
            }
            Ok(render::explain(&gate, found.as_ref(), wf.as_ref(), now))
        }
        Command::Logs {
            review,
            step,
            agent,
            attempt,
        } => logs(&cluster, repo, &review, &step, agent.as_deref(), attempt).await,
    }
}

async fn decide_cmd(
    cluster: &Cluster,
    repo: Option<&str>,
    decision: Decision,
    d: cli::Decide,
) -> Result<String, Error> {
    let by = by(cluster, &d.who)?;
    if decision == Decision::Reject && d.reason.trim().is_empty() {
        return Err(Error::ReasonRequired);
    }
    let (wf, _) = cluster.workflow(&d.review, repo).await?;
    let template = cluster.template(&wf.spec.template_ref.name).await?;
    let head = decide::head_sha(&wf, d.sha.sha.as_deref())?;
    let step = decide::approval_step(&wf, template.as_ref(), d.step.as_deref())?;
    let entry = decide::approval(step.clone(), decision, &by, &d.reason, &head, Utc::now());
    let name = decide::name_of(&wf);
    let verb = match decision {
        Decision::Approve => "approved",
        Decision::Reject => "rejected",
    };
    if decide::already_decided(&wf, &entry) {
        return Ok(format!(
            "{step} of {name} was already {verb} by {by} for {}; nothing was changed\n",
            decide::short(&head)
        ));
    }
    let stored = cluster
        .append_guarded(&name, "approvals", &head, serde_json::to_value(&entry)?)
        .await?;
    Ok(format!(
        "{step} of {name} {verb} by {by} for {}\nWaiting for: {}\n",
        decide::short(&head),
        render::waiting_for(&stored)
    ))
}

async fn logs(
    cluster: &Cluster,
    repo: Option<&str>,
    review: &str,
    step_name: &str,
    agent: Option<&str>,
    attempt: Option<u32>,
) -> Result<String, Error> {
    let (wf, _) = cluster.workflow(review, repo).await?;
    let name = decide::name_of(&wf);
    let template = cluster.template(&wf.spec.template_ref.name).await?;
    decide::check_step(&wf, template.as_ref(), step_name)?;
    let step = wf
        .status
        .as_ref()
        .and_then(|s| s.step(step_name))
        .cloned()
        .unwrap_or_default();
    let attempt = attempt.unwrap_or(step.attempt);
    let tasks: Vec<_> = step
        .tasks
        .iter()
        .filter(|t| t.attempt == attempt)
        .filter(|t| agent.is_none_or(|a| t.agent == a))
        .collect();
    if tasks.is_empty() {
        return Err(Error::NoTasks {
            workflow: name,
            step: step_name.to_owned(),
            detail: format!(
                " (attempt {attempt}{}; phase {:?})",
                agent.map(|a| format!(", agent {a}")).unwrap_or_default(),
                step.phase
            ),
        });
    }
    let mut out = String::new();
    for t in tasks {
        let pods = cluster.job_pods(&t.job_name).await?;
        if pods.is_empty() {
            let _ = writeln!(
                out,
                "==> {} (Job {}, {:?}) <==\n(no pod left: the Job or its pods were deleted{})",
                t.agent,
                t.job_name,
                t.phase,
                if t.phase == TaskPhase::Pending {
                    "; or not started yet"
                } else {
                    ""
                }
            );
            continue;
        }
        for pod in pods {
            let pod_name = pod.metadata.name.unwrap_or_default();
            let _ = writeln!(
                out,
                "==> {} (Job {}, pod {pod_name}, {:?}) <==",
                t.agent, t.job_name, t.phase
            );
            let text = cluster.pod_logs(&pod_name).await?;
            out.push_str(&text);
            if !text.ends_with('\n') && !text.is_empty() {
                out.push('\n');
            }
        }
    }
    Ok(out)
}
