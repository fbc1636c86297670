use super::*;
use chrono::TimeZone;
use qms_api::{Baseline, GateType, GradualEnforcement};

fn spec(op: Operator, threshold: f64, unit: Option<MetricUnit>) -> QualityGateSpec {
    QualityGateSpec {
        step: None,
        type_: GateType::Threshold,
        metric: Some("m".into()),
        operator: Some(op),
        threshold: Some(threshold),
        unit,
        blocking: true,
        timeout: None,
        retry: 0,
        escalation: None,
        baseline: None,
        gradual: None,
        on_missing: qms_api::OnMissing::Fail,
        carry_forward: None,
    }
}

fn rep(value: f64, unit: Option<MetricUnit>) -> Reported {
    Reported {
        task: "job-a".into(),
        value,
        unit,
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 8, 17, 6, 0, 0).unwrap()
}

struct Env {
    overrides: Vec<Override>,
    baselines: BTreeMap<String, BaselineValue>,
}

impl Env {
    fn new() -> Self {
        Self {
            overrides: vec![],
            baselines: BTreeMap::new(),
        }
    }
    fn ctx(&self) -> GateContext<'_> {
        GateContext {
            now: now(),
            head_sha: "abc1234",
            overrides: &self.overrides,
            baselines: &self.baselines,
        }
    }
    /// Records `value` as gate `gate`'s base-branch value, `days_old` days before `now()`.
    fn base(&mut self, gate: &str, value: f64, days_old: i64) {
        self.baselines.insert(
            gate.into(),
            BaselineValue {
                gate: gate.into(),
                metric: "m".into(),
                value,
                unit: None,
                sha: "feedbeefcafe0123".into(),
                at: time::format(now() - chrono::Duration::days(days_old)),
                pull_request: Some(7),
            },
        );
    }
    fn eval(&self, s: Option<&QualityGateSpec>, reports: &[Reported]) -> GateResult {
        evaluate("g", s, reports, &[], &self.ctx())
    }
}

#[test]
fn every_operator_compares_as_documented() {
    use Operator::*;
    let cases = [
        (Gte, 80.0, 80.0, true),
        (Gte, 79.9, 80.0, false),
        (Gt, 80.0, 80.0, false),
        (Gt, 80.1, 80.0, true),
        (Lte, 0.0, 0.0, true),
        (Lte, 1.0, 0.0, false),
        (Lt, 0.0, 0.0, false),
        (Lt, -1.0, 0.0, true),
        (Eq, 0.1 + 0.2, 0.3, true),
        (Eq, 0.31, 0.3, false),
        (Ne, 0.1 + 0.2, 0.3, false),
        (Ne, 1.0, 0.3, true),
    ];
    for (op, v, t, want) in cases {
        assert_eq!(compare(v, op, t), want, "{v} {} {t}", op.symbol());
        let r = Env::new().eval(Some(&spec(op, t, None)), &[rep(v, None)]);
        let expected = if want {
            GateVerdict::Passed
        } else {
            GateVerdict::Failed
        };
        assert_eq!(r.verdict, expected, "{}", r.message);
        assert_eq!(r.threshold, Some(t));
    }
}

#[test]
fn units_are_converted_and_mismatches_fail_closed() {
    let env = Env::new();
    let g = spec(Operator::Gte, 80.0, Some(MetricUnit::Percentage));
    let r = env.eval(Some(&g), &[rep(0.85, Some(MetricUnit::Ratio))]);
    assert_eq!((r.verdict, r.value), (GateVerdict::Passed, Some(85.0)));
    let r = env.eval(Some(&g), &[rep(85.0, Some(MetricUnit::Count))]);
    assert_eq!(r.verdict, GateVerdict::Error);
    assert!(r.message.contains("cannot be compared"), "{}", r.message);
    let lat = spec(Operator::Lte, 1.0, Some(MetricUnit::Seconds));
    let r = env.eval(Some(&lat), &[rep(1500.0, Some(MetricUnit::Milliseconds))]);
    assert_eq!((r.verdict, r.value), (GateVerdict::Failed, Some(1.5)));
}

#[test]
fn the_worst_reported_value_counts() {
    let env = Env::new();
    let reports = [rep(90.0, None), rep(70.0, None), rep(85.0, None)];
    let r = env.eval(Some(&spec(Operator::Gte, 80.0, None)), &reports);
    assert_eq!((r.verdict, r.value), (GateVerdict::Failed, Some(70.0)));
    let r = env.eval(Some(&spec(Operator::Lte, 80.0, None)), &reports);
    assert_eq!(r.value, Some(90.0));
    let r = env.eval(Some(&spec(Operator::Eq, 85.0, None)), &reports);
    assert_eq!(r.value, Some(70.0));
    let r = env.eval(Some(&spec(Operator::Ne, 84.0, None)), &reports);
    assert_eq!(r.value, Some(85.0));
}

#[test]
fn fail_closed_on_missing_unknown_incomplete_and_non_finite() {
    let env = Env::new();
    let g = spec(Operator::Gte, 80.0, None);
    let missing = evaluate("g", Some(&g), &[], &["job-b".into()], &env.ctx());
    assert_eq!(missing.verdict, GateVerdict::Error);
    assert!(missing.message.contains("job-b"), "{}", missing.message);
    assert!(!missing.verdict.passes());
    assert_eq!(
        env.eval(None, &[rep(1.0, None)]).verdict,
        GateVerdict::Error
    );
    let mut incomplete = g.clone();
    incomplete.operator = None;
    assert_eq!(
        env.eval(Some(&incomplete), &[rep(99.0, None)]).verdict,
        GateVerdict::Error
    );
    assert_eq!(
        env.eval(Some(&g), &[rep(f64::NAN, None)]).verdict,
        GateVerdict::Error
    );
    assert_eq!(
        env.eval(Some(&g), &[rep(f64::INFINITY, None)]).verdict,
        GateVerdict::Error
    );
    let mut bad_threshold = g;
    bad_threshold.threshold = Some(f64::NAN);
    assert_eq!(
        env.eval(Some(&bad_threshold), &[rep(99.0, None)]).verdict,
        GateVerdict::Error
    );
}

#[test]
fn advisory_gates_warn_and_pass() {
    let mut g = spec(Operator::Gte, 80.0, None);
    g.blocking = false;
    let r = Env::new().eval(Some(&g), &[rep(10.0, None)]);
    assert_eq!(r.verdict, GateVerdict::Warning);
    assert!(r.verdict.passes() && !r.blocking);
}

#[test]
fn overrides_need_the_head_sha_and_a_future_expiry() {
    let g = spec(Operator::Gte, 80.0, None);
    let o = |sha: &str, expires: &str| Override {
        gate: "g".into(),
        by: "carol".into(),
        reason: "hotfix".into(),
        expires: expires.into(),
        sha: sha.into(),
    };
    let mut env = Env::new();
    env.overrides = vec![o("abc1234", "2025-08-17T07:00:00Z")];
    let r = env.eval(Some(&g), &[rep(10.0, None)]);
    assert_eq!(r.verdict, GateVerdict::Overridden);
    assert!(
        r.message.contains("carol") && r.message.contains("hotfix"),
        "{}",
        r.message
    );
    // Also lets an undecidable gate through: an explicit human decision.
    assert_eq!(env.eval(Some(&g), &[]).verdict, GateVerdict::Overridden);
    for bad in [
        o("fff9999", "2025-08-17T07:00:00Z"),
        o("abc1234", "2025-08-17T06:00:00Z"),
        o("abc1234", "tomorrow"),
    ] {
        env.overrides = vec![bad];
        assert_eq!(
            env.eval(Some(&g), &[rep(10.0, None)]).verdict,
            GateVerdict::Failed
        );
    }
}

#[test]
fn gradual_enforcement_ramps_linearly() {
    let mut g = spec(Operator::Gte, 80.0, None);
    g.gradual = Some(GradualEnforcement {
        from: 60.0,
        start: "2025-08-17T05:00:00Z".into(),
        end: "2025-08-17T07:00:00Z".into(),
    });
    let r = Env::new().eval(Some(&g), &[rep(70.0, None)]);
    assert_eq!(r.threshold, Some(70.0));
    assert_eq!(r.verdict, GateVerdict::Passed);
    g.gradual.as_mut().unwrap().end = "2025-08-17T05:30:00Z".into();
    assert_eq!(
        Env::new().eval(Some(&g), &[rep(70.0, None)]).threshold,
        Some(80.0)
    );
    g.gradual.as_mut().unwrap().start = "2025-08-17T06:30:00Z".into();
    g.gradual.as_mut().unwrap().end = "2025-08-17T07:30:00Z".into();
    assert_eq!(
        Env::new().eval(Some(&g), &[rep(70.0, None)]).threshold,
        Some(60.0)
    );
    g.gradual.as_mut().unwrap().start = "soon".into();
    assert_eq!(
        Env::new().eval(Some(&g), &[rep(70.0, None)]).verdict,
        GateVerdict::Error
    );
}

#[test]
fn baseline_ratchet_raises_but_never_lowers_the_bar() {
    let mut env = Env::new();
    let mut g = spec(Operator::Gte, 80.0, None);
    g.baseline = Some(Baseline {
        enabled: true,
        tolerance: 1.0,
        max_age: None,
    });
    assert_eq!(env.eval(Some(&g), &[rep(85.0, None)]).threshold, Some(80.0));
    env.base("g", 90.0, 1);
    let r = env.eval(Some(&g), &[rep(85.0, None)]);
    assert_eq!((r.threshold, r.verdict), (Some(89.0), GateVerdict::Failed));
    env.base("g", 50.0, 1);
    assert_eq!(env.eval(Some(&g), &[rep(85.0, None)]).threshold, Some(80.0));
    let mut lower = spec(Operator::Lte, 500.0, None);
    lower.baseline = g.baseline.clone();
    env.base("g", 200.0, 1);
    assert_eq!(
        env.eval(Some(&lower), &[rep(100.0, None)]).threshold,
        Some(201.0)
    );
    let mut eq = spec(Operator::Eq, 1.0, None);
    eq.baseline = g.baseline.clone();
    assert_eq!(env.eval(Some(&eq), &[rep(1.0, None)]).threshold, Some(1.0));
    g.baseline.as_mut().unwrap().enabled = false;
    env.base("g", 90.0, 1);
    assert_eq!(env.eval(Some(&g), &[rep(85.0, None)]).threshold, Some(80.0));
}

fn ratcheted(max_age: Option<&str>) -> QualityGateSpec {
    let mut g = spec(Operator::Gte, 80.0, None);
    g.baseline = Some(Baseline {
        enabled: true,
        tolerance: 1.0,
        max_age: max_age.map(|d| qms_api::KubeDuration::parse(d).unwrap()),
    });
    g
}

#[test]
fn a_ratcheted_result_names_the_baseline_sha_value_and_tolerance() {
    let mut env = Env::new();
    let g = ratcheted(None);
    let r = env.eval(Some(&g), &[rep(85.0, None)]);
    assert!(r.message.contains("no baseline recorded"), "{}", r.message);
    env.base("g", 90.0, 1);
    let r = env.eval(Some(&g), &[rep(85.0, None)]);
    assert_eq!(r.verdict, GateVerdict::Failed);
    assert!(
        r.message.contains("baseline feedbee = 90, tolerance 1"),
        "{}",
        r.message
    );
    let b = r.baseline.expect("baseline named in the result");
    assert!(b.used);
    assert_eq!(
        (b.sha.as_str(), b.value, b.tolerance),
        ("feedbeefcafe0123", 90.0, 1.0)
    );
}

#[test]
fn a_baseline_older_than_max_age_is_not_used_and_the_result_says_so() {
    let mut env = Env::new();
    let g = ratcheted(Some("168h"));
    env.base("g", 90.0, 6);
    let r = env.eval(Some(&g), &[rep(85.0, None)]);
    assert_eq!((r.threshold, r.verdict), (Some(89.0), GateVerdict::Failed));
    env.base("g", 90.0, 8);
    let r = env.eval(Some(&g), &[rep(85.0, None)]);
    assert_eq!((r.threshold, r.verdict), (Some(80.0), GateVerdict::Passed));
    assert!(
        r.message.contains("older than maxAge 168h: not used"),
        "{}",
        r.message
    );
    assert!(!r.baseline.expect("named").used);
    // An unreadable time is not used either (never trusted as fresh).
    env.baselines.get_mut("g").unwrap().at = "yesterday".into();
    let r = env.eval(Some(&g), &[rep(85.0, None)]);
    assert_eq!(r.threshold, Some(80.0));
    assert!(r.message.contains("no readable time"), "{}", r.message);
}

fn with_policy(policy: qms_api::OnMissing, max_age: Option<&str>) -> QualityGateSpec {
    let mut g = spec(Operator::Gte, 80.0, None);
    g.on_missing = policy;
    g.carry_forward = max_age.map(|d| qms_api::CarryForward {
        max_age: qms_api::KubeDuration::parse(d).unwrap(),
    });
    g
}

#[test]
fn on_missing_fail_is_the_default_and_fails_closed() {
    let g = spec(Operator::Gte, 80.0, None);
    let r = Env::new().eval(Some(&g), &[]);
    assert_eq!(r.verdict, GateVerdict::Error);
    assert!(!r.verdict.passes());
    assert_eq!(r.on_missing, Some(qms_api::OnMissing::Fail));
    assert!(r.message.contains("onMissing: fail"), "{}", r.message);
}

#[test]
fn on_missing_neutral_is_advisory_never_passed() {
    let g = with_policy(qms_api::OnMissing::Neutral, None);
    let r = Env::new().eval(Some(&g), &[]);
    assert_eq!(r.verdict, GateVerdict::Warning);
    assert_eq!(r.value, None);
    assert!(r.message.contains("onMissing: neutral"), "{}", r.message);
    // A reported value is judged as usual.
    let r = Env::new().eval(Some(&g), &[rep(10.0, None)]);
    assert_eq!(r.verdict, GateVerdict::Failed);
}

#[test]
fn on_missing_carry_forward_uses_a_young_base_branch_value_named_as_carried() {
    let mut env = Env::new();
    let g = with_policy(qms_api::OnMissing::CarryForward, Some("336h"));
    // Nothing to carry: fail closed.
    let r = env.eval(Some(&g), &[]);
    assert_eq!(r.verdict, GateVerdict::Error);
    assert!(r.message.contains("no value to carry"), "{}", r.message);
    env.base("g", 91.0, 3);
    let r = env.eval(Some(&g), &[]);
    assert_eq!(
        (r.verdict, r.value, r.carried),
        (GateVerdict::Passed, Some(91.0), true)
    );
    assert!(
        r.message
            .contains("carried forward from the base branch (feedbee, 3d0h old)"),
        "{}",
        r.message
    );
    // The carried value is judged against the threshold like a measured one.
    env.base("g", 60.0, 3);
    assert_eq!(env.eval(Some(&g), &[]).verdict, GateVerdict::Failed);
    // Too old: fail closed, saying why.
    env.base("g", 91.0, 15);
    let r = env.eval(Some(&g), &[]);
    assert_eq!((r.verdict, r.carried), (GateVerdict::Error, false));
    assert!(
        r.message.contains("older than maxAge 336h"),
        "{}",
        r.message
    );
}

#[test]
fn no_policy_passes_when_an_agent_failed() {
    let mut env = Env::new();
    env.base("g", 99.0, 0);
    for policy in [
        qms_api::OnMissing::Fail,
        qms_api::OnMissing::Neutral,
        qms_api::OnMissing::CarryForward,
    ] {
        let g = with_policy(
            policy,
            (policy == qms_api::OnMissing::CarryForward).then_some("24h"),
        );
        let r = evaluate("g", Some(&g), &[], &["job-x".into()], &env.ctx());
        assert_eq!(r.verdict, GateVerdict::Error, "{policy:?}");
        assert!(r.message.contains("job-x"), "{}", r.message);
    }
}

proptest::proptest! {
    /// Whatever the policy, the baseline and its age: a missing metric never yields `Passed`
    /// unless a base-branch value younger than `carryForward.maxAge` was carried and passes, and
    /// the result always names the policy.
    #[test]
    fn a_missing_metric_never_silently_passes(
        policy in 0u8..3,
        has_base in proptest::bool::ANY,
        base in -1000.0f64..1000.0,
        age_days in 0i64..30,
        max_days in 1u32..20,
        blocking in proptest::bool::ANY,
    ) {
        let policy = [qms_api::OnMissing::Fail, qms_api::OnMissing::Neutral, qms_api::OnMissing::CarryForward][policy as usize];
        let mut g = with_policy(policy, (policy == qms_api::OnMissing::CarryForward).then(|| format!("{}h", max_days * 24)).as_deref());
        g.blocking = blocking;
        let mut env = Env::new();
        if has_base { env.base("g", base, age_days); }
        let r = env.eval(Some(&g), &[]);
        proptest::prop_assert!(r.message.contains(policy.as_str()), "{}", r.message);
        let carried_ok = policy == qms_api::OnMissing::CarryForward && has_base && age_days <= i64::from(max_days);
        proptest::prop_assert_eq!(r.carried, carried_ok);
        if r.verdict == GateVerdict::Passed {
            proptest::prop_assert!(carried_ok && base >= 80.0);
        }
        if !carried_ok && policy != qms_api::OnMissing::Neutral {
            proptest::prop_assert_eq!(r.verdict, GateVerdict::Error);
        }
    }
}
