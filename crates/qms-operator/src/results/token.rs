//! Per-task credentials of the result endpoint.
//!
//! token = `v1:<namespace>:<workflow>:<hex HMAC-SHA256(key, namespace, workflow, workflow uid,
//! task id)>`. The namespace and workflow name say where to look the task up (they are not
//! secret); the MAC binds the token to one task of one incarnation of the workflow (a workflow
//! deleted and created again under the same name has another uid), so it is valid for that task
//! only. Nothing is stored: any replica holding the operator key verifies it. The Job receives it
//! through a per-task Secret (`secretKeyRef`), never in its spec.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

const VERSION: &str = "v1";

/// What a token names, before it is verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub namespace: String,
    pub workflow: String,
    mac: Vec<u8>,
}

fn mac(key: &[u8], namespace: &str, workflow: &str, uid: &str, task_id: &str) -> HmacSha256 {
    // An HMAC takes keys of any length.
    let mut m = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for part in ["qms-task-result", namespace, workflow, uid, task_id] {
        m.update(part.as_bytes());
        m.update(b"\n");
    }
    m
}

/// The token of task `task_id` of workflow `namespace/workflow` (uid `uid`).
pub fn issue(key: &[u8], namespace: &str, workflow: &str, uid: &str, task_id: &str) -> String {
    let tag = mac(key, namespace, workflow, uid, task_id)
        .finalize()
        .into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("{VERSION}:{namespace}:{workflow}:{hex}")
}

/// Splits a token; `None` when it is not of the form [`issue`] writes.
pub fn parse(token: &str) -> Option<Claims> {
    let mut parts = token.split(':');
    let (v, ns, wf, hex) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if v != VERSION || parts.next().is_some() || ns.is_empty() || wf.is_empty() || hex.len() != 64 {
        return None;
    }
    let mac = (0..32)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some(Claims {
        namespace: ns.to_owned(),
        workflow: wf.to_owned(),
        mac,
    })
}

/// Is `claims` the token of task `task_id` of the workflow with uid `uid`? (Constant time.)
pub fn verify(key: &[u8], claims: &Claims, uid: &str, task_id: &str) -> bool {
    let expected = mac(key, &claims.namespace, &claims.workflow, uid, task_id)
        .finalize()
        .into_bytes();
    expected[..].ct_eq(&claims.mac).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_valid_for_its_task_and_workflow_incarnation_only() {
        let t = issue(b"key", "ns", "wf", "uid-1", "task-a");
        let c = parse(&t).unwrap();
        assert_eq!((c.namespace.as_str(), c.workflow.as_str()), ("ns", "wf"));
        assert!(verify(b"key", &c, "uid-1", "task-a"));
        assert!(!verify(b"key", &c, "uid-1", "task-b"), "another task");
        assert!(
            !verify(b"key", &c, "uid-2", "task-a"),
            "a recreated workflow"
        );
        assert!(
            !verify(b"other", &c, "uid-1", "task-a"),
            "another operator key"
        );
        let forged = parse(&issue(b"key", "ns", "other-wf", "uid-1", "task-a")).unwrap();
        let moved = Claims {
            workflow: "wf".into(),
            ..forged
        };
        assert!(!verify(b"key", &moved, "uid-1", "task-a"));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for t in [
            "",
            "v1:ns:wf",
            "v2:ns:wf:00",
            "v1::wf:0000000000000000000000000000000000000000000000000000000000000000",
            "v1:ns:wf:zz00000000000000000000000000000000000000000000000000000000000000",
            "v1:ns:wf:00:extra",
        ] {
            assert!(parse(t).is_none(), "{t:?}");
        }
    }
}
