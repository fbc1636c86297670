//! What a platform engineer does first, with the real helm and kubectl against kube-sim:
//! `helm install` the chart (CRDs included), `kubectl apply` the examples, `kubectl get qms`.
//! Also proves the API server refuses bad objects with the field named, through the CRDs'
//! schema and CEL rules.

use std::path::PathBuf;
use std::process::Output;

use kube_sim::KubeSim;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tools_bin() -> PathBuf {
    let dir = std::env::var_os("QMS_TOOLS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/bin"));
    assert!(
        dir.join("kubectl").is_file() && dir.join("helm").is_file(),
        "kubectl/helm not found in {}: run scripts/install-tools.sh",
        dir.display()
    );
    dir
}

struct Tools {
    bin: PathBuf,
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

impl Tools {
    fn new(sim: &KubeSim) -> Self {
        Self {
            bin: tools_bin(),
            kubeconfig: sim.kubeconfig_path().to_path_buf(),
            home: tempfile::tempdir().expect("tempdir"),
        }
    }

    async fn run(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> Output {
        use tokio::io::AsyncWriteExt;
        let home = self.home.path();
        let mut cmd = tokio::process::Command::new(self.bin.join(tool));
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", home)
            .env("HELM_CACHE_HOME", home.join("helm-cache"))
            .env("HELM_CONFIG_HOME", home.join("helm-config"))
            .env("HELM_DATA_HOME", home.join("helm-data"))
            .current_dir(repo_root())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn tool");
        let mut pipe = child.stdin.take().expect("stdin");
        if let Some(input) = stdin {
            pipe.write_all(input.as_bytes()).await.expect("write stdin");
        }
        drop(pipe);
        tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{tool} {args:?} hung"))
            .expect("tool output")
    }

    async fn ok(&self, tool: &str, args: &[&str]) -> String {
        let out = self.run(tool, args, None).await;
        assert!(
            out.status.success(),
            "{tool} {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// `helm install qms <chart> -n qms-system --create-namespace --wait=false <extra…>`.
fn helm_install_args<'a>(chart: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "install",
        "qms",
        chart,
        "--namespace",
        "qms-system",
        "--create-namespace",
        "--wait=false",
    ];
    args.extend_from_slice(extra);
    args
}

async fn sim() -> KubeSim {
    KubeSim::builder()
        .without_kubelet()
        .start()
        .await
        .expect("kube-sim starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installs_the_chart_and_kubectl_applies_the_examples() {
    let sim = sim().await;
    let t = Tools::new(&sim);
    let chart = repo_root().join("charts/qms-operator");
    let chart = chart.to_str().expect("utf-8 path");
    t.ok("helm", &helm_install_args(chart, &[])).await;
    let crds = t.ok("kubectl", &["get", "crd", "-o", "name"]).await;
    for plural in [
        "workflowtemplates",
        "qualitygates",
        "agents",
        "qmsworkflows",
        "qualitybaselines",
    ] {
        assert!(crds.contains(&format!("{plural}.qms.creo.dev")), "{crds}");
    }
    let deploy = t
        .ok(
            "kubectl",
            &[
                "get",
                "deployment",
                "qms-qms-operator",
                "-n",
                "qms-system",
                "-o",
                "jsonpath={.spec.template.spec.containers[0].args}",
            ],
        )
        .await;
    assert!(
        deploy.contains("--config=/etc/qms-operator/config.yaml"),
        "{deploy}"
    );

    // Client-side apply with kubectl's default validation (it fetches the OpenAPI document).
    t.ok("kubectl", &["apply", "-f", "examples/"]).await;
    let listed = t.ok("kubectl", &["get", "qms", "-o", "name"]).await;
    let count = |kind: &str| listed.lines().filter(|l| l.starts_with(kind)).count();
    assert_eq!(count("workflowtemplate.qms.creo.dev/"), 1, "{listed}");
    assert_eq!(count("qualitygate.qms.creo.dev/"), 6, "{listed}");
    assert_eq!(count("agent.qms.creo.dev/"), 5, "{listed}");
    assert_eq!(count("qmsworkflow.qms.creo.dev/"), 1, "{listed}");

    let table = t.ok("kubectl", &["get", "qmsworkflows"]).await;
    let header = table.lines().next().unwrap_or_default();
    for column in ["NAME", "REPOSITORY", "PR", "STATE", "STEP", "GATES", "AGE"] {
        assert!(header.contains(column), "missing {column} in {table}");
    }
    assert!(
        table.contains("creo/creo-roo-commander") && table.contains("12345"),
        "{table}"
    );

    t.ok("helm", &["uninstall", "qms", "--namespace", "qms-system"])
        .await;
    let deployments = t
        .ok(
            "kubectl",
            &["get", "deployments", "-n", "qms-system", "-o", "name"],
        )
        .await;
    assert!(deployments.trim().is_empty(), "{deployments}");
    sim.stop().await;
}

/// The optional Ingress exposes only the webhook path, and enabling it without a host stops
/// `helm install` with a message saying what is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_exposes_only_the_webhook_path() {
    let sim = sim().await;
    let t = Tools::new(&sim);
    let chart = repo_root().join("charts/qms-operator");
    let chart = chart.to_str().expect("utf-8 path");
    let install = |extra: &[&'static str]| {
        let mut args = helm_install_args(chart, &["--set", "ingress.enabled=true"]);
        args.extend_from_slice(extra);
        args
    };
    let out = t.run("helm", &install(&[]), None).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ingress.enabled needs ingress.host"), "{err}");

    t.ok(
        "helm",
        &install(&[
            "--set",
            "ingress.host=qms.example.com",
            "--set",
            "ingress.tlsSecretName=qms-tls",
        ]),
    )
    .await;
    let ingress = |jsonpath: &'static str| {
        let t = &t;
        async move {
            t.ok(
                "kubectl",
                &[
                    "get",
                    "ingress",
                    "qms-qms-operator",
                    "-n",
                    "qms-system",
                    "-o",
                    jsonpath,
                ],
            )
            .await
        }
    };
    let rules = ingress(
        "jsonpath={range .spec.rules[*].http.paths[*]}{.path} {.pathType} {.backend.service.name}:{.backend.service.port.name}{\"\\n\"}{end}",
    )
    .await;
    assert_eq!(
        rules.trim(),
        "/webhooks/github Exact qms-qms-operator:http",
        "only the webhook path"
    );
    let tls = ingress("jsonpath={.spec.tls[0].secretName} {.spec.tls[0].hosts[0]}").await;
    assert_eq!(tls, "qms-tls qms.example.com");
    sim.stop().await;
}

/// Applies `manifest` and returns kubectl's stderr, asserting that the server refused it.
async fn refused(t: &Tools, manifest: &str) -> String {
    let out = t
        .run("kubectl", &["apply", "-f", "-"], Some(manifest))
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "accepted:\n{manifest}\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_resources_are_refused_with_the_field_named() {
    let sim = sim().await;
    let t = Tools::new(&sim);
    t.ok("kubectl", &["apply", "-f", "crds/"]).await;

    let bad_operator = "apiVersion: qms.creo.dev/v1\nkind: QualityGate\nmetadata: {name: g}\n\
        spec: {type: threshold, metric: m, operator: greater, threshold: 1}\n";
    let err = refused(&t, bad_operator).await;
    assert!(
        err.contains("spec.operator") && err.contains("greater"),
        "{err}"
    );

    let no_threshold = "apiVersion: qms.creo.dev/v1\nkind: QualityGate\nmetadata: {name: g}\n\
        spec: {type: threshold, metric: m, operator: gte}\n";
    let err = refused(&t, no_threshold).await;
    assert!(
        err.contains("a threshold gate needs metric, operator and threshold"),
        "{err}"
    );

    let duplicate_steps = "apiVersion: qms.creo.dev/v1\nkind: WorkflowTemplate\nmetadata: {name: t}\n\
        spec:\n  steps:\n  - {name: a, type: manual}\n  - {name: a, type: manual}\n";
    let err = refused(&t, duplicate_steps).await;
    assert!(err.contains("step names must be unique"), "{err}");

    let bad_duration = "apiVersion: qms.creo.dev/v1\nkind: WorkflowTemplate\nmetadata: {name: t}\n\
        spec:\n  steps:\n  - {name: a, type: manual, timeout: 5 minutes}\n";
    let err = refused(&t, bad_duration).await;
    assert!(err.contains("spec.steps[0].timeout"), "{err}");

    let bad_sha = "apiVersion: qms.creo.dev/v1\nkind: QmsWorkflow\nmetadata: {name: w}\n\
        spec: {repository: o/r, pullRequest: 1, headSha: NOTASHA, templateRef: {name: t}}\n";
    let err = refused(&t, bad_sha).await;
    assert!(err.contains("spec.headSha"), "{err}");

    let both_name_and_capability = "apiVersion: qms.creo.dev/v1\nkind: WorkflowTemplate\nmetadata: {name: t}\n\
        spec:\n  steps:\n  - name: a\n    type: parallel\n    agents: [{name: x, capability: review}]\n";
    let err = refused(&t, both_name_and_capability).await;
    assert!(
        err.contains("exactly one of name or capability must be set"),
        "{err}"
    );

    let listed = t.ok("kubectl", &["get", "qms", "-o", "name"]).await;
    assert!(
        listed.trim().is_empty(),
        "nothing refused may be stored: {listed}"
    );
    sim.stop().await;
}

#[test]
fn chart_defaults_render_with_helm_template() {
    // `helm template` needs no cluster: renders every template with the default values.
    let out = std::process::Command::new(tools_bin().join("helm"))
        .args([
            "template",
            "qms",
            "charts/qms-operator",
            "--namespace",
            "qms-system",
        ])
        .current_dir(repo_root())
        .output()
        .expect("helm runs");
    let rendered = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in [
        "Deployment",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ] {
        assert!(
            rendered.contains(&format!("kind: {kind}\n")),
            "chart renders no {kind}"
        );
    }
}
