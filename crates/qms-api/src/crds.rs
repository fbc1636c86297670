//! The CustomResourceDefinitions generated from the types, and the file names they live in under
//! `crds/`. `qms-operator crds` prints them; a test fails when `crds/` drifts from them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::{Agent, QmsWorkflow, QualityGate, WorkflowTemplate};

/// Every CRD of the operator with the file name it is kept in, in a stable order.
pub fn all() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("workflowtemplates.yaml", without_null_enums(WorkflowTemplate::crd())),
        ("qualitygates.yaml", without_null_enums(QualityGate::crd())),
        ("agents.yaml", without_null_enums(Agent::crd())),
        ("qmsworkflows.yaml", without_null_enums(QmsWorkflow::crd())),
    ]
}

/// kube-derive writes an optional enum as `enum: [.., null]` + `nullable: true`. Kubernetes 1.20
/// refuses `null` inside `enum` (kubernetes#104969, fixed in later patch releases) and `nullable`
/// alone already admits null on every version, so the `null` entries are dropped.
fn without_null_enums(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            strip_null_enums(schema);
        }
    }
    crd
}

fn strip_null_enums(
    node: &mut k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps,
) {
    if let Some(values) = node.enum_.as_mut() {
        values.retain(|v| !v.0.is_null());
    }
    let children = node
        .properties
        .iter_mut()
        .flat_map(|p| p.values_mut())
        .chain(node.all_of.iter_mut().flatten())
        .chain(node.any_of.iter_mut().flatten())
        .chain(node.one_of.iter_mut().flatten())
        .chain(node.not.as_deref_mut());
    for child in children {
        strip_null_enums(child);
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(s)) =
        node.items.as_mut()
    {
        strip_null_enums(s);
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schemas(v)) =
        node.items.as_mut()
    {
        v.iter_mut().for_each(strip_null_enums);
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrBool::Schema(s)) =
        node.additional_properties.as_mut()
    {
        strip_null_enums(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enums(v: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::Array(e)) = m.get("enum") {
                    out.extend(e.iter().cloned());
                }
                m.values().for_each(|c| enums(c, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|c| enums(c, out)),
            _ => {}
        }
    }

    #[test]
    fn no_crd_has_null_in_an_enum_and_optional_enums_stay_nullable() {
        for (file, crd) in all() {
            let mut values = Vec::new();
            enums(&serde_json::to_value(&crd).unwrap(), &mut values);
            assert!(values.iter().all(|e| !e.is_null()), "{file}: null in an enum");
        }
        let operator = |v: serde_json::Value| {
            v["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
                ["properties"]["operator"]
                .clone()
        };
        // kube-derive's output has the null; the committed CRD keeps the enum and `nullable`.
        let raw = operator(serde_json::to_value(QualityGate::crd()).unwrap());
        assert!(raw["enum"].as_array().unwrap().contains(&serde_json::Value::Null), "{raw}");
        let (_, gate) = all().into_iter().find(|(f, _)| *f == "qualitygates.yaml").unwrap();
        let op = operator(serde_json::to_value(gate).unwrap());
        assert_eq!(op["nullable"], true, "{op}");
        assert_eq!(op["enum"].as_array().unwrap().len(), 6, "{op}");
    }
}
