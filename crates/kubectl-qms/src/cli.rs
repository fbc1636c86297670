//! The command line: `kubectl qms <command>` (kubectl hands everything after `qms` to this binary,
//! so the connection flags kubectl users expect are parsed here).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "kubectl qms",
    bin_name = "kubectl qms",
    version,
    about = "Status of QMS reviews and people's decisions on them (approve, reject, retry, override)",
    long_about = "Status of QMS reviews and people's decisions on them.\n\n\
        A review is named by its QmsWorkflow name or by its pull request number. Decisions are \
        written into the workflow's spec exactly as the documented raw patches do \
        (spec.approvals, spec.overrides, spec.retry), bound to the current head SHA."
)]
pub struct Cli {
    /// Namespace of the reviews (default: the kubeconfig context's namespace).
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Path to the kubeconfig (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Only reviews of this repository (`owner/name`) when naming one by its PR number.
    #[arg(long, global = true)]
    pub repo: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Steps, tasks, gates (values and thresholds) and what the review waits for; without a
    /// review, one line per review.
    Status {
        /// Workflow name or pull request number.
        review: Option<String>,
    },
    /// Approve the manual step for the current head SHA.
    Approve(Decide),
    /// Reject the manual step for the current head SHA.
    Reject(Decide),
    /// Re-run the failed step, or STEP.
    Retry {
        review: String,
        step: Option<String>,
        #[command(flatten)]
        who: Who,
    },
    /// Let a failing gate pass, for the current head SHA only, until --expires.
    Override {
        review: String,
        gate: String,
        #[arg(long)]
        reason: String,
        /// A duration from now (24h, 90m) or an RFC 3339 time.
        #[arg(long)]
        expires: String,
        #[command(flatten)]
        sha: Sha,
        #[command(flatten)]
        who: Who,
    },
    /// What a gate checks; with a review, its result there and the overrides in force.
    Explain {
        gate: String,
        review: Option<String>,
    },
    /// The logs of a step's agent Jobs (latest attempt of the current run).
    Logs {
        review: String,
        step: String,
        /// Only this agent's task.
        #[arg(long)]
        agent: Option<String>,
        /// That attempt instead of the latest.
        #[arg(long)]
        attempt: Option<u32>,
    },
}

#[derive(Debug, clap::Args)]
pub struct Decide {
    pub review: String,
    /// The step to decide (default: the step waiting for approval, else the template's manual step).
    #[arg(long)]
    pub step: Option<String>,
    /// Why (kept in the audit trail; required to reject).
    #[arg(long, default_value = "")]
    pub reason: String,
    #[command(flatten)]
    pub sha: Sha,
    #[command(flatten)]
    pub who: Who,
}

#[derive(Debug, clap::Args)]
pub struct Sha {
    /// Refuse unless this is (a 7+ digit prefix of) the current head SHA.
    #[arg(long)]
    pub sha: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct Who {
    /// Who decides, as recorded in `by` (default: the kubeconfig context's user).
    #[arg(long = "as", value_name = "USER")]
    pub as_user: Option<String>,
}
