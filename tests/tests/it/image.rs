//! The container image holds only the operator: the package the Dockerfile builds, with the
//! features it builds it with, depends (normal edges, what `cargo build --release` links) on
//! neither kube-sim nor kube-sim-kubelet. The local playground on kube-sim is the `qms-dev` crate.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Test machinery that must never be linked into the image.
const SIMULATOR: [&str; 2] = ["kube-sim", "kube-sim-kubelet"];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The arguments of the Dockerfile's `cargo build` that choose what is built: the package and
/// its features. Any other flag (`--release`, `--locked`, `--target-dir`...) does not change
/// which crates are linked.
fn dockerfile_build_selection(dockerfile: &str) -> Vec<String> {
    let line = dockerfile
        .lines()
        .find(|l| l.trim_start().starts_with("RUN") && l.contains("cargo build"))
        .expect("the Dockerfile has a `RUN cargo build` line");
    let args: Vec<&str> = line
        .split_once("cargo build")
        .map(|(_, rest)| rest.split_whitespace().take_while(|a| !a.starts_with("&&")))
        .expect("split on `cargo build`")
        .collect();
    let mut selection = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match *arg {
            "-p" | "--package" | "-F" | "--features" => {
                selection.push((*arg).to_owned());
                selection.push(it.next().expect("a value after the flag").to_string());
            }
            "--all-features" | "--no-default-features" => selection.push((*arg).to_owned()),
            a if a.starts_with("--package=") || a.starts_with("--features=") => {
                selection.push(a.to_owned())
            }
            "--workspace" | "--all" => panic!("the Dockerfile builds the whole workspace: {line}"),
            _ => {}
        }
    }
    selection
}

/// Names of every package in the normal-dependency tree `cargo tree <selection>` prints.
fn normal_dependencies(root: &Path, selection: &[String]) -> Vec<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root)
        .arg("tree")
        .args(selection)
        .args(["--edges", "normal", "--prefix", "none", "--format", "{p}"])
        .args(["--offline", "--locked"])
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree {selection:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn the_image_links_no_simulator() {
    let root = repo_root();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    let selection = dockerfile_build_selection(&dockerfile);
    assert!(
        selection
            .windows(2)
            .any(|w| w[0] == "-p" && w[1] == "qms-operator")
            || selection.iter().any(|a| a == "--package=qms-operator"),
        "the Dockerfile builds the operator package: {selection:?}"
    );
    assert!(
        dockerfile.contains("target/release/qms-operator "),
        "the image copies the operator binary"
    );

    let deps = normal_dependencies(&root, &selection);
    // The tree is the operator's, not an empty or unparsed output.
    for expected in [
        "qms-operator",
        "qms-api",
        "qms-engine",
        "qms-github",
        "kube",
    ] {
        assert!(
            deps.iter().any(|d| d == expected),
            "{expected} missing in {deps:?}"
        );
    }
    let linked: Vec<&String> = deps
        .iter()
        .filter(|d| SIMULATOR.contains(&d.as_str()))
        .collect();
    assert!(
        linked.is_empty(),
        "the image would link {linked:?}: keep them dev-dependencies of qms-operator (the playground is crates/qms-dev)"
    );
}

/// The shared test helpers (crates/qms-testkit) are a dev-dependency only: the image never links
/// them.
#[test]
fn the_image_links_no_test_helpers() {
    let root = repo_root();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    let deps = normal_dependencies(&root, &dockerfile_build_selection(&dockerfile));
    assert!(
        deps.iter().any(|d| d == "qms-operator"),
        "qms-operator missing in {deps:?}"
    );
    assert!(
        !deps.iter().any(|d| d == "qms-testkit"),
        "the image would link qms-testkit: keep it under [dev-dependencies]"
    );
}

/// The same reading finds the simulator where it belongs, so the check above can fail.
#[test]
fn the_playground_links_the_simulator() {
    let deps = normal_dependencies(&repo_root(), &["-p".to_owned(), "qms-dev".to_owned()]);
    for name in SIMULATOR.iter().chain(&["qms-operator"]) {
        assert!(deps.iter().any(|d| d == name), "{name} missing in {deps:?}");
    }
}

#[test]
fn the_build_selection_is_read_from_the_dockerfile() {
    let sel = dockerfile_build_selection(
        "FROM x\nRUN cargo build --release --locked -p qms-operator --features a,b && strip x\n",
    );
    assert_eq!(sel, ["-p", "qms-operator", "--features", "a,b"]);
    let sel = dockerfile_build_selection("RUN cargo build --package=qms-operator --all-features");
    assert_eq!(sel, ["--package=qms-operator", "--all-features"]);
}
