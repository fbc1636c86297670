//! Every generated CRD (`crds/` and the chart's copy) and every example installs on a real
//! Kubernetes 1.20.2 API server with the real kubectl (`kubectl apply`, as a user would), and the
//! server accepts the example objects under the CRDs' validation. Needs `scripts/install-kube.sh`
//! (fails naming it when absent) and `scripts/install-tools.sh` (kubectl).

use std::path::PathBuf;
use std::process::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn kubectl() -> PathBuf {
    let bin = std::env::var_os("QMS_TOOLS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/bin"))
        .join("kubectl");
    assert!(
        bin.exists(),
        "kubectl not found at {} (run scripts/install-tools.sh)",
        bin.display()
    );
    bin
}

fn run(kubeconfig: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_crds_chart_crds_and_examples_apply_on_kubernetes_1_20() {
    let plane = kube_real::KubeReal::shared()
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let ns = plane.namespace("crds").await.expect("namespace");
    let kc = ns.kubeconfig_path();
    for dir in ["crds", "charts/qms-operator/crds"] {
        let path = repo_root().join(dir);
        // Expected on 1.20 (recorded): kubectl's client-side validation against 1.20's OpenAPI
        // refuses the CEL rules (`x-kubernetes-validations`, known from 1.23 on) of the three CRDs
        // that carry them (the error names each schema object that has one: qmsworkflows' spec,
        // qualitygates' spec, workflowtemplates' spec and spec.pushes); with --validate=false the
        // server accepts every CRD and drops the rules.
        let err = run(
            kc,
            &["apply", "--dry-run=server", "-f", path.to_str().unwrap()],
        )
        .expect_err("1.20's schema has no x-kubernetes-validations");
        assert_eq!(
            err.matches(r#"unknown field "x-kubernetes-validations""#)
                .count(),
            4,
            "{err}"
        );
        let out = run(
            kc,
            &["apply", "--validate=false", "-f", path.to_str().unwrap()],
        )
        .unwrap_or_else(|e| panic!("kubectl apply --validate=false -f {dir}/ refused:\n{e}"));
        let files = std::fs::read_dir(&path)
            .expect("CRD dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "yaml"))
            })
            .count();
        assert_eq!(out.lines().count(), files, "{out}");
    }
    for crd in [
        "qmsworkflows.qms.creo.dev",
        "qualitygates.qms.creo.dev",
        "agents.qms.creo.dev",
        "workflowtemplates.qms.creo.dev",
        "qualitybaselines.qms.creo.dev",
    ] {
        run(
            kc,
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                &format!("crd/{crd}"),
            ],
        )
        .unwrap_or_else(|e| panic!("{crd} not established: {e}"));
    }
    let examples = repo_root().join("examples");
    let out = run(kc, &["apply", "-f", examples.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("kubectl apply -f examples/ refused:\n{e}"));
    assert!(
        out.contains("qmsworkflow.qms.creo.dev/creo-roo-commander-pr-12345 created"),
        "{out}"
    );
    let listed = run(kc, &["get", "qms", "-o", "name"]).expect("kubectl get qms");
    // 1 template, 6 gates, 5 agents, 1 workflow.
    assert_eq!(listed.lines().count(), 13, "{listed}");

    // The real server validates with the CRDs' schemas: a bad enum value is refused, field named.
    let bad = "apiVersion: qms.creo.dev/v1\nkind: QualityGate\nmetadata: {name: bad}\nspec: {type: threshold, metric: m, operator: almost, threshold: 1}\n";
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bad).unwrap();
    let err = run(kc, &["apply", "-f", file.path().to_str().unwrap()]).unwrap_err();
    assert!(err.contains("spec.operator"), "{err}");

    // What 1.20 cannot do (recorded for the README): the CEL rules were dropped, so a threshold
    // gate without a metric is admitted (servers from 1.25 on refuse it with the rule's message).
    let no_metric = "apiVersion: qms.creo.dev/v1\nkind: QualityGate\nmetadata: {name: no-metric}\nspec: {type: threshold, operator: gte, threshold: 1}\n";
    std::fs::write(file.path(), no_metric).unwrap();
    run(kc, &["apply", "-f", file.path().to_str().unwrap()])
        .unwrap_or_else(|e| panic!("1.20 enforces no CEL rule, yet: {e}"));
}

/// The CRDs as generated before the fix (`null` inside `enum`, next to `nullable: true`) are
/// refused by 1.20 (with a misleading message) — and by kube-sim, which names the enum entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_inside_an_enum_is_refused_by_1_20_and_by_kube_sim() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::Api;
    let crd = serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "nullenums.diff.example.com"},
        "spec": {"group": "diff.example.com", "scope": "Namespaced",
            "names": {"plural": "nullenums", "singular": "nullenum", "kind": "NullEnum"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"type": "object", "properties": {
                    "op": {"type": "string", "nullable": true, "enum": ["gte", "lt", null]}}}}}}}]}
    });
    let crd: CustomResourceDefinition = serde_json::from_value(crd).unwrap();
    let plane = kube_real::KubeReal::shared()
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let sim = kube_sim::KubeSim::builder()
        .without_kubelet()
        .start()
        .await
        .unwrap();
    for (server, client) in [
        ("kubernetes 1.20", plane.client()),
        ("kube-sim", sim.client()),
    ] {
        let api: Api<CustomResourceDefinition> = Api::all(client);
        match api.create(&Default::default(), &crd).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "{server}: {s:?}");
                let fields: Vec<String> = s
                    .details
                    .iter()
                    .flat_map(|d| d.causes.iter())
                    .map(|c| c.field.clone())
                    .collect();
                // Expected difference: 1.20 names the wrong thing (kubernetes#104969: its
                // version-schema comparison trips over the null); kube-sim names the entry.
                let expected = if server == "kube-sim" {
                    "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[op].enum[2]"
                } else {
                    "spec.versions"
                };
                assert_eq!(fields, [expected], "{server}: {s:?}");
                assert_eq!(s.reason, "Invalid", "{server}");
            }
            other => panic!("{server} accepted null in an enum: {other:?}"),
        }
    }
}
