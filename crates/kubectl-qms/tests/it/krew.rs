//! The krew manifest (deploy/krew/qms.yaml) is a valid krew plugin manifest for this binary and
//! version, and scripts/krew-manifest.sh turns it into the release manifest with each archive's
//! real sha256. The checks are krew's own (its `index/validation` rules): apiVersion and kind,
//! a safe name equal to the file name, a one-line short description, a `v` semver version,
//! platforms with uri, a 64-hex sha256, bin, non-empty files and an os/arch selector.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;
use sha2::{Digest, Sha256};

const PLATFORMS: [(&str, &str); 4] = [
    ("linux", "amd64"),
    ("linux", "arm64"),
    ("darwin", "amd64"),
    ("darwin", "arm64"),
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// krew's `index.Plugin`; unknown fields are refused so a misspelt key fails here too.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Plugin {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: Spec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Spec {
    version: String,
    homepage: Option<String>,
    short_description: String,
    description: Option<String>,
    caveats: Option<String>,
    platforms: Vec<Platform>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Platform {
    selector: Selector,
    uri: String,
    sha256: String,
    files: Option<Vec<FileOp>>,
    bin: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Selector {
    match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOp {
    from: String,
    to: String,
}

/// The binary's name, as Cargo builds it for this test (`[[bin]] name`).
fn bin_name() -> String {
    Path::new(env!("CARGO_BIN_EXE_kubectl-qms"))
        .file_name()
        .and_then(|n| n.to_str())
        .expect("binary name")
        .to_owned()
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn semver_with_v(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let core = rest.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Every krew rule except the sha256 pattern, which `release` decides: the template holds a
/// `${SHA256_<OS>_<ARCH>}` placeholder there, the release manifest the archive's digest.
/// Returns the platforms' (uri, sha256) by (os, arch).
fn check_manifest(text: &str, file_stem: &str) -> BTreeMap<(String, String), (String, String)> {
    let p: Plugin = serde_saphyr::from_str(text).expect("the manifest parses as a krew Plugin");
    assert_eq!(
        p.api_version,
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(p.kind, "Plugin");
    let name = &p.metadata.name;
    assert!(
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "unsafe plugin name {name:?}"
    );
    assert_eq!(name, file_stem, "krew: the manifest's file is <name>.yaml");
    // kubectl runs `kubectl-<name>` for `kubectl <name>`.
    assert_eq!(format!("kubectl-{name}"), bin_name());

    let spec = &p.spec;
    assert!(!spec.short_description.is_empty());
    assert!(!spec.short_description.contains(['\r', '\n']));
    assert!(
        spec.short_description.len() <= 50,
        "krew-index asks for a short description of at most 50 characters: {:?}",
        spec.short_description
    );
    assert!(spec.description.as_deref().is_some_and(|d| !d.is_empty()));
    assert!(spec.caveats.as_deref().is_some_and(|c| !c.is_empty()));
    assert!(semver_with_v(&spec.version), "version {:?}", spec.version);
    assert_eq!(
        spec.version,
        format!("v{}", env!("CARGO_PKG_VERSION")),
        "the manifest's version is the workspace's Cargo version"
    );

    let mut by_platform = BTreeMap::new();
    for pl in &spec.platforms {
        let keys: BTreeSet<&str> = pl
            .selector
            .match_labels
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, BTreeSet::from(["arch", "os"]), "{pl:?}");
        let os = pl.selector.match_labels["os"].clone();
        let arch = pl.selector.match_labels["arch"].clone();
        assert_eq!(pl.bin, bin_name(), "{os}/{arch}");
        let files = pl.files.as_ref().expect("files");
        assert!(!files.is_empty());
        assert!(
            files.iter().all(|f| !f.from.is_empty() && !f.to.is_empty()),
            "{files:?}"
        );
        assert!(
            files.iter().any(|f| f.from == pl.bin && f.to == "."),
            "the binary is installed: {files:?}"
        );
        assert!(
            pl.uri.ends_with(&format!(
                "/releases/download/{v}/kubectl-qms_{v}_{os}_{arch}.tar.gz",
                v = spec.version
            )),
            "{os}/{arch}: {}",
            pl.uri
        );
        let prev = by_platform.insert(
            (os.clone(), arch.clone()),
            (pl.uri.clone(), pl.sha256.clone()),
        );
        assert!(prev.is_none(), "{os}/{arch} listed twice");
    }
    let want: BTreeSet<(String, String)> = PLATFORMS
        .iter()
        .map(|(o, a)| ((*o).to_owned(), (*a).to_owned()))
        .collect();
    assert_eq!(by_platform.keys().cloned().collect::<BTreeSet<_>>(), want);
    by_platform
}

fn template() -> String {
    std::fs::read_to_string(repo_root().join("deploy/krew/qms.yaml")).expect("read manifest")
}

fn release(repo_url: &str, dist: &Path, out: &Path) -> Output {
    Command::new("bash")
        .arg(repo_root().join("scripts/krew-manifest.sh"))
        .args([repo_url.as_ref(), dist.as_os_str(), out.as_os_str()])
        .output()
        .expect("bash runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An archive per platform with a distinct `kubectl-qms` at its top level (so the digests differ).
fn archives(dist: &Path, version: &str) -> BTreeMap<(String, String), String> {
    let mut sums = BTreeMap::new();
    for (os, arch) in PLATFORMS {
        let stage = dist.join(format!("stage-{os}-{arch}"));
        std::fs::create_dir_all(&stage).expect("mkdir");
        std::fs::write(
            stage.join("kubectl-qms"),
            format!("#!/bin/sh\necho {os} {arch}\n"),
        )
        .expect("write binary");
        let archive = dist.join(format!("kubectl-qms_{version}_{os}_{arch}.tar.gz"));
        let out = Command::new("tar")
            .arg("-czf")
            .arg(&archive)
            .arg("-C")
            .arg(&stage)
            .arg("kubectl-qms")
            .output()
            .expect("tar runs");
        assert!(out.status.success(), "{}", text(&out));
        let digest = Sha256::digest(std::fs::read(&archive).expect("read archive"));
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        sums.insert((os.to_owned(), arch.to_owned()), hex);
    }
    sums
}

#[test]
fn the_manifest_template_follows_krew_for_this_binary_and_version() {
    let platforms = check_manifest(&template(), "qms");
    for ((os, arch), (uri, sha)) in platforms {
        assert!(uri.starts_with("${REPO_URL}/"), "{uri}");
        assert_eq!(
            sha,
            format!("${{SHA256_{}_{}}}", os.to_uppercase(), arch.to_uppercase()),
            "the release script fills this placeholder"
        );
    }
}

#[test]
fn the_release_manifest_has_each_archives_sha256_and_passes_krews_rules() {
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));
    let dir = tempfile::tempdir().expect("tempdir");
    let sums = archives(dir.path(), &version);
    let out_path = dir.path().join("qms.yaml");
    let out = release(
        "https://github.com/creo/qms-operator/",
        dir.path(),
        &out_path,
    );
    assert!(out.status.success(), "{}", text(&out));
    let manifest = std::fs::read_to_string(&out_path).expect("release manifest written");
    assert!(!manifest.contains("${"), "{manifest}");
    let platforms = check_manifest(&manifest, "qms");
    for (platform, (uri, sha)) in platforms {
        assert!(is_sha256(&sha), "{platform:?}: {sha}");
        assert_eq!(sha, sums[&platform], "{platform:?}: the archive's digest");
        assert!(
            uri.starts_with(&format!(
                "https://github.com/creo/qms-operator/releases/download/{version}/"
            )),
            "{uri}"
        );
    }
    let p: Plugin = serde_saphyr::from_str(&manifest).expect("parses");
    assert_eq!(
        p.spec.homepage.as_deref(),
        Some("https://github.com/creo/qms-operator")
    );
}

#[test]
fn the_release_script_refuses_missing_or_wrong_archives_and_writes_nothing() {
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));
    let dir = tempfile::tempdir().expect("tempdir");
    archives(dir.path(), &version);
    let out_path = dir.path().join("qms.yaml");

    let out = release("http://github.com/creo/qms-operator", dir.path(), &out_path);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("must be an https:// URL"),
        "{}",
        text(&out)
    );

    // An archive without the binary at its top level.
    let bad = dir
        .path()
        .join(format!("kubectl-qms_{version}_darwin_amd64.tar.gz"));
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(empty.join("bin")).expect("mkdir");
    std::fs::write(empty.join("bin/kubectl-qms"), "x").expect("write");
    let tar = Command::new("tar")
        .arg("-czf")
        .arg(&bad)
        .arg("-C")
        .arg(&empty)
        .arg("bin")
        .output()
        .expect("tar runs");
    assert!(tar.status.success(), "{}", text(&tar));
    let out = release(
        "https://github.com/creo/qms-operator",
        dir.path(),
        &out_path,
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("darwin_amd64.tar.gz does not hold kubectl-qms"),
        "{}",
        text(&out)
    );

    std::fs::remove_file(&bad).expect("rm");
    let out = release(
        "https://github.com/creo/qms-operator",
        dir.path(),
        &out_path,
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!("missing archive {}", bad.display())),
        "{}",
        text(&out)
    );
    assert!(!out_path.exists(), "nothing written");
}
