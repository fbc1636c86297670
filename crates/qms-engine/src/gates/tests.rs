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
    baselines: BTreeMap<String, f64>,
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
    });
    assert_eq!(env.eval(Some(&g), &[rep(85.0, None)]).threshold, Some(80.0));
    env.baselines.insert("g".into(), 90.0);
    let r = env.eval(Some(&g), &[rep(85.0, None)]);
    assert_eq!((r.threshold, r.verdict), (Some(89.0), GateVerdict::Failed));
    env.baselines.insert("g".into(), 50.0);
    assert_eq!(env.eval(Some(&g), &[rep(85.0, None)]).threshold, Some(80.0));
    let mut lower = spec(Operator::Lte, 500.0, None);
    lower.baseline = g.baseline.clone();
    env.baselines.insert("g".into(), 200.0);
    assert_eq!(
        env.eval(Some(&lower), &[rep(100.0, None)]).threshold,
        Some(201.0)
    );
    let mut eq = spec(Operator::Eq, 1.0, None);
    eq.baseline = g.baseline.clone();
    assert_eq!(env.eval(Some(&eq), &[rep(1.0, None)]).threshold, Some(1.0));
    g.baseline.as_mut().unwrap().enabled = false;
    env.baselines.insert("g".into(), 90.0);
    assert_eq!(env.eval(Some(&g), &[rep(85.0, None)]).threshold, Some(80.0));
}
