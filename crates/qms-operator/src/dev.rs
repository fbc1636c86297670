//! `qms-operator dev`: kube-sim (in-process API server whose Jobs run as local processes) with the
//! CRDs and the examples installed, and the operator running against it. Writes a kubeconfig and
//! prints the kubectl commands to watch a review and approve the manual step.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use qms_api::{Agent, QmsWorkflow, QualityGate, WorkflowState, WorkflowTemplate};
use serde_json::Value;

use crate::config::Settings;

/// The examples shipped with the repository, embedded so `dev` works from any directory.
pub const EXAMPLES: [(&str, &str); 4] = [
    ("agents.yaml", include_str!("../../../examples/agents.yaml")),
    (
        "quality-gates.yaml",
        include_str!("../../../examples/quality-gates.yaml"),
    ),
    (
        "standard-qms-review.yaml",
        include_str!("../../../examples/standard-qms-review.yaml"),
    ),
    (
        "qmsworkflow-pr-12345.yaml",
        include_str!("../../../examples/qmsworkflow-pr-12345.yaml"),
    ),
];

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Address of the in-process API server (port 0 picks a free one).
    #[arg(long, env = "QMS_DEV_API_ADDR", default_value = "127.0.0.1:0")]
    pub api_addr: SocketAddr,
    /// Where to write the kubeconfig for kubectl.
    #[arg(long, env = "QMS_DEV_KUBECONFIG", default_value = "qms-dev.kubeconfig")]
    pub kubeconfig: PathBuf,
    /// Address of the operator's HTTP server (/metrics, /healthz, /readyz).
    #[arg(long, env = "QMS_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Apply the YAML files of this directory instead of the built-in examples.
    #[arg(long)]
    pub examples_dir: Option<PathBuf>,
    /// Approve every manual step as this user as soon as it waits (for smoke tests).
    #[arg(long)]
    pub approve_as: Option<String>,
    /// Exit once every workflow reached a final state (exit code 0 when all COMPLETED).
    #[arg(long)]
    pub exit_when_complete: bool,
    /// Namespace the examples are applied to.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Enable the GitHub integration as `run --github` does (QMS_GITHUB_* variables, see
    /// `run --help`): webhooks on POST /webhooks/github of --http-addr, check runs on the
    /// configured GitHub. Point a webhook (e.g. through a tunnel) at it to review real PRs here.
    #[arg(long, env = "QMS_GITHUB_ENABLED", value_parser = clap::builder::BoolishValueParser::new())]
    pub github: bool,
}

/// Installs the four CRDs (create or update) and waits until they are served.
pub async fn install_crds(client: &Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, crd) in qms_api::crds::all() {
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply("qms-dev").force(),
            &Patch::Apply(&crd),
        )
        .await
        .map_err(|e| anyhow::anyhow!("installing CRD {name}: {e}"))?;
    }
    for (_, crd) in qms_api::crds::all() {
        let name = crd.name_any();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let c = api.get(&name).await?;
            let established = c
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
            if established {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("CRD {name} did not become Established");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Creates (or replaces the spec of) every qms object in a multi-document YAML text.
pub async fn apply_yaml(
    client: &Client,
    namespace: &str,
    text: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)?;
    tracing::debug!(docs = docs.len(), "parsed");
    let mut applied = Vec::new();
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match kind.as_str() {
            "Agent" => apply_one::<Agent>(client, namespace, doc).await?,
            "QualityGate" => apply_one::<QualityGate>(client, namespace, doc).await?,
            "WorkflowTemplate" => apply_one::<WorkflowTemplate>(client, namespace, doc).await?,
            "QmsWorkflow" => apply_one::<QmsWorkflow>(client, namespace, doc).await?,
            other => anyhow::bail!("{name}: unsupported kind {other:?}"),
        }
        applied.push((kind, name));
    }
    Ok(applied)
}

async fn apply_one<K>(client: &Client, namespace: &str, doc: Value) -> anyhow::Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(doc)?;
    let name = obj.name_any();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            api.patch(
                &name,
                &PatchParams::apply("qms-dev").force(),
                &Patch::Apply(&obj),
            )
            .await?;
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("creating {} {name}: {e}", K::kind(&()))),
    }
}

/// The single `kubectl patch` that approves (or rejects) a manual step.
pub fn approve_command(
    kubeconfig: &str,
    namespace: &str,
    workflow: &str,
    step: &str,
    sha: &str,
    by: &str,
    decision: &str,
) -> String {
    format!(
        r#"kubectl --kubeconfig {kubeconfig} -n {namespace} patch qmsworkflow {workflow} --type=json -p '[{{"op":"add","path":"/spec/approvals/-","value":{{"step":"{step}","decision":"{decision}","by":"{by}","reason":"reviewed","sha":"{sha}"}}}}]'"#
    )
}

/// Appends an approval through the API (the same JSON patch the printed command sends).
pub async fn approve(
    client: &Client,
    namespace: &str,
    workflow: &str,
    step: &str,
    sha: &str,
    by: &str,
    decision: &str,
) -> anyhow::Result<()> {
    let api: Api<QmsWorkflow> = Api::namespaced(client.clone(), namespace);
    let patch: json_patch_value::Patch = serde_json::from_value(serde_json::json!([
        {"op": "add", "path": "/spec/approvals/-", "value": {
            "step": step, "decision": decision, "by": by, "reason": "reviewed", "sha": sha
        }}
    ]))?;
    api.patch(workflow, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await?;
    Ok(())
}

/// kube's JSON patch type.
mod json_patch_value {
    pub use json_patch::Patch;
}

/// The manual step currently waiting for a decision, if any.
pub fn waiting_step(wf: &QmsWorkflow) -> Option<String> {
    let status = wf.status.as_ref()?;
    status
        .steps
        .iter()
        .find(|s| s.phase == qms_api::StepPhase::WaitingForApproval)
        .map(|s| s.name.clone())
}

pub async fn run(args: DevArgs) -> ExitCode {
    match run_inner(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("qms-operator dev: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_inner(args: DevArgs) -> anyhow::Result<ExitCode> {
    // Checked before anything starts, like `run` does.
    let github = if args.github {
        Some(
            crate::config::github_config(|k| std::env::var(k).ok(), &[])
                .map_err(|e| anyhow::anyhow!("configuration error: {e}"))?,
        )
    } else {
        None
    };
    let sim = kube_sim::KubeSim::builder()
        .addr(args.api_addr)
        .kubeconfig_path(&args.kubeconfig)
        .start()
        .await?;
    let client = sim.client();
    install_crds(&client).await?;

    let mut texts: Vec<(String, String)> = Vec::new();
    match &args.examples_dir {
        Some(dir) => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            for f in files {
                texts.push((f.display().to_string(), std::fs::read_to_string(&f)?));
            }
        }
        None => {
            for (name, text) in EXAMPLES {
                texts.push((format!("examples/{name}"), text.to_owned()));
            }
        }
    }
    // Catalog first, workflows last, whatever the file order.
    let mut workflows_text = Vec::new();
    for (file, text) in &texts {
        if text.contains("kind: QmsWorkflow") {
            workflows_text.push((file.clone(), text.clone()));
            continue;
        }
        apply_yaml(&client, &args.namespace, text)
            .await
            .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    }

    let settings = Settings {
        http_addr: args.http_addr,
        github,
        ..Settings::default()
    };
    let operator_client = sim.client_with_user_agent(crate::USER_AGENT)?;
    let handle = crate::start(operator_client, settings, crate::Http::On { extra: None }).await?;
    handle.wait_ready().await;
    tracing::debug!("caches synced; applying workflows");
    for (file, text) in &workflows_text {
        apply_yaml(&client, &args.namespace, text)
            .await
            .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    }

    let kc = args.kubeconfig.display().to_string();
    let ns = &args.namespace;
    let api: Api<QmsWorkflow> = Api::namespaced(client.clone(), ns);
    let first = api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .next();
    println!(
        "qms-operator dev: API server {} (kube-sim), kubeconfig written to {kc}",
        sim.base_url()
    );
    println!(
        "  metrics:   http://{}/metrics",
        handle.http_addr.unwrap_or(args.http_addr)
    );
    println!();
    println!("Watch the reviews:");
    println!("  kubectl --kubeconfig {kc} -n {ns} get qmsworkflows -w");
    if let Some(wf) = &first {
        let name = wf.name_any();
        println!("  kubectl --kubeconfig {kc} -n {ns} describe qmsworkflow {name}");
        println!("  kubectl --kubeconfig {kc} -n {ns} get qms,jobs");
        println!();
        println!("When it reaches FINAL_PENDING, approve the final review:");
        println!(
            "  {}",
            approve_command(
                &kc,
                ns,
                &name,
                "final-review",
                &wf.spec.head_sha,
                // A literal name: `$USER` would not expand inside the single-quoted JSON.
                &std::env::var("USER").unwrap_or_else(|_| "you".to_owned()),
                "approve"
            )
        );
        println!("(or reject: the same command with \"decision\":\"reject\").");
    }
    println!();
    println!("Ctrl-C stops the API server and the operator.");

    let mut last: BTreeMap<String, WorkflowState> = BTreeMap::new();
    let code = loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break ExitCode::SUCCESS,
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
        let Ok(list) = api.list(&Default::default()).await else {
            continue;
        };
        let mut all_final = !list.items.is_empty();
        let mut all_completed = true;
        for wf in &list.items {
            let name = wf.name_any();
            let state = crate::observe::state_of(wf);
            if last.get(&name) != Some(&state) {
                let step = wf
                    .status
                    .as_ref()
                    .and_then(|s| s.current_step.clone())
                    .unwrap_or_default();
                let gates = wf
                    .status
                    .as_ref()
                    .and_then(|s| s.gates.clone())
                    .unwrap_or_default();
                println!("{name}: {state} {step} {gates}");
                last.insert(name.clone(), state);
            }
            if let (Some(by), Some(step)) = (&args.approve_as, waiting_step(wf)) {
                let sha = wf.spec.head_sha.clone();
                let already = wf
                    .spec
                    .approvals
                    .iter()
                    .any(|a| a.step == step && a.sha == sha);
                if !already {
                    println!("{name}: approving {step} as {by}");
                    if let Err(e) = approve(&client, ns, &name, &step, &sha, by, "approve").await {
                        eprintln!("{name}: approval failed: {e}");
                    }
                }
            }
            all_final &= state.is_terminal();
            all_completed &= state == WorkflowState::Completed;
        }
        if args.exit_when_complete && all_final {
            break if all_completed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    };
    handle.stop().await;
    sim.stop().await;
    Ok(code)
}
