//! The chart's Grafana dashboard and alert rules name only metrics the operator exports, and
//! every query parses. The metric names come from a real /metrics scrape of the operator running
//! on kube-sim with GitHub on (so the webhook counters are registered); the dashboard and the rules
//! come from the real `helm template` of the chart (what ships); parsing is the real
//! `promtool check rules` on a rule file holding every panel query as a recording rule.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use crate::common::*;
use qms_github::{Credentials, GithubConfig, Secret};
use qms_operator::{Http, Settings};
use serde_json::{Value, json};

/// Series the alerts read from outside the operator: cAdvisor (kubelet) and kube-state-metrics.
const EXTERNAL: [&str; 3] = [
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
    "kube_pod_container_resource_limits",
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tool(name: &str) -> PathBuf {
    let path = tools_bin().join(name);
    assert!(
        path.is_file(),
        "{} not found: run scripts/install-tools.sh",
        path.display()
    );
    path
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    assert!(buf.starts_with("HTTP/1.1 200"), "{buf}");
    buf.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// Sample names a scrape can contain, from its `# TYPE` lines (an empty family still has one):
/// counters as `<name>_total`, histograms as `_bucket`/`_sum`/`_count`, gauges as they are.
fn exported_names(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in scrape.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// The metric names a PromQL expression selects: identifiers that are not functions (followed by
/// `(`), keywords, label names inside `{…}` / `by (…)`, strings or durations.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Aggregation operators may be followed by `by (…)` before their `(`.
    const KEYWORDS: [&str; 25] = [
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "inf",
        "nan",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut last_word = String::new();
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            // A string: skip to its closing quote (honouring backslash escapes).
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '{' || c == '[' {
            let close = if c == '{' { '}' } else { ']' };
            while i < chars.len() && chars[i] != close {
                i += 1;
            }
            i += 1;
        } else if c == '(' && LABEL_LISTS.contains(&last_word.as_str()) {
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            i += 1;
            last_word.clear();
        } else if c.is_ascii_digit() || c == '.' {
            // Numbers and durations (5m, 1e3).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let is_call = j < chars.len() && chars[j] == '(';
            if !is_call && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                names.insert(word.clone());
            }
            last_word = word.to_ascii_lowercase();
        } else {
            if !c.is_whitespace() {
                last_word.clear();
            }
            i += 1;
        }
    }
    names
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = metric_names(
        r#"sum by (gate_name, le) (increase(a_total{job="x",l=~"b|c"}[1h])) / on(job) group_left(x) max(b) > 0.9 and c offset 5m or histogram_quantile(0.99, d_bucket)"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["a_total", "b", "c", "d_bucket"]
    );
}

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
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_saphyr::from_multiple::<Value>(&String::from_utf8_lossy(&out.stdout))
        .expect("YAML")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// Every panel query of the shipped dashboard (rows' nested panels included), with its panel.
fn dashboard_queries() -> Vec<(String, String)> {
    let docs = helm_template(&["monitoring.dashboard.enabled=true"]);
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["labels"]["grafana_dashboard"] == "1")
        .expect("dashboard ConfigMap");
    let dashboard: Value =
        serde_json::from_str(cm["data"]["qms-operator.json"].as_str().expect("json"))
            .expect("JSON");
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((
                    p["title"].as_str().unwrap_or("?").to_owned(),
                    t["expr"].as_str().expect("expr").to_owned(),
                ));
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn alert_exprs() -> Vec<(String, String)> {
    let docs = helm_template(&["monitoring.prometheusRule.enabled=true"]);
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("PrometheusRule");
    rule["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .map(|r| {
            (
                r["alert"].as_str().expect("alert").to_owned(),
                r["expr"].as_str().expect("expr").to_owned(),
            )
        })
        .collect()
}

/// Grafana's variables, replaced by values Prometheus accepts.
fn concrete(expr: &str) -> String {
    let e = expr
        .replace("$__rate_interval", "5m")
        .replace("$__range", "1d")
        .replace("$__interval", "1m")
        .replace("$job", "qms-qms-operator");
    assert!(!e.contains('$'), "unknown variable in {expr}");
    e
}

/// `promtool check rules` on the expressions as recording rules.
fn promtool_parses(exprs: &[String]) -> std::process::Output {
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| json!({"record": format!("dashboard:query_{i}"), "expr": e}))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dashboard-queries.yaml");
    std::fs::write(
        &file,
        serde_json::to_string(&json!({"groups": [{"name": "dashboard", "rules": rules}]})).unwrap(),
    )
    .unwrap();
    Command::new(tool("promtool"))
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool runs")
}

/// A prometheus-client family appears on /metrics only once it has a series, so the scrape is
/// taken after the example review ran to COMPLETED (gate results, durations, agent load, actions),
/// with GitHub on but unreachable (check-run sync outcomes) and two injected 409s on the
/// operator's writes (reconcile errors).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_name_only_exported_metrics_and_every_query_parses() {
    let env = Env::start().await;
    env.apply_examples(true).await;
    env.sim.faults().add(
        kube_sim::FaultRule::conflict()
            .verb("patch")
            .user_agent("qms-operator")
            .times(2),
    );
    let settings = Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        github: Some(GithubConfig {
            // Unreachable: every check-run sync ends `unavailable` and is retried.
            api_base_url: "http://127.0.0.1:9".into(),
            webhook_secrets: vec![Secret::new("dashboard-test-secret")],
            credentials: Credentials::Token(Secret::new("dashboard-test-token")),
            ..GithubConfig::default()
        }),
        ..env.settings()
    };
    let client = env
        .sim
        .client_with_user_agent(qms_operator::USER_AGENT)
        .expect("operator client");
    let op = qms_operator::start(client, settings, Http::On { extra: None })
        .await
        .expect("operator starts");
    let addr = op.http_addr.expect("HTTP server");
    op.wait_ready().await;
    let name = "creo-roo-commander-pr-12345";
    let wf = env
        .wait_for(name, "the final review", |wf| {
            qms_operator::dev::waiting_step(wf).is_some()
        })
        .await;
    let step = qms_operator::dev::waiting_step(&wf).expect("waiting step");
    env.decide(name, &step, &wf.spec.head_sha, "approve").await;
    env.wait_state(name, qms_api::WorkflowState::Completed)
        .await;
    let start = tokio::time::Instant::now();
    let exported = loop {
        let names = exported_names(&http_get(addr, "/metrics").await);
        let wanted = [
            "qms_workflow_duration_seconds_count",
            "qms_reconcile_errors_total",
            "qms_github_check_syncs_total",
        ];
        if wanted.iter().all(|w| names.contains(*w)) {
            break names;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{wanted:?} never all in the scrape: {names:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    op.stop().await;
    for kpi in [
        "qms_workflow_duration_seconds_count",
        "qms_quality_gate_results_total",
        "qms_github_webhook_outcomes_total",
    ] {
        assert!(
            exported.contains(kpi),
            "{kpi} not in the scrape: {exported:?}"
        );
    }

    let queries = dashboard_queries();
    assert!(queries.len() >= 15, "{queries:?}");
    let mut used = BTreeSet::new();
    for (panel, expr) in &queries {
        let names = metric_names(expr);
        assert!(
            !names.is_empty(),
            "panel {panel:?} selects no metric: {expr}"
        );
        for name in names {
            assert!(
                exported.contains(&name),
                "panel {panel:?} queries {name}, which the operator does not export: {expr}"
            );
            used.insert(name);
        }
    }
    // The KPIs of spec §12.1 each have a panel.
    for kpi in [
        "qms_workflow_duration_seconds_count",  // success rate
        "qms_workflow_duration_seconds_bucket", // cycle time
        "qms_quality_gate_results_total",       // gate pass rate
        "qms_agent_running_tasks",              // utilisation
        "qms_agent_capacity",
        "qms_reconcile_errors_total",    // errors by category
        "qms_workflows",                 // queue depth
        "qms_github_check_writes_total", // write pacing
        // Availability and configuration (spec §12.2's alerts have a panel to look at).
        "qms_agent_healthy",
        "qms_github_webhook_duration_seconds_bucket",
        "qms_config_reloads_total",
        "qms_config_hash",
    ] {
        assert!(used.contains(kpi), "no panel reads {kpi}");
    }

    for (alert, expr) in alert_exprs() {
        for name in metric_names(&expr) {
            assert!(
                exported.contains(&name) || EXTERNAL.contains(&name.as_str()),
                "alert {alert} reads {name}, which the operator does not export: {expr}"
            );
        }
    }

    let exprs: Vec<String> = queries.iter().map(|(_, e)| concrete(e)).collect();
    let out = promtool_parses(&exprs);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The parse check is real: a query with a missing parenthesis is refused.
    let mut broken = exprs.clone();
    broken[0].pop();
    assert!(!promtool_parses(&broken).status.success());
}
