//! `--state` write-ahead log: the state survives a restart of the library server and a SIGKILL
//! of the binary.

use crate::support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kube_sim::KubeSim;
use serde_json::json;
use support::*;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": name}})).unwrap()
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.wal");
    let (rv_before, uid) = {
        let sim = KubeSim::builder()
            .without_kubelet()
            .state_file(&state)
            .start()
            .await
            .unwrap();
        let client = sim.client();
        install_widget_crd(&client).await;
        create_widget(&client, "persisted", json!({"color": "blue"})).await;
        let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
        let kept = api
            .create(&PostParams::default(), &cm("kept"))
            .await
            .unwrap();
        api.create(&PostParams::default(), &cm("gone"))
            .await
            .unwrap();
        api.delete("gone", &Default::default()).await.unwrap();
        let rv: u64 = api
            .list(&ListParams::default())
            .await
            .unwrap()
            .metadata
            .resource_version
            .unwrap()
            .parse()
            .unwrap();
        sim.stop().await;
        (rv, kept.metadata.uid.unwrap())
    };
    let sim = KubeSim::builder()
        .without_kubelet()
        .state_file(&state)
        .start()
        .await
        .unwrap();
    let client = sim.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let kept = api.get("kept").await.unwrap();
    assert_eq!(kept.metadata.uid.as_deref(), Some(uid.as_str()));
    assert!(api.get_opt("gone").await.unwrap().is_none());
    // The CRD is served again and its instance is back.
    let w = widgets(&client, "default").get("persisted").await.unwrap();
    assert_eq!(w.data["spec"]["color"], "blue");
    // resourceVersions continue upwards.
    let created = api
        .create(&PostParams::default(), &cm("new"))
        .await
        .unwrap();
    let rv: u64 = created.metadata.resource_version.unwrap().parse().unwrap();
    assert!(rv > rv_before, "{rv} > {rv_before}");
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn spawn_binary(
    port: u16,
    kubeconfig: &std::path::Path,
    state: &std::path::Path,
) -> (Proc, kube::Client) {
    let child = Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args([
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--no-kubelet",
            "--kubeconfig",
        ])
        .arg(kubeconfig)
        .arg("--state")
        .arg(state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kube-sim");
    let proc = Proc(child);
    // Bounded wait for the server to come up (it writes the kubeconfig once listening).
    let client = qms_testkit::poll_for(
        Duration::from_secs(15),
        Duration::from_millis(50),
        || async {
            if !kubeconfig.exists() {
                return None;
            }
            let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .unwrap();
            let client = kube::Client::try_from(config).unwrap();
            client.apiserver_version().await.is_ok().then_some(client)
        },
    )
    .await
    .expect("kube-sim binary did not start");
    (proc, client)
}

#[tokio::test]
async fn binary_loses_nothing_on_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.wal");
    let kubeconfig = dir.path().join("kubeconfig");
    let port = free_port();
    {
        let (mut proc, client) = spawn_binary(port, &kubeconfig, &state).await;
        let api: Api<ConfigMap> = Api::default_namespaced(client);
        for i in 0..20 {
            api.create(&PostParams::default(), &cm(&format!("c{i}")))
                .await
                .unwrap();
        }
        proc.0.kill().unwrap(); // SIGKILL: no shutdown code runs
        proc.0.wait().unwrap();
    }
    std::fs::remove_file(&kubeconfig).unwrap();
    let (_proc, client) = spawn_binary(free_port(), &kubeconfig, &state).await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let names: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(names.len(), 20, "{names:?}");
    assert_eq!(api.get("c19").await.unwrap().data.unwrap()["k"], "c19");
}
