//! The chart's alerts (templates/prometheusrule.yaml), rendered by the real `helm template` and
//! unit-tested by the real `promtool test rules` with the cases in tests/monitoring/: so what is
//! tested is what ships. Every alert has series that make it fire and series that must not.
//! (That the rules and the dashboard name only metrics the operator exports is checked against a
//! live /metrics scrape in crates/qms-operator/tests/it/dashboard.rs.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("QMS_TOOLS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/bin"));
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{name} not found in {}: run scripts/install-tools.sh",
        dir.display()
    );
    path
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `helm template qms charts/qms-operator -n qms-system --set …`, as parsed documents.
fn helm_template(sets: &[&str]) -> Vec<Value> {
    let mut cmd = Command::new(tool("helm"));
    cmd.args([
        "template",
        "qms",
        "charts/qms-operator",
        "--namespace",
        "qms-system",
    ])
    .current_dir(repo_root());
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().expect("helm runs");
    assert!(
        out.status.success(),
        "helm template {sets:?}: {}",
        text(&out)
    );
    let rendered = String::from_utf8_lossy(&out.stdout).into_owned();
    serde_saphyr::from_multiple::<Value>(&rendered)
        .expect("helm renders YAML")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The rendered PrometheusRule's `spec` (a Prometheus rule file: `groups:`).
fn rendered_rules(extra: &[&str]) -> Value {
    let mut sets = vec!["monitoring.prometheusRule.enabled=true"];
    sets.extend_from_slice(extra);
    let docs = helm_template(&sets);
    let rules = of_kind(&docs, "PrometheusRule");
    assert_eq!(rules.len(), 1, "one PrometheusRule");
    rules[0]["spec"].clone()
}

/// A directory with the rendered rules as rules.yaml (JSON is YAML) and the unit tests.
fn promtool_dir(rules: &Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_json::to_string_pretty(rules).expect("json"),
    )
    .expect("write rules");
    std::fs::copy(
        repo_root().join("tests/monitoring/alerts.test.yaml"),
        dir.path().join("alerts.test.yaml"),
    )
    .expect("copy tests");
    dir
}

fn promtool(dir: &Path, args: &[&str]) -> Output {
    Command::new(tool("promtool"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs")
}

fn alert_names(rules: &Value) -> BTreeSet<String> {
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .filter_map(|r| r["alert"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn every_alert_passes_promtool_unit_tests_that_fire_it_and_leave_it_silent() {
    let rules = rendered_rules(&[]);
    let dir = promtool_dir(&rules);
    let check = promtool(dir.path(), &["check", "rules", "rules.yaml"]);
    assert!(check.status.success(), "{}", text(&check));
    let test = promtool(dir.path(), &["test", "rules", "alerts.test.yaml"]);
    assert!(test.status.success(), "{}", text(&test));

    // Each alert is tested both ways: some evaluation expects it firing, another expects silence.
    let cases: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_root().join("tests/monitoring/alerts.test.yaml"))
            .expect("read tests"),
    )
    .expect("test file parses");
    let (mut fired, mut silent) = (BTreeSet::new(), BTreeSet::new());
    for case in cases["tests"].as_array().expect("tests") {
        for eval in case["alert_rule_test"].as_array().expect("alert_rule_test") {
            let name = eval["alertname"].as_str().expect("alertname").to_owned();
            match eval["exp_alerts"].as_array().map(Vec::len) {
                Some(0) | None => silent.insert(name),
                Some(_) => fired.insert(name),
            };
        }
    }
    let alerts = alert_names(&rules);
    assert!(alerts.len() >= 12, "{alerts:?}");
    for alert in [
        "QmsAgentUnavailable",
        "QmsWebhookLatencyHigh",
        "QmsReconcileLatencyHigh",
        "QmsConfigReloadRejected",
        "QmsConfigDiverged",
    ] {
        assert!(alerts.contains(alert), "{alert} missing: {alerts:?}");
    }
    for alert in &alerts {
        assert!(fired.contains(alert), "no case makes {alert} fire");
        assert!(silent.contains(alert), "no case expects {alert} silent");
    }
}

/// The unit tests pin the shipped thresholds: rendering with another one makes them fail, naming
/// the alert (so a passing run means the cases really exercise the rules).
#[test]
fn a_changed_threshold_fails_the_unit_tests() {
    for (set, alert) in [
        (
            "monitoring.prometheusRule.workflowFailure.ratio=0.25",
            "QmsWorkflowFailureRateHigh",
        ),
        (
            "monitoring.prometheusRule.queueDepth.threshold=30",
            "QmsQueueDepthHigh",
        ),
        (
            "monitoring.prometheusRule.resources.ratio=0.96",
            "QmsOperatorCpuHigh",
        ),
        (
            "monitoring.prometheusRule.agentUnavailable.for=3m",
            "QmsAgentUnavailable",
        ),
        (
            "monitoring.prometheusRule.webhookLatency.seconds=1",
            "QmsWebhookLatencyHigh",
        ),
        (
            "monitoring.prometheusRule.configReloadRejected.window=30m",
            "QmsConfigReloadRejected",
        ),
        (
            "monitoring.prometheusRule.configDiverged.for=30m",
            "QmsConfigDiverged",
        ),
    ] {
        let dir = promtool_dir(&rendered_rules(&[set]));
        let test = promtool(dir.path(), &["test", "rules", "alerts.test.yaml"]);
        let out = text(&test);
        assert!(!test.status.success(), "{set}: still passes:\n{out}");
        assert!(out.contains(alert), "{set}: {out}");
    }
}

#[test]
fn monitoring_objects_render_only_when_enabled_and_select_this_release() {
    let defaults = helm_template(&[]);
    for kind in ["PrometheusRule", "ServiceMonitor"] {
        assert!(
            of_kind(&defaults, kind).is_empty(),
            "{kind} is off by default"
        );
    }
    assert!(
        !defaults
            .iter()
            .any(|d| d["metadata"]["name"] == "qms-qms-operator-dashboard"),
        "the dashboard is off by default"
    );

    let docs = helm_template(&[
        "monitoring.prometheusRule.enabled=true",
        "monitoring.prometheusRule.labels.release=kube-prometheus-stack",
        "monitoring.serviceMonitor.enabled=true",
        "monitoring.serviceMonitor.labels.release=kube-prometheus-stack",
        "monitoring.metricsSelector=job=\"qms\"\\,namespace=\"qms-system\"",
    ]);
    let rule = of_kind(&docs, "PrometheusRule")[0];
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let exprs = serde_json::to_string(&rule["spec"]).expect("json");
    assert!(
        exprs.contains(
            r#"qms_workflows{job=\"qms\",namespace=\"qms-system\",state=\"INITIALIZED\"}"#
        ),
        "the selector is used: {exprs}"
    );

    // The ServiceMonitor scrapes the chart's Service: its selector matches the Service's labels
    // and its port is the Service's port name.
    let sm = of_kind(&docs, "ServiceMonitor")[0];
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus-stack");
    let service = of_kind(&docs, "Service")[0];
    let selector = sm["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels");
    assert!(!selector.is_empty());
    for (k, v) in selector {
        assert_eq!(&service["metadata"]["labels"][k], v, "label {k}");
    }
    let port = &sm["spec"]["endpoints"][0];
    assert_eq!(port["path"], "/metrics");
    assert_eq!(service["spec"]["ports"][0]["name"], port["port"]);
    assert_eq!(
        sm["spec"]["namespaceSelector"]["matchNames"][0],
        "qms-system"
    );
}

#[test]
fn the_dashboard_configmap_carries_the_sidecar_label_and_the_dashboard_json() {
    let docs = helm_template(&["monitoring.dashboard.enabled=true"]);
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "qms-qms-operator-dashboard")
        .expect("dashboard ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: Value =
        serde_json::from_str(cm["data"]["qms-operator.json"].as_str().expect("data"))
            .expect("dashboard JSON parses");
    let source: Value = serde_json::from_str(
        &std::fs::read_to_string(
            repo_root().join("charts/qms-operator/dashboards/qms-operator.json"),
        )
        .expect("read dashboard"),
    )
    .expect("source parses");
    assert_eq!(shipped, source, "the ConfigMap ships the file unchanged");
    assert_eq!(shipped["uid"], "qms-operator");
}
