//! charts/qms-operator/values.schema.json with the real helm: a mistyped key or a wrongly typed
//! value stops `helm template` / `helm install` with the key named (nothing is installed), the
//! defaults and every optional feature pass `helm lint --strict`.

use std::path::PathBuf;
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn helm() -> PathBuf {
    let dir = std::env::var_os("QMS_TOOLS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/bin"));
    assert!(
        dir.join("helm").is_file(),
        "helm not found in {}: run scripts/install-tools.sh",
        dir.display()
    );
    dir.join("helm")
}

fn run(args: &[&str]) -> Output {
    Command::new(helm())
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("helm runs")
}

fn template(sets: &[&str]) -> Output {
    let mut args = vec!["template", "qms", "charts/qms-operator", "-n", "qms-system"];
    for s in sets {
        args.extend(["--set", s]);
    }
    run(&args)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn mistyped_or_wrongly_typed_values_are_refused_with_the_key_named() {
    for (set, at, says) in [
        // Mistyped keys.
        ("replicaCont=2", "at ''", "'replicaCont' not allowed"),
        (
            "github.writesPerMinut=10",
            "at '/github'",
            "'writesPerMinut' not allowed",
        ),
        (
            "monitoring.prometheusRule.enabeld=true",
            "at '/monitoring/prometheusRule'",
            "'enabeld' not allowed",
        ),
        (
            "monitoring.serviceMonitor.intervall=1m",
            "at '/monitoring/serviceMonitor'",
            "'intervall' not allowed",
        ),
        (
            "resources.limit.cpu=1",
            "at '/resources'",
            "'limit' not allowed",
        ),
        // Wrong types and values.
        ("replicaCount=two", "at '/replicaCount'", "want integer"),
        ("service.port=70000", "at '/service/port'", "maximum"),
        (
            "github.trustedPermission=owner",
            "at '/github/trustedPermission'",
            "must be one of",
        ),
        (
            "github.writesPerHour=0",
            "at '/github/writesPerHour'",
            "minimum",
        ),
        (
            "leaderElection.leaseDuration=15",
            "at '/leaderElection/leaseDuration'",
            "want string",
        ),
        (
            "leaderElection.renewDeadline=ten",
            "at '/leaderElection/renewDeadline'",
            "pattern",
        ),
        (
            "watchNamespaces[0]=Team_A",
            "at '/watchNamespaces/0'",
            "pattern",
        ),
        (
            "monitoring.prometheusRule.queueDepth.threshold=many",
            "at '/monitoring/prometheusRule/queueDepth/threshold'",
            "want integer",
        ),
        (
            "monitoring.prometheusRule.reconcileLatency.seconds=9",
            "at '/monitoring/prometheusRule/reconcileLatency/seconds'",
            "exclusiveMaximum",
        ),
        (
            "monitoring.prometheusRule.workflowFailure.window=30 minutes",
            "at '/monitoring/prometheusRule/workflowFailure/window'",
            "pattern",
        ),
        (
            "monitoring.dashboard.enabled=yes",
            "at '/monitoring/dashboard/enabled'",
            "want boolean",
        ),
    ] {
        let out = template(&[set]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{set} was accepted");
        assert!(
            err.contains("values don't meet the specifications of the schema"),
            "{set}: {err}"
        );
        assert!(err.contains(at) && err.contains(says), "{set}: {err}");
    }
}

#[test]
fn defaults_and_every_optional_feature_lint_strict_clean() {
    for sets in [
        vec![],
        vec![
            "monitoring.prometheusRule.enabled=true",
            "monitoring.serviceMonitor.enabled=true",
            "monitoring.dashboard.enabled=true",
            "monitoring.prometheusRule.workflowFailure.ratio=0.2",
            "monitoring.prometheusRule.labels.release=prom",
            "ingress.enabled=true",
            "ingress.host=qms.example.com",
            "github.enabled=true",
            "github.existingSecret=qms-github",
            "replicaCount=2",
            "watchNamespaces[0]=team-a",
            "github.namespace=team-a",
            "image.tag=1.2.3",
        ],
    ] {
        let mut args = vec!["lint", "--strict", "charts/qms-operator"];
        for s in &sets {
            args.extend(["--set", s]);
        }
        let out = run(&args);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert!(out.status.success(), "{sets:?}: {text}");
        assert!(text.contains("0 chart(s) failed"), "{text}");
        let rendered = template(&sets);
        assert!(rendered.status.success(), "{sets:?}: {}", stderr(&rendered));
    }
}

/// Every key of values.yaml is described by the schema, and the schema allows nothing else at
/// the top level: the two files cannot drift apart silently.
#[test]
fn the_schema_describes_exactly_the_keys_of_values_yaml() {
    let values: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_root().join("charts/qms-operator/values.yaml"))
            .expect("values.yaml"),
    )
    .expect("values.yaml parses");
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("charts/qms-operator/values.schema.json"))
            .expect("values.schema.json"),
    )
    .expect("schema parses");
    fn walk(path: &str, v: &serde_json::Value, s: &serde_json::Value, missing: &mut Vec<String>) {
        let (Some(map), Some(props)) = (v.as_object(), s["properties"].as_object()) else {
            return;
        };
        for (k, child) in map {
            match props.get(k) {
                Some(cs) => walk(&format!("{path}.{k}"), child, cs, missing),
                None => missing.push(format!("{path}.{k}")),
            }
        }
    }
    let mut missing = Vec::new();
    walk("", &values, &schema, &mut missing);
    assert!(missing.is_empty(), "not in values.schema.json: {missing:?}");
    assert_eq!(schema["additionalProperties"], false);
}

/// `helm install` against a cluster (kube-sim) refuses the same way and installs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_with_a_mistyped_value_installs_nothing() {
    let sim = kube_sim::KubeSim::builder()
        .without_kubelet()
        .start()
        .await
        .expect("kube-sim starts");
    let home = tempfile::tempdir().expect("tempdir");
    let helm_env = |cmd: &mut Command| {
        cmd.env("KUBECONFIG", sim.kubeconfig_path())
            .env("HOME", home.path())
            .env("HELM_CACHE_HOME", home.path().join("cache"))
            .env("HELM_CONFIG_HOME", home.path().join("config"))
            .env("HELM_DATA_HOME", home.path().join("data"))
            .current_dir(repo_root());
    };
    let mut cmd = Command::new(helm());
    cmd.args([
        "install",
        "qms",
        "charts/qms-operator",
        "--namespace",
        "qms-system",
        "--create-namespace",
        "--wait=false",
        "--set",
        "monitoring.serviceMonitor.enabeld=true",
    ]);
    helm_env(&mut cmd);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("helm runs"))
        .await
        .expect("join");
    let err = stderr(&out);
    assert!(!out.status.success(), "installed with a typo");
    assert!(
        err.contains("at '/monitoring/serviceMonitor'") && err.contains("'enabeld' not allowed"),
        "{err}"
    );
    let mut list = Command::new(helm());
    list.args(["list", "--all-namespaces", "-q"]);
    helm_env(&mut list);
    let listed = tokio::task::spawn_blocking(move || list.output().expect("helm runs"))
        .await
        .expect("join");
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(
        String::from_utf8_lossy(&listed.stdout).trim().is_empty(),
        "no release: {}",
        String::from_utf8_lossy(&listed.stdout)
    );
    sim.stop().await;
}
