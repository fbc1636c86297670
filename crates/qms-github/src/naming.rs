//! Deterministic names, labels and annotations of the QmsWorkflows that webhooks create.
//!
//! One pull request ⇒ one QmsWorkflow, whose name is derived from the repository and PR number
//! only, so a redelivered or concurrent `opened` can never create a second one (the second create
//! gets AlreadyExists, which means "already done").

use sha2::{Digest, Sha256};

/// Finalizer qms-github puts on the workflows it creates: their open check runs are completed as
/// `cancelled` before the object goes away (see `checks::sync`).
pub const FINALIZER: &str = "qms.creo.dev/github-checks";
pub const LABEL_REPOSITORY: &str = "qms.creo.dev/repository-hash";
pub const LABEL_PULL_REQUEST: &str = "qms.creo.dev/pull-request";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// `"true"` on the workflows of merge groups (GitHub merge queue).
pub const LABEL_MERGE_GROUP: &str = "qms.creo.dev/merge-group";
/// `"true"` on the workflows of pushes to a branch (templates with `pushes`).
pub const LABEL_PUSH: &str = "qms.creo.dev/push";
/// Ring of the delivery keys whose change this object already holds (JSON array, newest last).
pub const ANNOTATION_DELIVERIES: &str = "qms.creo.dev/deliveries";
/// The GitHub App installation that delivered the PR (used by the check run sync).
pub const ANNOTATION_INSTALLATION: &str = "qms.creo.dev/github-installation";
/// Who allowed a PR from a fork to run (`/qms ok-to-test`), for the audit trail.
pub const ANNOTATION_OK_TO_TEST: &str = "qms.creo.dev/ok-to-test-by";
/// The last head SHA's PR was from a fork.
pub const ANNOTATION_FORK: &str = "qms.creo.dev/fork";
/// How many delivery keys the ring keeps. GitHub redelivers only on request and the deliveries of
/// one PR are few, so the last 64 cover every realistic redelivery.
pub const DELIVERY_RING: usize = 64;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Stable hash of `owner/name` (case-insensitive, like GitHub's names).
pub fn repository_hash(repository: &str) -> String {
    let digest = Sha256::digest(repository.to_ascii_lowercase().as_bytes());
    hex(&digest[..8])
}

/// `<repo-name>-pr-<n>-<hash6>`: a DNS-1123 label (≤ 63 chars). The hash of `owner/name` keeps
/// `a/app` and `b/app` apart; the readable part is cut to 30 characters.
pub fn workflow_name(repository: &str, pull_request: u64) -> String {
    let hash = &repository_hash(repository)[..6];
    format!("{}-pr-{pull_request}-{hash}", readable_repo(repository))
}

/// `<repo-name>-mg-<n>-<hash8>` for the merge group whose head is pull request `n` at commit
/// `head_sha`: one workflow per merge group (GitHub builds a new group, with a new head SHA, each
/// time the queue changes), so a redelivered `checks_requested` finds the same name.
pub fn merge_group_workflow_name(repository: &str, pull_request: u64, head_sha: &str) -> String {
    let digest =
        Sha256::digest(format!("{}|{}", repository.to_ascii_lowercase(), head_sha).as_bytes());
    let hash = hex(&digest[..4]);
    format!("{}-mg-{pull_request}-{hash}", readable_repo(repository))
}

/// `<repo-name>-push-<hash10>` for the push of `sha` to `branch`: one workflow per pushed commit
/// and branch, so a redelivered push (or a second hook) finds the same name, and the same commit
/// pushed to two configured branches gets one review per branch (each sets its own baseline).
pub fn push_workflow_name(repository: &str, branch: &str, sha: &str) -> String {
    let digest = Sha256::digest(
        format!("push|{}|{branch}|{sha}", repository.to_ascii_lowercase()).as_bytes(),
    );
    format!("{}-push-{}", readable_repo(repository), &hex(&digest[..5]))
}

/// The repository name as a DNS-label fragment of at most 30 characters.
fn readable_repo(repository: &str) -> String {
    let repo = repository.rsplit('/').next().unwrap_or(repository);
    let mut base = String::new();
    for c in repo.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            base.push(c);
        } else if !base.ends_with('-') {
            base.push('-');
        }
    }
    let mut base: String = base.trim_matches('-').chars().take(30).collect();
    while base.ends_with('-') {
        base.pop();
    }
    if base.is_empty() {
        base.push_str("repo");
    }
    base
}

/// The deduplication key of a delivery: GitHub keeps `X-GitHub-Delivery` on redelivery, and two
/// hooks (repository and organisation, or two apps) may carry the same id, so the hook is part of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeliveryKey(String);

impl DeliveryKey {
    pub fn new(target_id: Option<&str>, hook_id: Option<&str>, delivery: &str) -> Self {
        let clean = |s: Option<&str>| -> String {
            s.map(|v| {
                v.chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .take(40)
                    .collect::<String>()
            })
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "-".to_owned())
        };
        Self(format!(
            "{}:{}:{}",
            clean(target_id),
            clean(hook_id),
            clean(Some(delivery))
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A short id derived from the key (for `spec.retry.id`): a redelivery yields the same id, so
    /// even a retry that slipped past deduplication is acted on once.
    pub fn short_id(&self, salt: &str) -> String {
        let digest = Sha256::digest(format!("{}|{salt}", self.0).as_bytes());
        format!("gh-{}", hex(&digest[..8]))
    }
}

/// The delivery keys recorded on an object.
pub fn recorded_deliveries(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
) -> Vec<String> {
    annotations
        .and_then(|a| a.get(ANNOTATION_DELIVERIES))
        .and_then(|v| serde_json::from_str::<Vec<String>>(v).ok())
        .unwrap_or_default()
}

/// `ring` with `key` appended, oldest dropped beyond [`DELIVERY_RING`], as the annotation value.
pub fn push_delivery(mut ring: Vec<String>, key: &DeliveryKey) -> String {
    if !ring.iter().any(|k| k == key.as_str()) {
        ring.push(key.as_str().to_owned());
    }
    let excess = ring.len().saturating_sub(DELIVERY_RING);
    ring.drain(..excess);
    serde_json::to_string(&ring).unwrap_or_else(|_| "[]".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use qms_api::names::is_dns_label;

    #[test]
    fn names_are_deterministic_dns_labels_without_collisions() {
        let a = workflow_name("creo/creo-roo-commander", 12345);
        assert!(a.starts_with("creo-roo-commander-pr-12345-"), "{a}");
        assert_eq!(a, workflow_name("CREO/creo-roo-commander", 12345));
        assert_ne!(a, workflow_name("other/creo-roo-commander", 12345));
        for repo in [
            "o/Weird_Name.With.Dots",
            "o/---",
            "o/a-very-long-repository-name-that-goes-on-and-on-forever",
            "o/ünïcödé",
        ] {
            let n = workflow_name(repo, u64::MAX);
            assert!(is_dns_label(&n), "{repo} → {n}");
        }
    }

    #[test]
    fn merge_group_names_are_per_group_and_apart_from_pull_requests() {
        let sha = "b1e2c3d4a5f60718293a4b5c6d7e8f9012345678";
        let a = merge_group_workflow_name("creo/app", 12, sha);
        assert!(a.starts_with("app-mg-12-"), "{a}");
        assert_eq!(a, merge_group_workflow_name("CREO/app", 12, sha));
        assert_ne!(
            a,
            merge_group_workflow_name("creo/app", 12, "0123456789abcdef")
        );
        assert_ne!(a, merge_group_workflow_name("other/app", 12, sha));
        assert_ne!(a, workflow_name("creo/app", 12));
        let long = merge_group_workflow_name(
            "o/a-very-long-repository-name-that-goes-on-and-on-forever",
            u64::MAX,
            sha,
        );
        assert!(is_dns_label(&long), "{long}");
    }

    #[test]
    fn push_names_are_per_commit_and_branch() {
        let sha = "b1e2c3d4a5f60718293a4b5c6d7e8f9012345678";
        let a = push_workflow_name("creo/app", "main", sha);
        assert!(a.starts_with("app-push-"), "{a}");
        assert_eq!(a, push_workflow_name("CREO/App", "main", sha));
        assert_ne!(a, push_workflow_name("creo/app", "release/1", sha));
        assert_ne!(
            a,
            push_workflow_name("creo/app", "main", "0123456789abcdef")
        );
        assert_ne!(a, push_workflow_name("other/app", "main", sha));
        let long = push_workflow_name(
            "o/a-very-long-repository-name-that-goes-on-and-on-forever",
            "release/x",
            sha,
        );
        assert!(is_dns_label(&long), "{long}");
    }

    #[test]
    fn delivery_ring_is_bounded_and_keeps_newest() {
        let mut ring = Vec::new();
        for i in 0..100 {
            let v = push_delivery(
                ring,
                &DeliveryKey::new(Some("1"), Some("2"), &format!("d{i}")),
            );
            ring = serde_json::from_str(&v).unwrap();
        }
        assert_eq!(ring.len(), DELIVERY_RING);
        assert_eq!(ring.last().unwrap(), "1:2:d99");
        let k = DeliveryKey::new(None, Some("2"), "abc");
        assert_eq!(k.as_str(), "-:2:abc");
        assert_eq!(k.short_id("x"), k.short_id("x"));
        assert!(k.short_id("x").len() <= 63);
    }
}
