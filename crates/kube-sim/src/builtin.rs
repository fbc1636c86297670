//! Per-kind behaviour of built-in types that clients rely on: defaults the apiserver fills in
//! (namespace phase, pod phase, job selector/labels, service clusterIP, secret stringData), the
//! few validations that matter for tests, and CRD status conditions.

use serde_json::{Value, json};

use crate::error::FieldError;
use crate::registry::ResourceType;
use crate::store::{Store, meta_str};

fn is(rt: &ResourceType, group: &str, kind: &str) -> bool {
    rt.group == group && rt.kind == kind
}

fn set_default(v: &mut Value, key: &str, default: Value) {
    if v.get(key).is_none_or(Value::is_null) {
        v[key] = default;
    }
}

fn default_pod_spec(spec: &mut Value, restart: &str) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "restartPolicy", json!(restart));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    if let Some(cs) = spec["containers"].as_array_mut() {
        for c in cs {
            set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
            set_default(c, "terminationMessagePolicy", json!("File"));
            let latest = c["image"]
                .as_str()
                .is_none_or(|i| i.ends_with(":latest") || !i.contains(':'));
            set_default(
                c,
                "imagePullPolicy",
                json!(if latest { "Always" } else { "IfNotPresent" }),
            );
            set_default(c, "resources", json!({}));
        }
    }
}

/// Stable pseudo cluster IP for a service (no networking exists; clients only display it).
fn cluster_ip(store: &Store) -> String {
    let n = store.rv() % 65000 + 10;
    format!("10.96.{}.{}", n / 250, n % 250 + 1)
}

pub fn default_on_create(rt: &ResourceType, obj: &mut Value, store: &Store) {
    let name = meta_str(obj, "name").to_owned();
    let uid = meta_str(obj, "uid").to_owned();
    if is(rt, "", "Namespace") {
        obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
        set_default(obj, "spec", json!({}));
        obj["spec"]["finalizers"] = json!(["kubernetes"]);
        obj["status"] = json!({"phase": "Active"});
    } else if is(rt, "", "Pod") {
        set_default(obj, "spec", json!({}));
        default_pod_spec(&mut obj["spec"], "Always");
        set_default(&mut obj["spec"], "serviceAccountName", json!("default"));
        obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
    } else if is(rt, "batch", "Job") {
        set_default(obj, "spec", json!({}));
        let spec = &mut obj["spec"];
        if spec["completions"].is_null() && spec["parallelism"].is_null() {
            spec["completions"] = json!(1);
        }
        set_default(spec, "parallelism", json!(1));
        set_default(spec, "backoffLimit", json!(6));
        set_default(spec, "completionMode", json!("NonIndexed"));
        set_default(spec, "suspend", json!(false));
        set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
        if spec["manualSelector"].as_bool() != Some(true) {
            let labels = json!({
                "batch.kubernetes.io/controller-uid": uid,
                "batch.kubernetes.io/job-name": name,
                "controller-uid": uid,
                "job-name": name,
            });
            if spec["selector"].is_null() {
                spec["selector"] =
                    json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
            }
            if !spec["template"]["metadata"].is_object() {
                spec["template"]["metadata"] = json!({});
            }
            if let Some(l) = labels.as_object() {
                for (k, v) in l {
                    spec["template"]["metadata"]["labels"][k] = v.clone();
                }
            }
        }
        if spec["template"]["spec"].is_object() {
            default_pod_spec(&mut spec["template"]["spec"], "Never");
        }
    } else if is(rt, "", "Service") {
        set_default(obj, "spec", json!({}));
        let ip = cluster_ip(store);
        let spec = &mut obj["spec"];
        set_default(spec, "type", json!("ClusterIP"));
        set_default(spec, "sessionAffinity", json!("None"));
        if spec["clusterIP"].is_null() {
            spec["clusterIP"] = json!(ip);
            spec["clusterIPs"] = json!([ip]);
        }
        if let Some(ports) = spec["ports"].as_array_mut() {
            for p in ports {
                set_default(p, "protocol", json!("TCP"));
                let port = p["port"].clone();
                set_default(p, "targetPort", port);
            }
        }
        obj["status"] = json!({"loadBalancer": {}});
    } else if is(rt, "apps", "Deployment") {
        set_default(obj, "spec", json!({}));
        set_default(&mut obj["spec"], "replicas", json!(1));
        set_default(&mut obj["spec"], "revisionHistoryLimit", json!(10));
        set_default(&mut obj["spec"], "progressDeadlineSeconds", json!(600));
        if obj["spec"]["template"]["spec"].is_object() {
            default_pod_spec(&mut obj["spec"]["template"]["spec"], "Always");
        }
    } else if is(rt, "", "ServiceAccount") {
        // Nothing: token secrets are not generated (no token controller).
    }
    if is(rt, "", "Secret") {
        default_secret(obj);
    }
}

pub fn default_on_update(rt: &ResourceType, obj: &mut Value, old: &Value) {
    if is(rt, "", "Secret") {
        default_secret(obj);
    }
    if is(rt, "", "Namespace") && obj["spec"]["finalizers"].is_null() {
        obj["spec"]["finalizers"] = old["spec"]["finalizers"].clone();
    }
}

fn default_secret(obj: &mut Value) {
    use base64::Engine;
    if obj["type"].as_str().is_none_or(str::is_empty) {
        obj["type"] = json!("Opaque");
    }
    if let Some(sd) = obj.get("stringData").and_then(Value::as_object).cloned() {
        if !obj["data"].is_object() {
            obj["data"] = json!({});
        }
        for (k, v) in sd {
            let s = v.as_str().unwrap_or_default();
            obj["data"][&k] = json!(base64::engine::general_purpose::STANDARD.encode(s));
        }
        if let Some(m) = obj.as_object_mut() {
            m.remove("stringData");
        }
    }
}

/// Validations of built-ins that tests and tools depend on.
pub fn validate(rt: &ResourceType, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if is(rt, "batch", "Job") {
        let rp = &obj["spec"]["template"]["spec"]["restartPolicy"];
        if let Some(p) = rp.as_str()
            && p != "Never"
            && p != "OnFailure"
        {
            errs.push(FieldError::not_supported(
                "spec.template.spec.restartPolicy",
                rp,
                &[json!("OnFailure"), json!("Never")],
            ));
        }
        if obj["spec"]["template"]["spec"]["containers"]
            .as_array()
            .is_none_or(|c| c.is_empty())
        {
            errs.push(FieldError::required("spec.template.spec.containers", ""));
        }
    }
    if is(rt, "", "Pod")
        && obj["spec"]["containers"]
            .as_array()
            .is_none_or(|c| c.is_empty())
    {
        errs.push(FieldError::required("spec.containers", ""));
    }
    if is(rt, "", "ConfigMap") {
        for f in ["data", "binaryData"] {
            if let Some(m) = obj[f].as_object() {
                for (k, v) in m {
                    if !v.is_string() {
                        errs.push(FieldError::invalid(
                            format!("{f}[{k}]"),
                            v,
                            "must be a string",
                        ));
                    }
                }
            }
        }
    }
    errs
}

/// Status of an accepted CRD: names accepted, established, stored versions.
pub fn crd_status(crd: &mut Value) {
    let now = crate::meta::now();
    let mut names = crd["spec"]["names"].clone();
    if names["singular"].is_null() {
        names["singular"] = json!(names["kind"].as_str().unwrap_or_default().to_lowercase());
        crd["spec"]["names"]["singular"] = names["singular"].clone();
    }
    if names["listKind"].is_null() {
        names["listKind"] = json!(format!(
            "{}List",
            names["kind"].as_str().unwrap_or_default()
        ));
        crd["spec"]["names"]["listKind"] = names["listKind"].clone();
    }
    if crd["spec"]["conversion"].is_null() {
        crd["spec"]["conversion"] = json!({"strategy": "None"});
    }
    let storage: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .filter(|v| v["storage"].as_bool() == Some(true))
                .map(|v| v["name"].clone())
                .collect()
        })
        .unwrap_or_default();
    let mut stored = crd["status"]["storedVersions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for s in storage {
        if !stored.contains(&s) {
            stored.push(s);
        }
    }
    let old_conditions = crd["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let since = |t: &str| -> Value {
        old_conditions
            .iter()
            .find(|c| c["type"] == t && c["status"] == "True")
            .map(|c| c["lastTransitionTime"].clone())
            .unwrap_or_else(|| json!(now))
    };
    let mut conditions = vec![
        json!({"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": since("NamesAccepted")}),
        json!({"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": since("Established")}),
    ];
    if !crd["metadata"]["deletionTimestamp"].is_null() {
        conditions.push(json!({"type": "Terminating", "status": "True", "reason": "InstanceDeletionInProgress", "message": "CustomResource deletion is in progress", "lastTransitionTime": now}));
    }
    crd["status"] =
        json!({"acceptedNames": names, "conditions": conditions, "storedVersions": stored});
}
