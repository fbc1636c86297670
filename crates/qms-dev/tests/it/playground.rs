//! The README's first command: `qms-dev` brings up kube-sim with the examples and the operator,
//! writes a kubeconfig and walks the example review to COMPLETED (here approved by `--approve-as`).

use std::process::Command;

/// The example workflow (examples/qmsworkflow-pr-12345.yaml).
const WORKFLOW: &str = "creo-roo-commander-pr-12345";
const SHA: &str = "3f7c2a9d41e8b6c05d9a7e1f2b3c4d5e6f708192";

#[test]
fn the_playground_runs_the_example_review_to_completion() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("qms-dev.kubeconfig");
    let out = Command::new(env!("CARGO_BIN_EXE_qms-dev"))
        .args(["--api-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--approve-as", "ci-bot", "--exit-when-complete"])
        // No GitHub from the environment of whoever runs the tests.
        .env_remove("QMS_GITHUB_ENABLED")
        .env("USER", "dev-user")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    let kc = kubeconfig.display().to_string();
    assert!(
        stdout.contains(&format!("kubeconfig written to {kc}")),
        "{stdout}"
    );
    let config = std::fs::read_to_string(&kubeconfig).expect("the kubeconfig is written");
    assert!(config.contains("server: http://127.0.0.1:"), "{config}");
    // The printed approval command names the example workflow, its SHA and the user.
    let approve = stdout
        .lines()
        .find(|l| l.contains("patch qmsworkflow"))
        .expect("an approval command is printed");
    assert!(
        approve.contains(&format!(
            "kubectl --kubeconfig {kc} -n default patch qmsworkflow {WORKFLOW} "
        )) && approve.contains(&format!(
            r#""step":"final-review","decision":"approve","by":"dev-user","reason":"reviewed","sha":"{SHA}""#
        )),
        "{approve}"
    );
    // The review walked through the manual step to the end.
    let progress: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with(&format!("{WORKFLOW}: ")))
        .collect();
    assert!(
        progress.contains(&format!("{WORKFLOW}: approving final-review as ci-bot").as_str()),
        "{stdout}"
    );
    assert!(
        progress.iter().any(|l| l.contains(": FINAL_PENDING ")),
        "{stdout}"
    );
    assert!(
        progress.last().is_some_and(|l| l.contains(": COMPLETED ")),
        "{stdout}"
    );
}
