//! The CRDs under `crds/` are exactly what the Rust types generate, and a real API server would
//! accept them (structural schemas, the fields kubectl and people rely on).

use std::path::PathBuf;

use kube::CustomResourceExt;
use qms_api::crds;
use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `crds/` for `kubectl apply`, and the chart's own copy that `helm install` applies.
const CRD_DIRS: [&str; 2] = ["crds", "charts/qms-operator/crds"];

#[test]
fn committed_crds_match_the_types() {
    for dir in CRD_DIRS {
        let mut drifted = Vec::new();
        for (file, crd) in crds::all() {
            let expected = crds::to_yaml(&crd).expect("render CRD");
            let actual =
                std::fs::read_to_string(repo_root().join(dir).join(file)).unwrap_or_default();
            if actual != expected {
                drifted.push(file);
            }
        }
        assert!(
            drifted.is_empty(),
            "{dir}/ is out of date for {drifted:?}: run `cargo run -p qms-operator -- crds --out-dir {dir}`"
        );
    }
}

#[test]
fn crds_dirs_hold_nothing_else() {
    let mut expected: Vec<String> = crds::all().iter().map(|(f, _)| f.to_string()).collect();
    expected.sort();
    for dir in CRD_DIRS {
        let mut files: Vec<String> = std::fs::read_dir(repo_root().join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        files.sort();
        assert_eq!(files, expected, "{dir}");
    }
}

fn schema_of(crd: &k8s_openapi_crd::CustomResourceDefinition) -> Value {
    let v = serde_json::to_value(crd).expect("serialize");
    v["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

mod k8s_openapi_crd {
    pub use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
}

#[test]
fn every_crd_schema_is_structural() {
    for (file, crd) in crds::all() {
        let violations = qms_api::structural::violations(&schema_of(&crd));
        assert!(violations.is_empty(), "{file}: {violations:#?}");
    }
}

#[test]
fn every_crd_is_namespaced_with_status_category_and_short_name() {
    for (file, crd) in crds::all() {
        let v = serde_json::to_value(&crd).expect("serialize");
        let spec = &v["spec"];
        assert_eq!(spec["group"], "qms.creo.dev", "{file}");
        assert_eq!(spec["scope"], "Namespaced", "{file}");
        assert_eq!(spec["names"]["categories"][0], "qms", "{file}");
        assert!(spec["names"]["shortNames"][0].is_string(), "{file}");
        let version = &spec["versions"][0];
        assert_eq!(version["name"], "v1");
        // A QualityBaseline is a record (written whole by qms-github when a PR merges), not an
        // object a controller reconciles: it has no status.
        assert_eq!(
            version["subresources"]["status"].is_object(),
            file != "qualitybaselines.yaml",
            "{file}: status subresource"
        );
        let columns = version["additionalPrinterColumns"]
            .as_array()
            .expect("printer columns");
        assert_eq!(columns.last().expect("a column")["name"], "Age", "{file}");
    }
}

#[test]
fn qmsworkflow_columns_show_repository_pr_state_step_gates_and_age() {
    let crd = qms_api::QmsWorkflow::crd();
    let v = serde_json::to_value(&crd).expect("serialize");
    let names: Vec<&str> = v["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["Repository", "PR", "State", "Step", "Gates", "Age"]);
}

#[test]
fn validation_rules_are_in_the_schema() {
    let text = serde_json::to_string(&crds::all()).expect("serialize");
    for rule in [
        "self.steps.all(s, self.steps.exists_one(t, t.name == s.name))",
        "has(self.name) != has(self.capability)",
        "self.type != 'threshold' || (has(self.metric) && has(self.operator) && has(self.threshold))",
    ] {
        assert!(text.contains(rule), "missing CEL rule {rule}");
    }
    let wf = schema_of(&qms_api::QmsWorkflow::crd());
    let state = &wf["properties"]["status"]["properties"]["state"];
    assert_eq!(state["enum"].as_array().map(Vec::len), Some(11), "{state}");
    let timeout = schema_of(&qms_api::WorkflowTemplate::crd())["properties"]["spec"]["properties"]
        ["steps"]["items"]["properties"]["timeout"]
        .clone();
    assert_eq!(timeout["pattern"], qms_api::duration::DURATION_PATTERN);
}
