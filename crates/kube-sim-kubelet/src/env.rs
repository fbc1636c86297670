//! Container environment: `env`/`envFrom` resolution, `$(VAR)` expansion and the termination
//! message path rewrite.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapKeySelector, Container, EnvFromSource, EnvVarSource, Pod, Secret,
    SecretKeySelector,
};
use kube::{Api, Client};

/// Kubernetes' `$(VAR)` expansion (k8s.io/kubernetes/third_party/forked/golang/expansion):
/// `$(NAME)` becomes the value of NAME when defined and stays verbatim otherwise; `$$` is an
/// escaped `$`.
pub(crate) fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('(') {
            match tail.find(')') {
                Some(end) => {
                    let name = &tail[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &tail[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = tail;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Rewrites every occurrence of the declared termination message path to the per-pod file.
pub(crate) fn rewrite_path(value: &str, declared: &str, actual: &str) -> String {
    if declared.is_empty() {
        value.to_owned()
    } else {
        value.replace(declared, actual)
    }
}

/// Value of a `fieldRef` (the downward API fields a kubelet resolves for env vars).
pub(crate) fn field_ref(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let bracketed = |prefix: &str| -> Option<String> {
        path.strip_prefix(prefix)?
            .strip_suffix("']")
            .map(str::to_owned)
    };
    let spec = pod.spec.as_ref();
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.podIP" => crate::pod_status::LOCAL_IP.to_owned(),
        "status.hostIPs" | "status.podIPs" => crate::pod_status::LOCAL_IP.to_owned(),
        _ => {
            if let Some(key) = bracketed("metadata.labels['") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&key).cloned())
                    .unwrap_or_default()
            } else if let Some(key) = bracketed("metadata.annotations['") {
                meta.annotations
                    .as_ref()
                    .and_then(|l| l.get(&key).cloned())
                    .unwrap_or_default()
            } else if path == "metadata.labels" || path == "metadata.annotations" {
                let map = if path == "metadata.labels" {
                    meta.labels.clone()
                } else {
                    meta.annotations.clone()
                };
                map.unwrap_or_default()
                    .iter()
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                return Err(format!("unsupported fieldRef fieldPath {path:?}"));
            }
        }
    })
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('=')
        && name.chars().all(|c| c.is_ascii_graphic() || c == ' ')
}

/// Resolves `envFrom` then `env` of `container` (later definitions win), expanding `$(VAR)`
/// references in `env` values. Errors carry the kubelet's `CreateContainerConfigError` message.
pub(crate) async fn resolve_env(
    client: &Client,
    pod: &Pod,
    container: &Container,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let sources = Sources {
        secrets: Api::namespaced(client.clone(), &ns),
        config_maps: Api::namespaced(client.clone(), &ns),
        ns,
    };
    let mut out: Vec<(String, String)> = Vec::new();
    for from in container.env_from.iter().flatten() {
        sources.env_from(from, &mut out).await?;
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(source) = &var.value_from {
            match sources.value_from(pod, &var.name, source).await? {
                Some(v) => v,
                // An optional reference to what does not exist: the variable is not set.
                None => continue,
            }
        } else {
            let raw = var.value.clone().unwrap_or_default();
            let snapshot: HashMap<String, String> = out.iter().cloned().collect();
            expand(&raw, &|name| snapshot.get(name).cloned())
        };
        out.push((var.name.clone(), value));
    }
    Ok(out)
}

/// Where a pod's environment comes from: the Secrets and ConfigMaps of its namespace.
struct Sources {
    ns: String,
    secrets: Api<Secret>,
    config_maps: Api<ConfigMap>,
}

impl Sources {
    /// Appends the entries of one `envFrom` source (a missing optional source adds nothing).
    async fn env_from(
        &self,
        from: &EnvFromSource,
        out: &mut Vec<(String, String)>,
    ) -> Result<(), String> {
        let prefix = from.prefix.clone().unwrap_or_default();
        let mut push_all = |entries: Vec<(String, String)>| {
            for (k, v) in entries {
                let name = format!("{prefix}{k}");
                if is_env_name(&name) {
                    out.push((name, v));
                }
            }
        };
        if let Some(r) = &from.config_map_ref {
            match self
                .config_maps
                .get_opt(&r.name)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(cm) => push_all(cm.data.unwrap_or_default().into_iter().collect()),
                None if r.optional == Some(true) => {}
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            match self
                .secrets
                .get_opt(&r.name)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(secret) => push_all(secret_entries(&secret).into_iter().collect()),
                None if r.optional == Some(true) => {}
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        }
        Ok(())
    }

    /// The value of an `env` entry's `valueFrom`; `None` when an optional source or key is
    /// missing.
    async fn value_from(
        &self,
        pod: &Pod,
        var: &str,
        source: &EnvVarSource,
    ) -> Result<Option<String>, String> {
        if let Some(f) = &source.field_ref {
            field_ref(pod, &f.field_path).map(Some)
        } else if let Some(s) = &source.secret_key_ref {
            self.secret_key(s).await
        } else if let Some(c) = &source.config_map_key_ref {
            self.config_map_key(c).await
        } else {
            Err(format!(
                "env var {var:?}: this valueFrom source is not supported by kube-sim's kubelet"
            ))
        }
    }

    async fn secret_key(&self, s: &SecretKeySelector) -> Result<Option<String>, String> {
        let optional = s.optional == Some(true);
        match self
            .secrets
            .get_opt(&s.name)
            .await
            .map_err(|e| e.to_string())?
        {
            Some(secret) => match secret_entries(&secret).remove(&s.key) {
                Some(v) => Ok(Some(v)),
                None if optional => Ok(None),
                None => Err(format!(
                    "couldn't find key {} in Secret {}/{}",
                    s.key, self.ns, s.name
                )),
            },
            None if optional => Ok(None),
            None => Err(format!("secret \"{}\" not found", s.name)),
        }
    }

    async fn config_map_key(&self, c: &ConfigMapKeySelector) -> Result<Option<String>, String> {
        let optional = c.optional == Some(true);
        let Some(cm) = self
            .config_maps
            .get_opt(&c.name)
            .await
            .map_err(|e| e.to_string())?
        else {
            return if optional {
                Ok(None)
            } else {
                Err(format!("configmap \"{}\" not found", c.name))
            };
        };
        let v = cm
            .data
            .as_ref()
            .and_then(|d| d.get(&c.key))
            .cloned()
            .or_else(|| {
                cm.binary_data
                    .as_ref()
                    .and_then(|d| d.get(&c.key))
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            });
        match v {
            Some(v) => Ok(Some(v)),
            None if optional => Ok(None),
            None => Err(format!(
                "couldn't find key {} in ConfigMap {}/{}",
                c.key, self.ns, c.name
            )),
        }
    }
}

fn secret_entries(secret: &Secret) -> HashMap<String, String> {
    let mut map: HashMap<String, String> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    // stringData is write-only in a real API server (merged into data); honour it in case a
    // simulated server kept it.
    for (k, v) in secret.string_data.iter().flatten() {
        map.entry(k.clone()).or_insert_with(|| v.clone());
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expansion_follows_kubernetes_rules() {
        assert_eq!(expand("x $(A) y", &lookup), "x alpha y");
        assert_eq!(expand("$(B)", &lookup), "$(B)");
        assert_eq!(expand("$$(A)", &lookup), "$(A)");
        assert_eq!(expand("cost $5", &lookup), "cost $5");
        assert_eq!(expand("$(A", &lookup), "$(A");
        assert_eq!(expand("end$", &lookup), "end$");
        assert_eq!(expand("[$(EMPTY)]", &lookup), "[]");
    }

    #[test]
    fn rewrites_termination_path() {
        assert_eq!(
            rewrite_path(
                "echo '{\"a\":1}' > /dev/termination-log",
                "/dev/termination-log",
                "/tmp/x/termination-log"
            ),
            "echo '{\"a\":1}' > /tmp/x/termination-log"
        );
        assert_eq!(rewrite_path("abc", "", "/tmp"), "abc");
    }

    #[test]
    fn field_refs() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("p".into());
        pod.metadata.namespace = Some("ns".into());
        pod.metadata.uid = Some("u-1".into());
        pod.metadata.labels = Some(BTreeMap::from([("app".into(), "x".into())]));
        assert_eq!(field_ref(&pod, "metadata.name").unwrap(), "p");
        assert_eq!(field_ref(&pod, "metadata.namespace").unwrap(), "ns");
        assert_eq!(field_ref(&pod, "metadata.uid").unwrap(), "u-1");
        assert_eq!(field_ref(&pod, "metadata.labels['app']").unwrap(), "x");
        assert_eq!(field_ref(&pod, "metadata.labels['nope']").unwrap(), "");
        assert!(field_ref(&pod, "spec.bogus").is_err());
    }
}
