//! Every manifest under `examples/` deserializes into the Rust types and validates against the
//! schema of its CRD, so what the README tells people to apply is what the operator understands.

use std::path::{Path, PathBuf};

use kube::CustomResourceExt;
use serde_json::Value;

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read example");
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn all_examples() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("examples/ exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    paths.sort();
    for path in paths {
        for doc in documents(&path) {
            out.push((
                path.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
                doc,
            ));
        }
    }
    out
}

/// The CRD's openAPIV3Schema as JSON Schema: OpenAPI's `nullable` becomes a `null` type.
fn json_schema_for(kind: &str) -> Value {
    let crd = match kind {
        "WorkflowTemplate" => qms_api::WorkflowTemplate::crd(),
        "QualityGate" => qms_api::QualityGate::crd(),
        "Agent" => qms_api::Agent::crd(),
        "QmsWorkflow" => qms_api::QmsWorkflow::crd(),
        other => panic!("unexpected kind {other} in examples/"),
    };
    let mut schema = serde_json::to_value(&crd).expect("crd json")["spec"]["versions"][0]["schema"]
        ["openAPIV3Schema"]
        .clone();
    fn nullable_to_null_type(v: &mut Value) {
        match v {
            Value::Object(map) => {
                if map.remove("nullable") == Some(Value::Bool(true))
                    && let Some(Value::String(t)) = map.get("type").cloned()
                {
                    map.insert("type".into(), serde_json::json!([t, "null"]));
                }
                map.values_mut().for_each(nullable_to_null_type);
            }
            Value::Array(items) => items.iter_mut().for_each(nullable_to_null_type),
            _ => {}
        }
    }
    nullable_to_null_type(&mut schema);
    schema
}

#[test]
fn examples_cover_the_seed() {
    let examples = all_examples();
    let names = |kind: &str| -> Vec<String> {
        let mut n: Vec<String> = examples
            .iter()
            .filter(|(_, d)| d["kind"] == kind)
            .map(|(_, d)| d["metadata"]["name"].as_str().expect("name").to_owned())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names("WorkflowTemplate"), ["standard-qms-review"]);
    assert_eq!(
        names("QualityGate"),
        [
            "basic-checks",
            "code-coverage",
            "compliance-audit",
            "final-checks",
            "performance-test",
            "security-scan"
        ]
    );
    assert_eq!(
        names("Agent"),
        [
            "qms-code-reviewer",
            "qms-dod-validator",
            "qms-dor-validator",
            "qms-quality-coordinator",
            "qms-testing-specialist"
        ]
    );
    assert_eq!(names("QmsWorkflow").len(), 1);
}

#[test]
fn examples_deserialize_into_the_types() {
    for (file, doc) in all_examples() {
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let result = match kind.as_str() {
            "WorkflowTemplate" => {
                serde_json::from_value::<qms_api::WorkflowTemplate>(doc).map(drop)
            }
            "QualityGate" => serde_json::from_value::<qms_api::QualityGate>(doc).map(drop),
            "Agent" => serde_json::from_value::<qms_api::Agent>(doc).map(drop),
            "QmsWorkflow" => serde_json::from_value::<qms_api::QmsWorkflow>(doc).map(drop),
            other => panic!("{file}: unexpected kind {other}"),
        };
        result.unwrap_or_else(|e| panic!("{file} ({kind}): {e}"));
    }
}

#[test]
fn examples_validate_against_their_crd_schema() {
    for (file, doc) in all_examples() {
        let kind = doc["kind"].as_str().expect("kind");
        let validator = jsonschema::validator_for(&json_schema_for(kind)).expect("schema compiles");
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{file} ({kind}): {errors:#?}");
    }
}

#[test]
fn schema_check_catches_a_broken_example() {
    // Guards the test above against a schema translation that accepts anything.
    let bad = serde_json::json!({
        "apiVersion": "qms.creo.dev/v1", "kind": "QualityGate",
        "metadata": {"name": "x"},
        "spec": {"type": "threshold", "metric": "m", "operator": "greater", "threshold": "high"}
    });
    let validator = jsonschema::validator_for(&json_schema_for("QualityGate")).expect("compiles");
    let errors: Vec<String> = validator
        .iter_errors(&bad)
        .map(|e| e.instance_path().to_string())
        .collect();
    assert!(errors.iter().any(|p| p == "/spec/operator"), "{errors:?}");
    assert!(errors.iter().any(|p| p == "/spec/threshold"), "{errors:?}");
}
