//! Property tests: the parsers facing the network never panic, whatever the input, and the
//! truncation always yields valid UTF-8 within the limit.

use proptest::prelude::*;
use qms_github::checks::render::truncate_utf8;
use qms_github::intent::{Facts, decide};
use qms_github::naming::DeliveryKey;
use qms_github::secret::Secret;
use qms_github::{commands, events, signature};
use serde_json::Value;

const EVENTS: [&str; 7] = [
    "pull_request",
    "issue_comment",
    "check_run",
    "check_suite",
    "ping",
    "push",
    "",
];
const FIXTURES: [(&str, &str); 6] = [
    ("pull_request", "pull_request.opened.json"),
    ("pull_request", "pull_request.opened.fork.json"),
    ("issue_comment", "issue_comment.created.json"),
    ("check_run", "check_run.requested_action.json"),
    ("check_run", "check_run.rerequested.json"),
    ("check_suite", "check_suite.rerequested.json"),
];

/// Replaces the value at a pseudo-random path of `v` with `with` (mutation fuzzing of real payloads).
fn mutate(v: &mut Value, choice: u64, with: Value) {
    match v {
        Value::Object(m) if !m.is_empty() && !choice.is_multiple_of(3) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = keys[(choice % keys.len() as u64) as usize].clone();
            if let Some(child) = m.get_mut(&k) {
                mutate(child, choice / (keys.len() as u64 + 1), with);
            }
        }
        Value::Array(a) if !a.is_empty() && !choice.is_multiple_of(3) => {
            let i = (choice % a.len() as u64) as usize;
            mutate(&mut a[i], choice / 2, with);
        }
        _ => *v = with,
    }
}

fn any_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        ".{0,40}".prop_map(Value::from),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn signature_verify_never_panics(header in proptest::option::of(".{0,100}"), body in proptest::collection::vec(any::<u8>(), 0..512), secret in ".{0,20}") {
        let secrets = [Secret::new(secret)];
        let _ = signature::verify(&secrets, header.as_deref(), &body);
        // A well-formed but wrong signature is refused.
        let forged = format!("sha256={}", "0".repeat(64));
        prop_assert!(signature::verify(&secrets, Some(&forged), &body).is_err());
    }

    #[test]
    fn signature_round_trips(body in proptest::collection::vec(any::<u8>(), 0..512), secret in "[a-zA-Z0-9]{1,32}") {
        let s = Secret::new(secret);
        let sig = signature::sign(&s, &body);
        prop_assert!(signature::verify(std::slice::from_ref(&s), Some(&sig), &body).is_ok());
        let mut tampered = body.clone();
        tampered.push(b'x');
        prop_assert!(signature::verify(&[s], Some(&sig), &tampered).is_err());
    }

    #[test]
    fn event_parser_never_panics_on_bytes(kind in 0usize..EVENTS.len(), body in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = events::parse(EVENTS[kind], &body);
    }

    #[test]
    fn event_parser_and_decide_never_panic_on_mutated_payloads(which in 0usize..FIXTURES.len(), choice in any::<u64>(), with in any_json()) {
        let (kind, file) = FIXTURES[which];
        let mut v = crate::common::fixture(file);
        mutate(&mut v, choice, with);
        if let Ok(ev) = events::parse(kind, v.to_string().as_bytes()) {
            let key = DeliveryKey::new(None, None, "d");
            let t = crate::common::template();
            let wf = crate::common::workflow(crate::common::SHA1);
            for trusted in [None, Some(true), Some(false)] {
                let f = Facts { now: crate::common::t0(), namespace: crate::common::NS, run_drafts: false, delivery: &key,
                    workflow: Some(&wf), template: Some(&t), trusted, pull_request: None };
                let _ = decide(&ev, &f);
                let f = Facts { workflow: None, ..f };
                let _ = decide(&ev, &f);
            }
        }
    }

    #[test]
    fn command_parser_never_panics(body in "(.{0,30}\n?){0,8}", verb in prop_oneof![Just("approve"), Just("reject"), Just("retry"), Just("override"), Just("ok-to-test"), Just("")], args in ".{0,60}") {
        let _ = commands::parse(&body);
        let parsed = commands::parse(&format!("/qms {verb} {args}"));
        prop_assert!(parsed.len() <= 1);
    }

    #[test]
    fn truncation_is_valid_utf8_within_the_limit(s in ".{0,400}", max in 0usize..600) {
        let out = truncate_utf8(&s, max);
        prop_assert!(out.len() <= max);
        prop_assert!(s.starts_with(out.split("\n\n… (truncated").next().unwrap_or("")));
        if s.len() <= max { prop_assert_eq!(&out, &s); }
    }
}
