//! What `kubectl qms` tells the user when it cannot do what was asked. Every message names the
//! object, step, gate or value at fault and says that nothing was changed.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no {kind} {name:?} in namespace {namespace:?}{hint}")]
    NotFound {
        kind: &'static str,
        name: String,
        namespace: String,
        hint: &'static str,
    },
    #[error(
        "no QmsWorkflow for pull request #{pr} in namespace {namespace:?} (kubectl qms status lists the reviews)"
    )]
    NoReviewForPr { pr: u64, namespace: String },
    #[error(
        "pull request #{pr} has several reviews in namespace {namespace:?}: {names}; name one, or pass --repo"
    )]
    AmbiguousPr {
        pr: u64,
        namespace: String,
        names: String,
    },
    #[error(
        "stale SHA: {workflow} is at {head}, not {given}; nothing was changed (a decision only counts for the current head)"
    )]
    StaleSha {
        workflow: String,
        given: String,
        head: String,
    },
    #[error(
        "the head of {workflow} moved from {from} to {to} while recording; nothing was changed (run the command again to act on {to})"
    )]
    HeadMoved {
        workflow: String,
        from: String,
        to: String,
    },
    #[error("{workflow} has no step {step:?} (steps: {})", known.join(", "))]
    NoSuchStep {
        workflow: String,
        step: String,
        known: Vec<String>,
    },
    #[error("{workflow} evaluates no gate {gate:?} (gates: {})", known.join(", "))]
    NoSuchGate {
        workflow: String,
        gate: String,
        known: Vec<String>,
    },
    #[error(
        "{workflow} has no manual step waiting for a decision, and its template names none; pass --step"
    )]
    NoManualStep { workflow: String },
    #[error(
        "invalid --expires {input:?}: {reason} (expected a duration such as 24h or an RFC 3339 time)"
    )]
    BadExpiry { input: String, reason: String },
    #[error("step {step:?} of {workflow} has no task in the current run{detail}")]
    NoTasks {
        workflow: String,
        step: String,
        detail: String,
    },
    #[error("the spec of {workflow} kept changing while recording; nothing was changed: try again")]
    Contended { workflow: String },
    #[error("reject needs --reason (it is shown to the author); nothing was changed")]
    ReasonRequired,
    #[error("no user to record: the kubeconfig context names none; pass --as")]
    NoUser,
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("the API server sent a QmsWorkflow this plugin cannot read: {0}")]
    Decode(#[from] serde_json::Error),
}
