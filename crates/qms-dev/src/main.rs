//! `qms-dev`: kube-sim (in-process API server whose Jobs run as local processes) with the CRDs and
//! the examples installed, and the real operator running against it. Writes a kubeconfig and
//! prints the kubectl commands to watch a review and approve the manual step.
//!
//! Its own binary so that the operator's (`qms-operator`, the container image) links neither
//! kube-sim nor its kubelet, which runs pod commands as local processes.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kube::{Api, Client, ResourceExt};
use qms_api::{QmsWorkflow, WorkflowState};
use qms_operator::cli::LogFormat;
use qms_operator::dev::{EXAMPLES, apply_yaml, approve, install_crds, waiting_step};
use qms_operator::{OperatorHandle, Settings};

/// Start an in-process API server (kube-sim) with the CRDs and examples and run the operator
/// against it: a complete local playground, no cluster needed.
#[derive(Debug, Parser)]
#[command(name = "qms-dev", version, about)]
struct DevArgs {
    /// Log format.
    #[arg(long, env = "QMS_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Address of the in-process API server (port 0 picks a free one).
    #[arg(long, env = "QMS_DEV_API_ADDR", default_value = "127.0.0.1:0")]
    api_addr: SocketAddr,
    /// Where to write the kubeconfig for kubectl.
    #[arg(long, env = "QMS_DEV_KUBECONFIG", default_value = "qms-dev.kubeconfig")]
    kubeconfig: PathBuf,
    /// Address of the operator's HTTP server (/metrics, /healthz, /readyz).
    #[arg(long, env = "QMS_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    http_addr: SocketAddr,
    /// Apply the YAML files of this directory instead of the built-in examples.
    #[arg(long)]
    examples_dir: Option<PathBuf>,
    /// Approve every manual step as this user as soon as it waits (for smoke tests).
    #[arg(long)]
    approve_as: Option<String>,
    /// Exit once every workflow reached a final state (exit code 0 when all COMPLETED).
    #[arg(long)]
    exit_when_complete: bool,
    /// Namespace the examples are applied to.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Enable the GitHub integration as `qms-operator run --github` does (QMS_GITHUB_* variables,
    /// see `qms-operator run --help`): webhooks on POST /webhooks/github of --http-addr, check
    /// runs on the configured GitHub. Point a webhook (e.g. through a tunnel) at it to review
    /// real PRs here.
    #[arg(long, env = "QMS_GITHUB_ENABLED", value_parser = clap::builder::BoolishValueParser::new())]
    github: bool,
}

/// Its own progress lines are the output a person reads; logs only for problems (RUST_LOG=info
/// shows everything `qms-operator run` would log).
const LOG_FILTER: &str = "warn";

#[tokio::main]
async fn main() -> ExitCode {
    let args = DevArgs::parse();
    let _ = qms_operator::cli::init_tracing(args.log_format, LOG_FILTER, None);
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("qms-dev: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    // Checked before anything starts, like `qms-operator run` does.
    let github = if args.github {
        Some(
            qms_operator::config::github_config(|k| std::env::var(k).ok(), &[])
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
    let texts = read_manifests(args.examples_dir.as_deref())?;
    // Catalog first, workflows once the operator's caches are synced, whatever the file order.
    let (workflows, catalog): (Vec<_>, Vec<_>) = texts
        .into_iter()
        .partition(|(_, text)| text.contains("kind: QmsWorkflow"));
    apply_all(&client, &args.namespace, &catalog).await?;

    let settings = Settings {
        http_addr: args.http_addr,
        github,
        // A fixed, public key: tokens of running tasks survive a restart of qms-dev.
        results: qms_operator::results::ResultsSettings {
            key: qms_operator::results::ResultKey::new(qms_operator::results::DEV_KEY),
            ..Default::default()
        },
        ..Settings::default()
    };
    let operator_client = sim.client_with_user_agent(qms_operator::USER_AGENT)?;
    let handle = qms_operator::start(
        operator_client,
        settings,
        qms_operator::Http::On { extra: None },
    )
    .await?;
    handle.wait_ready().await;
    tracing::debug!("caches synced; applying workflows");
    apply_all(&client, &args.namespace, &workflows).await?;

    print_instructions(&args, &client, sim.base_url(), &handle).await?;
    let code = follow(&args, &client).await;
    handle.stop().await;
    sim.stop().await;
    Ok(code)
}

/// `(file name, text)` of every YAML file of `dir` (sorted by name), or of the built-in examples.
fn read_manifests(dir: Option<&std::path::Path>) -> anyhow::Result<Vec<(String, String)>> {
    let Some(dir) = dir else {
        return Ok(EXAMPLES
            .iter()
            .map(|(name, text)| (format!("examples/{name}"), (*text).to_owned()))
            .collect());
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| Ok((f.display().to_string(), std::fs::read_to_string(&f)?)))
        .collect()
}

async fn apply_all(client: &Client, ns: &str, texts: &[(String, String)]) -> anyhow::Result<()> {
    for (file, text) in texts {
        apply_yaml(client, ns, text)
            .await
            .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    }
    Ok(())
}

/// Where everything is and the kubectl commands to watch and approve the first workflow.
async fn print_instructions(
    args: &DevArgs,
    client: &Client,
    api_url: &str,
    handle: &OperatorHandle,
) -> anyhow::Result<()> {
    let kc = args.kubeconfig.display().to_string();
    let ns = &args.namespace;
    let api: Api<QmsWorkflow> = Api::namespaced(client.clone(), ns);
    let first = api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .next();
    println!("qms-dev: API server {api_url} (kube-sim), kubeconfig written to {kc}");
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
        // A literal name: `$USER` would not expand inside the single-quoted JSON.
        let by = std::env::var("USER").unwrap_or_else(|_| "you".to_owned());
        println!(
            "  {}",
            approve_command(&kc, ns, &name, "final-review", &wf.spec.head_sha, &by)
        );
        println!("(or reject: the same command with \"decision\":\"reject\").");
    }
    println!();
    println!("Ctrl-C stops the API server and the operator.");
    Ok(())
}

/// The single `kubectl patch` that approves a manual step.
fn approve_command(kc: &str, ns: &str, workflow: &str, step: &str, sha: &str, by: &str) -> String {
    format!(
        r#"kubectl --kubeconfig {kc} -n {ns} patch qmsworkflow {workflow} --type=json -p '[{{"op":"add","path":"/spec/approvals/-","value":{{"step":"{step}","decision":"approve","by":"{by}","reason":"reviewed","sha":"{sha}"}}}}]'"#
    )
}

/// Prints every workflow's state change (and approves waiting steps with `--approve-as`) until
/// Ctrl-C, or with `--exit-when-complete` until every workflow is final.
async fn follow(args: &DevArgs, client: &Client) -> ExitCode {
    let api: Api<QmsWorkflow> = Api::namespaced(client.clone(), &args.namespace);
    let mut last: BTreeMap<String, WorkflowState> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
        let Ok(list) = api.list(&Default::default()).await else {
            continue;
        };
        let mut all_final = !list.items.is_empty();
        let mut all_completed = true;
        for wf in &list.items {
            let state = report_state(wf, &mut last);
            if let Some(by) = &args.approve_as {
                approve_waiting(client, &args.namespace, wf, by).await;
            }
            all_final &= state.is_terminal();
            all_completed &= state == WorkflowState::Completed;
        }
        if args.exit_when_complete && all_final {
            return if all_completed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    }
}

/// Prints `name: STATE step gates` when the workflow's state changed since the last print.
fn report_state(wf: &QmsWorkflow, last: &mut BTreeMap<String, WorkflowState>) -> WorkflowState {
    let name = wf.name_any();
    let state = qms_operator::observe::state_of(wf);
    if last.get(&name) != Some(&state) {
        let status = wf.status.as_ref();
        let step = status.and_then(|s| s.current_step.clone());
        let gates = status.and_then(|s| s.gates.clone());
        println!(
            "{name}: {state} {} {}",
            step.unwrap_or_default(),
            gates.unwrap_or_default()
        );
        last.insert(name, state);
    }
    state
}

/// Approves the manual step `wf` waits on, once per head SHA.
async fn approve_waiting(client: &Client, ns: &str, wf: &QmsWorkflow, by: &str) {
    let Some(step) = waiting_step(wf) else {
        return;
    };
    let sha = &wf.spec.head_sha;
    if wf
        .spec
        .approvals
        .iter()
        .any(|a| a.step == step && &a.sha == sha)
    {
        return;
    }
    let name = wf.name_any();
    println!("{name}: approving {step} as {by}");
    if let Err(e) = approve(client, ns, &name, &step, sha, by, "approve").await {
        eprintln!("{name}: approval failed: {e}");
    }
}
