//! The real kubectl 1.35 against kube-sim: CRDs and custom resources.

use crate::tools;

use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use tools::{Cluster, eventually, fixture, install_test_crds, widgets};

fn path(name: &str) -> String {
    fixture(name).to_string_lossy().into_owned()
}

async fn cluster_with_widgets() -> Cluster {
    let cluster = Cluster::start().await;
    install_test_crds(&cluster).await;
    let out = cluster
        .kubectl(&["apply", "-f", &path("widgets.yaml")])
        .await;
    let stdout = out.ok();
    assert!(
        stdout.contains("widget.test.kube-sim.dev/alpha created"),
        "{stdout}"
    );
    assert!(
        stdout.contains("gadget.test.kube-sim.dev/gizmo created"),
        "{stdout}"
    );
    cluster
}

/// Splits a kubectl table line into its columns.
fn cols(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_client_side_and_server_side() {
    let cluster = cluster_with_widgets().await;

    // Re-applying the same manifest is a no-op.
    let again = cluster
        .kubectl(&["apply", "-f", &path("widgets.yaml")])
        .await;
    assert!(
        again
            .ok()
            .contains("widget.test.kube-sim.dev/alpha unchanged"),
        "{}",
        again.stdout
    );

    // The CRDs themselves, server-side this time.
    let crds = cluster
        .kubectl(&["apply", "--server-side", "-f", &path("crds.yaml")])
        .await;
    assert!(
        crds.ok().contains(
            "customresourcedefinition.apiextensions.k8s.io/widgets.test.kube-sim.dev serverside-applied"
        ),
        "{}",
        crds.stdout
    );

    // Server-side apply of a custom resource creates it.
    let ssa = cluster
        .kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=kube-sim-test",
            "-f",
            &path("widget-server-side.yaml"),
        ])
        .await;
    assert!(
        ssa.ok()
            .contains("widget.test.kube-sim.dev/beta serverside-applied"),
        "{}",
        ssa.stdout
    );
    let api = widgets(cluster.client());
    let beta = api.get("beta").await.expect("beta exists");
    assert_eq!(beta.data["spec"]["color"], "green");
    assert_eq!(beta.data["spec"]["size"], 7);
    let managers: Vec<String> = beta
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.iter().any(|m| m == "kube-sim-test"),
        "managedFields: {managers:?}"
    );

    // A patch changes one field and keeps the others.
    let changed = cluster
        .kubectl(&[
            "patch",
            "widget",
            "alpha",
            "--type=merge",
            "-p",
            r#"{"spec":{"size":4}}"#,
        ])
        .await;
    assert!(
        changed
            .ok()
            .contains("widget.test.kube-sim.dev/alpha patched"),
        "{}",
        changed.stdout
    );
    let alpha = api.get("alpha").await.expect("alpha exists");
    assert_eq!(alpha.data["spec"]["size"], 4);
    assert_eq!(alpha.data["spec"]["note"], "first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_shows_printer_columns_short_names_and_categories() {
    let cluster = cluster_with_widgets().await;
    let out = cluster.kubectl(&["get", "widgets"]).await;
    let stdout = out.ok();
    let mut lines = stdout.lines();
    let header = lines.next().unwrap_or_default();
    assert_eq!(
        cols(header),
        ["NAME", "COLOR", "SIZE", "PHASE", "AGE"],
        "{stdout}"
    );
    let row = lines
        .find(|l| l.starts_with("alpha "))
        .unwrap_or_else(|| panic!("no alpha row in:\n{stdout}"));
    // PHASE is empty (no status yet): NAME COLOR SIZE AGE.
    let c = cols(row);
    assert_eq!(&c[..3], ["alpha", "red", "3"], "{row}");

    // The short name resolves to the same resource.
    let short = cluster.kubectl(&["get", "wdg", "-o", "name"]).await;
    assert_eq!(
        short.ok().trim(),
        "widget.test.kube-sim.dev/alpha",
        "{}",
        short.stdout
    );

    // The category lists both kinds.
    let cat = cluster.kubectl(&["get", "simtest", "-o", "name"]).await;
    let names: Vec<&str> = cat.ok().lines().collect();
    assert!(
        names.contains(&"widget.test.kube-sim.dev/alpha")
            && names.contains(&"gadget.test.kube-sim.dev/gizmo"),
        "{names:?}"
    );

    // Status shows up in the PHASE column once set through the client.
    widgets(cluster.client())
        .patch_status(
            "alpha",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await
        .expect("status patch");
    let out = cluster
        .kubectl(&["get", "widget", "alpha", "--no-headers"])
        .await;
    let c: Vec<String> = cols(out.ok()).into_iter().map(str::to_owned).collect();
    assert_eq!(&c[..4], ["alpha", "red", "3", "Running"], "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_receives_an_update() {
    let cluster = cluster_with_widgets().await;
    let mut watch = cluster.spawn("kubectl", &["get", "widgets", "--watch"]);
    watch
        .expect_line("the header", |l| cols(l).first() == Some(&"NAME"))
        .await;
    watch
        .expect_line("the initial alpha row", |l| {
            cols(l).get(..3) == Some(&["alpha", "red", "3"][..])
        })
        .await;

    widgets(cluster.client())
        .patch(
            "alpha",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"color": "blue", "size": 9}})),
        )
        .await
        .expect("patch through the client");
    let updated = watch
        .expect_line("the updated alpha row", |l| {
            cols(l).get(..3) == Some(&["alpha", "blue", "9"][..])
        })
        .await;
    assert!(updated.starts_with("alpha"));
    watch.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_shows_the_object() {
    let cluster = cluster_with_widgets().await;
    let out = cluster.kubectl(&["describe", "widget", "alpha"]).await;
    let stdout = out.ok();
    for (key, value) in [
        ("Name:", "alpha"),
        ("Namespace:", "default"),
        ("API Version:", "test.kube-sim.dev/v1"),
        ("Kind:", "Widget"),
        ("Color:", "red"),
        ("Size:", "3"),
        ("Note:", "first"),
    ] {
        assert!(
            stdout.lines().any(|l| {
                let l = l.trim();
                l.starts_with(key) && l.ends_with(value)
            }),
            "describe lacks `{key} {value}`:\n{stdout}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_condition_and_jsonpath() {
    let cluster = cluster_with_widgets().await;
    let ready = cluster.spawn(
        "kubectl",
        &[
            "wait",
            "--for=condition=Ready",
            "--timeout=30s",
            "widget/alpha",
        ],
    );
    let done = cluster.spawn(
        "kubectl",
        &[
            "wait",
            "--for=jsonpath={.status.phase}=Done",
            "--timeout=30s",
            "widget/alpha",
        ],
    );
    widgets(cluster.client())
        .patch_status(
            "alpha",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "phase": "Done",
                "conditions": [{
                    "type": "Ready",
                    "status": "True",
                    "reason": "Tested",
                    "message": "set by the test",
                    "lastTransitionTime": "2025-01-01T00:00:00Z"
                }]
            }})),
        )
        .await
        .expect("status patch");
    for (what, waiter) in [("condition", ready), ("jsonpath", done)] {
        let (status, lines) = waiter.finish().await;
        assert!(
            status.success(),
            "wait for {what} failed:\n{}",
            lines.join("\n")
        );
        assert!(
            lines
                .iter()
                .any(|l| l == "widget.test.kube-sim.dev/alpha condition met"),
            "wait for {what}:\n{}",
            lines.join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_waits_for_the_finalizer() {
    let cluster = Cluster::start().await;
    install_test_crds(&cluster).await;
    cluster
        .kubectl(&["apply", "-f", &path("widget-finalizer.yaml")])
        .await
        .ok();
    let api = widgets(cluster.client());

    let mut delete = cluster.spawn("kubectl", &["delete", "widget", "held", "--wait=true"]);
    // kubectl has sent the DELETE once the object carries a deletionTimestamp ...
    eventually("deletionTimestamp on widget/held", || {
        let api = api.clone();
        async move {
            let w = api.get_opt("held").await.ok()??;
            w.metadata.deletion_timestamp.map(|_| ())
        }
    })
    .await;
    // ... and it must still be waiting: the finalizer holds the object.
    assert!(
        delete.running(),
        "kubectl delete returned while the finalizer was present"
    );
    assert!(api.get_opt("held").await.expect("get").is_some());

    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("remove the finalizer");
    let (status, lines) = delete.finish().await;
    assert!(status.success(), "{}", lines.join("\n"));
    assert!(
        lines
            .iter()
            // kubectl 1.35 appends " from default namespace".
            .any(|l| l.starts_with("widget.test.kube-sim.dev \"held\" deleted")),
        "{}",
        lines.join("\n")
    );
    assert!(api.get_opt("held").await.expect("get").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_object_is_refused_with_the_fields_named() {
    let cluster = Cluster::start().await;
    install_test_crds(&cluster).await;
    let out = cluster
        .kubectl(&["apply", "-f", &path("widget-invalid.yaml")])
        .await;
    let stderr = out.err();
    assert!(
        stderr.contains("The Widget \"broken\" is invalid"),
        "{stderr}"
    );
    assert!(
        stderr.contains("spec.color: Unsupported value: \"purple\""),
        "{stderr}"
    );
    assert!(stderr.contains("spec.size: Required value"), "{stderr}");

    // The same object through the client: HTTP 422 Invalid, with the causes.
    let obj: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "test.kube-sim.dev/v1",
        "kind": "Widget",
        "metadata": {"name": "broken", "namespace": "default"},
        "spec": {"color": "purple"}
    }))
    .expect("object");
    match widgets(cluster.client())
        .create(&PostParams::default(), &obj)
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert_eq!(status.reason, "Invalid", "{status:?}");
            assert!(status.message.contains("spec.color"), "{status:?}");
        }
        other => panic!("expected a 422, got {other:?}"),
    }
    let none = cluster.kubectl(&["get", "widgets", "-o", "name"]).await;
    assert_eq!(none.ok().trim(), "", "nothing was stored");
}
