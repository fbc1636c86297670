//! `kube-sim --addr 127.0.0.1:PORT --kubeconfig PATH [--state FILE]`: serves until stopped.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kube_sim::{FaultRule, KubeSim};

#[derive(Parser, Debug)]
#[command(
    name = "kube-sim",
    about = "An in-process Kubernetes API server for tests and local runs (not for production)"
)]
struct Args {
    /// Address to listen on (plain HTTP).
    #[arg(long, default_value = "127.0.0.1:6443")]
    addr: SocketAddr,
    /// Where to write a kubeconfig for kubectl / helm / kube-rs.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Write-ahead log: every write is appended and fsynced before it is answered, and replayed on start.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Do not run the built-in Job controller and kubelet.
    #[arg(long)]
    no_kubelet: bool,
    /// Inject a fault, e.g. `code=500,verb=get,resource=pods,probability=0.1`,
    /// `code=429,retry-after=2,times=5` or `code=500,verb=watch,user-agent=qms-operator` (only
    /// clients whose User-Agent starts with that). Repeatable.
    #[arg(long = "fault")]
    faults: Vec<FaultRule>,
    /// Seed for probabilistic faults.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Added latency for every request, in milliseconds.
    #[arg(long)]
    latency_ms: Option<u64>,
    /// End each watch stream after this many events.
    #[arg(long)]
    watch_drop_after: Option<u64>,
    /// Watch events kept per resource (older resourceVersions get 410 Gone).
    #[arg(long, default_value_t = 1000)]
    watch_history: usize,
    /// Seconds between BOOKMARK events on watches that allow them.
    #[arg(long, default_value_t = 10)]
    bookmark_seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut builder = KubeSim::builder()
        .addr(args.addr)
        .kubeconfig_path(&args.kubeconfig)
        .seed(args.seed)
        .watch_history(args.watch_history)
        .bookmark_interval(Duration::from_secs(args.bookmark_seconds.max(1)));
    if let Some(state) = &args.state {
        builder = builder.state_file(state);
    }
    if args.no_kubelet {
        builder = builder.without_kubelet();
    }
    for f in args.faults {
        builder = builder.fault(f);
    }
    let sim = builder.start().await?;
    if let Some(ms) = args.latency_ms {
        sim.faults()
            .set_latency(None, None, Duration::from_millis(ms));
    }
    if args.watch_drop_after.is_some() {
        sim.faults().drop_watches_after(args.watch_drop_after);
    }
    eprintln!(
        "kube-sim serving {} (kubeconfig {})",
        sim.base_url(),
        sim.kubeconfig_path().display()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    sim.stop().await;
    Ok(())
}
