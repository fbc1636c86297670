//! End-to-end with GitHub on kube-sim (Jobs run as local `sh` processes): the scenarios of
//! `common/github_scenarios.rs` (also run on the real control plane by `github_e2e_real.rs`), and
//! the GitHub configuration of `run` and of the chart.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::{Env, github_scenarios, tools_bin};
use serde_json::Value;

/// A PR opened on GitHub is reviewed by the operator and mirrored to check runs: one per step
/// plus `QMS`, on the head SHA, completed as steps pass; the manual step asks for a decision with
/// Approve/Reject; `/qms approve` by a user with write permission completes the review. Closing
/// the PR deletes the review past both finalizers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_request_review_is_mirrored_to_check_runs_and_approved_by_comment() {
    github_scenarios::pull_request_review_is_mirrored_to_check_runs_and_approved_by_comment(
        &Env::start().await,
    )
    .await;
}

/// A push (`synchronize`) mid-run: the old SHA's open check runs are completed as `cancelled`, the
/// new SHA gets its own; the new run completes. Then closing the PR mid-way through a later run
/// cancels what is open and the review goes past both finalizers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_mid_run_cancels_the_old_checks_and_reviews_the_new_sha() {
    github_scenarios::push_mid_run_cancels_the_old_checks_and_reviews_the_new_sha(
        &Env::start().await,
    )
    .await;
}

/// GitHub answers 503 for a part of the run: the review goes on (Jobs, gates, the approval from a
/// trusted login), and once GitHub is back the check runs converge to the final state with
/// every check created once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_outage_does_not_stop_the_review_and_checks_converge_after() {
    github_scenarios::github_outage_does_not_stop_the_review_and_checks_converge_after(
        &Env::start().await,
    )
    .await;
}

/// `run --github` (or QMS_GITHUB_ENABLED=true) stops before connecting anywhere when the GitHub
/// configuration is unusable, naming the variable and never echoing a secret; a usable one gets
/// past configuration (and then fails on the missing cluster).
#[test]
fn run_with_github_refuses_a_bad_configuration_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], vars: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_qms-operator"));
        cmd.arg("run").args(args).env_clear();
        cmd.env("KUBECONFIG", dir.path().join("none"));
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let hook = "whsec-topsecret-9f8e";
    let token = "ghp_topsecrettoken77";

    let (code, err) = run(&["--github"], &[("QMS_GITHUB_WEBHOOK_SECRET", hook)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("QMS_GITHUB_TOKEN"), "{err}");
    assert!(!err.contains(hook), "{err}");

    let (code, err) = run(
        &[],
        &[
            ("QMS_GITHUB_ENABLED", "true"),
            ("QMS_GITHUB_SECRET_DIR", "/nonexistent/qms-github"),
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("QMS_GITHUB_SECRET_DIR"), "{err}");

    let (code, err) = run(&["--github"], &[("QMS_GITHUB_TOKEN", token)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("QMS_GITHUB_WEBHOOK_SECRET"), "{err}");
    assert!(!err.contains(token), "{err}");

    // The mounted Secret directory: an App with a key that is not one.
    let secrets = dir.path().join("github");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("webhook-secret"), format!("{hook}\n")).unwrap();
    std::fs::write(secrets.join("app-id"), "424242\n").unwrap();
    std::fs::write(secrets.join("private-key"), "KEYMATERIAL-not-a-pem").unwrap();
    let dir_var = ("QMS_GITHUB_SECRET_DIR", secrets.to_str().unwrap());
    let (code, err) = run(&["--github"], &[dir_var]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("QMS_GITHUB_PRIVATE_KEY"), "{err}");
    assert!(!err.contains("KEYMATERIAL") && !err.contains(hook), "{err}");

    std::fs::remove_file(secrets.join("app-id")).unwrap();
    std::fs::remove_file(secrets.join("private-key")).unwrap();
    std::fs::write(secrets.join("token"), format!("{token}\n")).unwrap();
    for (args, var, value) in [
        (
            &["--github", "--namespace", "team-a"][..],
            "QMS_GITHUB_NAMESPACE",
            "qms",
        ),
        (&["--github"][..], "QMS_GITHUB_TRUSTED_PERMISSION", "god"),
        (
            &["--github"][..],
            "QMS_GITHUB_API_URL",
            "ftp://github.example.com",
        ),
    ] {
        let (code, err) = run(args, &[dir_var, (var, value)]);
        assert_eq!(code, Some(2), "{var}: {err}");
        assert!(err.contains(var), "{var}: {err}");
        assert!(!err.contains(token) && !err.contains(hook), "{err}");
    }

    // The variable that enables GitHub takes the usual words for yes and no, and only those.
    let (code, err) = run(&[], &[("QMS_GITHUB_ENABLED", "maybe")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("maybe") && err.contains("--github"), "{err}");
    let (code, err) = run(&[], &[("QMS_GITHUB_ENABLED", "1")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("QMS_GITHUB_WEBHOOK_SECRET"),
        "enabled by 1: {err}"
    );

    // Usable: configuration passes, the missing cluster is what stops it.
    let (code, err) = run(
        &["--github", "--namespace", "qms"],
        &[dir_var, ("QMS_GITHUB_NAMESPACE", "qms")],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("kubeconfig"), "{err}");
    assert!(!err.contains(token) && !err.contains(hook), "{err}");
}

/// The chart with `github.enabled=true` configures the operator as it reads its configuration:
/// every QMS_GITHUB_* variable it sets is one the operator reads, the Secret is mounted where
/// QMS_GITHUB_SECRET_DIR points, and the binary started with exactly that environment turns
/// GitHub on and accepts it once the Secret has its keys.
#[test]
fn chart_with_github_enabled_gives_a_configuration_the_operator_accepts() {
    let helm = tools_bin().join("helm");
    assert!(
        helm.exists(),
        "helm not found at {} (set QMS_TOOLS_BIN or run scripts/install-tools.sh)",
        helm.display()
    );
    let chart =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../charts/qms-operator");
    let out = std::process::Command::new(&helm)
        .args(["template", "qms", "--namespace", "qms"])
        .arg(&chart)
        .args([
            "--set",
            "github.enabled=true",
            "--set",
            "github.existingSecret=qms-github",
            "--set",
            "github.trustedLogins={alice,bob}",
            "--set",
            "github.detailsUrl=https://qms.example.com/{namespace}/{name}",
            "--set",
            "watchNamespaces={qms}",
        ])
        .output()
        .unwrap();
    let rendered = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> = serde_saphyr::from_multiple(&rendered).expect("rendered YAML");
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    // Plain values, and the pod's name and namespace from the downward API (leader election).
    let mut downward = BTreeMap::new();
    let env: BTreeMap<String, String> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| {
            let name = e["name"].as_str().unwrap().to_owned();
            match e["value"].as_str() {
                Some(v) => Some((name, v.to_owned())),
                None => {
                    let path = e["valueFrom"]["fieldRef"]["fieldPath"]
                        .as_str()
                        .expect("plain values or a fieldRef only");
                    downward.insert(name, path.to_owned());
                    None
                }
            }
        })
        .collect();
    assert_eq!(
        downward,
        BTreeMap::from([
            ("POD_NAME".to_owned(), "metadata.name".to_owned()),
            ("POD_NAMESPACE".to_owned(), "metadata.namespace".to_owned()),
        ])
    );
    assert_eq!(env["QMS_LEADER_ELECT"], "true");
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["secret"]["secretName"] == "qms-github")
        .expect("the Secret is a volume");
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the Secret volume is mounted");
    assert_eq!(
        env["QMS_GITHUB_SECRET_DIR"],
        mount["mountPath"].as_str().unwrap()
    );
    assert_eq!(env["QMS_GITHUB_NAMESPACE"], "qms");
    assert_eq!(env["QMS_GITHUB_TRUSTED_LOGINS"], "alice,bob");

    // Every variable the chart sets is read: by clap (QMS_GITHUB_ENABLED) or by the GitHub
    // configuration (recorded through its lookup).
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("webhook-secret"), "whsec-chart\n").unwrap();
    std::fs::write(secrets.path().join("token"), "ghp_chart\n").unwrap();
    let mut local = env.clone();
    local.insert(
        "QMS_GITHUB_SECRET_DIR".into(),
        secrets.path().to_str().unwrap().into(),
    );
    let asked = std::sync::Mutex::new(BTreeSet::new());
    let cfg = qms_operator::config::github_config(
        |k| {
            asked.lock().unwrap().insert(k.to_owned());
            local.get(k).cloned()
        },
        &["qms".to_owned()],
    )
    .expect("the chart's configuration is accepted");
    assert_eq!(cfg.namespace, "qms");
    assert_eq!(cfg.trusted_logins, ["alice", "bob"]);
    let asked = asked.into_inner().unwrap();
    // The variables `run` reads through clap (QMS_GITHUB_ENABLED, QMS_LEADER_*...).
    let clap_env: BTreeSet<String> = {
        use clap::CommandFactory;
        let cli = qms_operator::cli::Cli::command();
        let run = cli.find_subcommand("run").expect("run").clone();
        run.get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect()
    };
    for name in env.keys().filter(|k| k.starts_with("QMS_")) {
        assert!(
            clap_env.contains(name) || asked.contains(name),
            "the chart sets {name}, which the operator does not read"
        );
    }

    // The binary with the chart's args (minus the config file) and environment.
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .filter(|a| !a.starts_with("--config"))
        .collect();
    assert_eq!(args[0], "run");
    let kube = tempfile::tempdir().unwrap();
    // The chart mounts the result endpoint's key at QMS_RESULTS_KEY_FILE; here, a local file.
    let results_key = kube.path().join("result-key");
    std::fs::write(&results_key, "chart-result-key-0123456789\n").unwrap();
    let run = |secret_dir: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_qms-operator"))
            .args(&args)
            .env_clear()
            .envs(&env)
            .env("QMS_GITHUB_SECRET_DIR", secret_dir)
            .env("KUBECONFIG", kube.path().join("none"))
            .env("QMS_RESULTS_KEY_FILE", &results_key)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // An empty Secret: GitHub is on (QMS_GITHUB_ENABLED worked) and the missing key is named.
    let empty = tempfile::tempdir().unwrap();
    let (code, err) = run(empty.path());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("QMS_GITHUB_WEBHOOK_SECRET"), "{err}");
    // With its keys the configuration passes; the missing cluster is what stops it.
    let (code, err) = run(secrets.path());
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("kubeconfig"), "{err}");
}
