//! The real helm 4 against kube-sim: install, list and uninstall a chart with common kinds.

use crate::tools;

use tools::{Cluster, fixture};

/// (kubectl resource, object name) of everything the chart renders for release `rel`.
const OBJECTS: &[(&str, &str)] = &[
    ("configmap", "rel-config"),
    ("serviceaccount", "rel-sa"),
    ("role.rbac.authorization.k8s.io", "rel-role"),
    ("rolebinding.rbac.authorization.k8s.io", "rel-rolebinding"),
    ("clusterrole.rbac.authorization.k8s.io", "rel-clusterrole"),
    (
        "clusterrolebinding.rbac.authorization.k8s.io",
        "rel-clusterrolebinding",
    ),
    ("deployment.apps", "rel-web"),
    ("service", "rel-web"),
    ("networkpolicy.networking.k8s.io", "rel-netpol"),
    ("poddisruptionbudget.policy", "rel-pdb"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_list_uninstall() {
    let cluster = Cluster::start().await;
    let chart = fixture("charts/simapp");
    let chart = chart.to_str().unwrap();

    let install = cluster
        .helm(&["install", "rel", chart, "--namespace", "default"])
        .await;
    let stdout = install.ok();
    assert!(stdout.contains("STATUS: deployed"), "{stdout}");

    for (kind, name) in OBJECTS {
        let out = cluster
            .kubectl(&["get", kind, name, "-n", "default", "-o", "name"])
            .await;
        assert!(
            out.status.success(),
            "{kind}/{name} missing after install: {}",
            out.stderr
        );
    }

    let list = cluster.helm(&["list", "--namespace", "default"]).await;
    let stdout = list.ok();
    let row = stdout
        .lines()
        .find(|l| l.starts_with("rel"))
        .unwrap_or_else(|| panic!("helm list lacks the release:\n{stdout}"));
    assert!(
        row.contains("deployed") && row.contains("simapp-0.1.0"),
        "{row}"
    );

    let uninstall = cluster
        .helm(&["uninstall", "rel", "--namespace", "default"])
        .await;
    assert!(
        uninstall.ok().contains("release \"rel\" uninstalled"),
        "{}",
        uninstall.stdout
    );

    for (kind, name) in OBJECTS {
        let out = cluster
            .kubectl(&[
                "get",
                kind,
                name,
                "-n",
                "default",
                "--ignore-not-found",
                "-o",
                "name",
            ])
            .await;
        assert_eq!(
            out.ok().trim(),
            "",
            "{kind}/{name} still there after uninstall"
        );
    }
    let list = cluster
        .helm(&["list", "--namespace", "default", "-q"])
        .await;
    assert_eq!(list.ok().trim(), "", "release still listed");
}
