//! Errors of a reconcile and their low-cardinality category (used in metrics, logs and for the
//! per-object backoff).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelValue;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("building the Job of task {job}: {message}")]
    BuildJob { job: String, message: String },
    #[error("the Agent {agent} of task {job} does not exist")]
    MissingAgent { agent: String, job: String },
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// Adding or removing the finalizer failed. Its JSON patch `test`s the finalizer list the
    /// cache showed, so a stale cache answers 422 (or 409): that is a conflict to retry soon, not
    /// an invalid request to back off from for minutes.
    #[error("writing the finalizer: {0}")]
    FinalizerWrite(kube::Error),
    #[error("serializing status: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The Kubernetes side of the GitHub check-run sync (GitHub's own errors only requeue it).
    #[error("storing the check runs: {0}")]
    GithubStore(qms_github::store::StoreError),
    #[error("{0}")]
    Other(String),
}

/// The fixed set of error categories.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ErrorCategory {
    /// 409 on a write: somebody (or our own older view) changed the object.
    conflict,
    /// 429: the API server asks us to slow down.
    throttled,
    /// 5xx, timeouts, connection errors.
    unavailable,
    /// 403.
    forbidden,
    /// 400/422: we sent something invalid.
    invalid,
    /// A referenced object (agent) is missing.
    missing_reference,
    /// Anything else (serialization, finalizer bookkeeping).
    internal,
}

impl ErrorCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::conflict => "conflict",
            Self::throttled => "throttled",
            Self::unavailable => "unavailable",
            Self::forbidden => "forbidden",
            Self::invalid => "invalid",
            Self::missing_reference => "missing_reference",
            Self::internal => "internal",
        }
    }

    /// First retry delay and cap of the per-object exponential backoff.
    pub fn backoff(self) -> (Duration, Duration) {
        match self {
            Self::conflict => (Duration::from_millis(100), Duration::from_secs(5)),
            Self::throttled => (Duration::from_secs(1), Duration::from_secs(60)),
            Self::unavailable => (Duration::from_millis(250), Duration::from_secs(30)),
            Self::forbidden | Self::invalid => (Duration::from_secs(5), Duration::from_secs(300)),
            Self::missing_reference => (Duration::from_secs(2), Duration::from_secs(60)),
            Self::internal => (Duration::from_secs(1), Duration::from_secs(120)),
        }
    }
}

pub fn kube_category(e: &kube::Error) -> ErrorCategory {
    match e {
        kube::Error::Api(s) => match s.code {
            409 => ErrorCategory::conflict,
            429 => ErrorCategory::throttled,
            403 | 401 => ErrorCategory::forbidden,
            400 | 404 | 422 => ErrorCategory::invalid,
            c if c >= 500 => ErrorCategory::unavailable,
            _ => ErrorCategory::internal,
        },
        kube::Error::SerdeError(_) => ErrorCategory::internal,
        _ => ErrorCategory::unavailable,
    }
}

impl Error {
    pub fn category(&self) -> ErrorCategory {
        match self {
            Error::Kube(e) => kube_category(e),
            Error::FinalizerWrite(e) => match api_code(e) {
                Some(409 | 422) => ErrorCategory::conflict,
                _ => kube_category(e),
            },
            Error::BuildJob { .. } => ErrorCategory::invalid,
            Error::MissingAgent { .. } => ErrorCategory::missing_reference,
            Error::GithubStore(e) => match e {
                qms_github::store::StoreError::Kube(e) => kube_category(e),
                qms_github::store::StoreError::Conflict => ErrorCategory::conflict,
                qms_github::store::StoreError::Patch(_) => ErrorCategory::internal,
            },
            Error::Finalizer(_) | Error::Serialize(_) | Error::Other(_) => ErrorCategory::internal,
        }
    }
}

/// Status code of an API error, if it is one.
pub fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure("x", "Invalid").with_code(code),
        ))
    }

    #[test]
    fn a_stale_finalizer_patch_is_a_conflict_not_an_invalid_request() {
        assert_eq!(
            Error::FinalizerWrite(api(422)).category(),
            ErrorCategory::conflict
        );
        assert_eq!(
            Error::FinalizerWrite(api(409)).category(),
            ErrorCategory::conflict
        );
        assert_eq!(
            Error::FinalizerWrite(api(403)).category(),
            ErrorCategory::forbidden
        );
        assert_eq!(Error::Kube(api(422)).category(), ErrorCategory::invalid);
    }
}
