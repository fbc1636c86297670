//! Discovery documents: `/version`, legacy `/api`, `/apis`, `/apis/G`, `/api/v1`, `/apis/G/V`, and
//! aggregated discovery (`apidiscovery.k8s.io/v2`) which kubectl 1.35 and kube-rs ask for first.

use serde_json::{Value, json};

use crate::registry::{Registry, ResourceType};

pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the client's Accept header prefers aggregated v2 discovery.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|m| {
        m.contains("as=APIGroupDiscoveryList")
            && m.contains("v=v2")
            && !m.contains("v=v2beta1")
            && m.starts_with("application/json")
    })
}

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "35",
        "emulationMajor": "1",
        "emulationMinor": "35",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "34",
        "gitVersion": "v1.35.0-kube-sim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

pub fn api_versions(server_addr: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_addr}]
    })
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

pub fn api_group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_json(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(reg: &Registry, group: &str) -> Option<Value> {
    let groups = reg.groups();
    let vs = groups.get(group).filter(|_| !group.is_empty())?;
    let mut g = group_json(group, vs);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

fn storage_hash(rt: &ResourceType) -> String {
    use base64::Engine;
    // Both Event APIs share one storage, hence one hash (as on a real apiserver).
    let digest = format!("{}/{}/{}", rt.storage_group, rt.storage_version, rt.kind);
    let mut h: u64 = 1469598103934665603;
    for b in digest.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(1099511628211);
    }
    base64::engine::general_purpose::STANDARD.encode(&h.to_be_bytes()[..8])
}

pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = reg.in_group_version(group, version);
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for rt in &types {
        let mut r = json!({
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": rt.verbs(),
            "storageVersionHash": storage_hash(rt),
        });
        if !rt.short_names.is_empty() {
            r["shortNames"] = json!(rt.short_names);
        }
        if !rt.categories.is_empty() {
            r["categories"] = json!(rt.categories);
        }
        resources.push(r);
        for sub in rt.subresources() {
            let verbs: Vec<&str> = if sub == "log" {
                vec!["get"]
            } else {
                vec!["get", "patch", "update"]
            };
            resources.push(json!({
                "name": format!("{}/{sub}", rt.plural),
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": if sub == "log" { "Pod" } else { rt.kind.as_str() },
                "verbs": verbs,
            }));
        }
    }
    let gv = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

fn aggregated_group(reg: &Registry, group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = reg
                .in_group_version(group, v)
                .iter()
                .map(|rt| {
                    let mut r = json!({
                        "resource": rt.plural,
                        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
                        "scope": if rt.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": rt.singular,
                        "verbs": rt.verbs(),
                    });
                    if !rt.short_names.is_empty() {
                        r["shortNames"] = json!(rt.short_names);
                    }
                    if !rt.categories.is_empty() {
                        r["categories"] = json!(rt.categories);
                    }
                    let subs: Vec<Value> = rt
                        .subresources()
                        .iter()
                        .map(|sub| {
                            if *sub == "log" {
                                json!({"subresource": "log", "responseKind": {"group": "", "version": "", "kind": "Pod"}, "verbs": ["get"]})
                            } else {
                                json!({
                                    "subresource": sub,
                                    "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
                                    "verbs": ["get", "patch", "update"]
                                })
                            }
                        })
                        .collect();
                    if !subs.is_empty() {
                        r["subresources"] = json!(subs);
                    }
                    r
                })
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut g = json!({"versions": vs});
    g["metadata"] = if group.is_empty() {
        json!({"creationTimestamp": null})
    } else {
        json!({"name": group, "creationTimestamp": null})
    };
    g
}

/// Aggregated discovery for `/api` (core only) or `/apis` (all named groups).
pub fn aggregated(reg: &Registry, core: bool) -> Value {
    let items: Vec<Value> = reg
        .groups()
        .iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, vs)| aggregated_group(reg, g, vs))
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}
