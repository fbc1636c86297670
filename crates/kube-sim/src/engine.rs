//! The API semantics: create / update / patch / delete / get / list on top of the store, with the
//! apiserver's rules (optimistic concurrency, status subresource isolation, generation,
//! defaults and validation, managed fields, dry-run). HTTP concerns live in `http.rs`;
//! deletion cascades in `gc.rs`.

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};

use crate::builtin;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::events::{self, Version};
use crate::faults::{Counters, Faults};
use crate::meta::{self, NameRule};
use crate::patch::managed::{self, Scope};
use crate::patch::shape::Shape;
use crate::patch::{self, PatchType};
use crate::registry::{Registry, ResourceType};
use crate::schema;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{Store, meta_str};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

#[derive(Debug, Clone)]
pub struct WriteOpts {
    pub dry_run: bool,
    /// `fieldManager`, or a name derived from the User-Agent (as the apiserver does).
    pub manager: String,
    /// Whether the client sent `fieldManager` (required for apply).
    pub manager_explicit: bool,
    pub validation: FieldValidation,
    pub force: bool,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub dry_run: bool,
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
}

#[derive(Debug)]
pub struct WriteOutcome {
    pub object: Value,
    pub warnings: Vec<String>,
    pub created: bool,
}

pub struct State {
    pub store: Store,
    pub registry: Registry,
    /// Something is waiting for dependents or contents to go (foreground deletion, a terminating
    /// namespace or CRD); `gc::sweep` has work to do.
    pub pending_finalization: bool,
}

pub struct Engine {
    state: Mutex<State>,
    pub faults: Faults,
    pub counters: Counters,
    pub logs: kube_sim_kubelet::PodLogs,
    pub bookmark_interval: std::time::Duration,
    pub server_addr: String,
}

/// How managed fields are maintained by a write.
enum Managed {
    /// Record an ordinary write by `opts.manager`.
    Update,
    /// Already computed by server-side apply.
    Done,
}

pub struct ListResult {
    pub items: Vec<Value>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

fn scope_of(rt: &ResourceType, status: bool) -> Scope {
    if status {
        Scope::Status
    } else if rt.has_status {
        Scope::NoStatus
    } else {
        Scope::All
    }
}

fn shape_of(rt: &ResourceType) -> Shape<'_> {
    Shape::for_type(rt.schema.as_ref(), rt.custom)
}

/// The object as served at `rt`'s version (objects are stored at the storage version; Events
/// are converted between core v1 and events.k8s.io/v1). Presenting an object that already is
/// at `rt`'s version changes nothing.
pub fn present(rt: &ResourceType, obj: &Value) -> Value {
    let mut v = if events::is_event(&rt.group, &rt.kind) {
        let from = Version::of_object(obj).unwrap_or(Version::of_group(&rt.storage_group));
        events::convert(obj, from, Version::of_group(&rt.group))
    } else {
        obj.clone()
    };
    v["apiVersion"] = json!(rt.api_version());
    v["kind"] = json!(rt.kind);
    v
}

/// A stored object as the starting point of a write at `rt`'s version: presented, with the field
/// sets of `managedFields` expressed in that version too (as the apiserver's field manager
/// converts them), so that old and new compare like with like.
fn for_write(rt: &ResourceType, stored: &Value) -> Arc<Value> {
    let mut v = present(rt, stored);
    if events::is_event(&rt.group, &rt.kind) {
        events::managed_fields_to(&mut v, Version::of_group(&rt.group));
    }
    Arc::new(v)
}

/// An object written at `rt`'s version, converted to the storage version (the inverse of
/// [`for_write`]; `managedFields` sets go back to the version of their entry).
fn to_storage(rt: &ResourceType, obj: Value) -> Value {
    let mut v = if events::is_event(&rt.group, &rt.kind) {
        let from = Version::of_group(&rt.group);
        let mut v = events::convert(&obj, from, Version::of_group(&rt.storage_group));
        events::managed_fields_home(&mut v, from);
        v
    } else {
        obj
    };
    v["apiVersion"] = json!(rt.storage_api_version());
    v
}

/// An object prepared by [`for_write`] as served: `managedFields` sets in their entries' versions.
fn served(rt: &ResourceType, mut obj: Value) -> Value {
    if events::is_event(&rt.group, &rt.kind) {
        events::managed_fields_home(&mut obj, Version::of_group(&rt.group));
    }
    obj
}

/// The stored object `ns/name` of `rt`'s resource, ready for a write at `rt`'s version.
fn load(st: &State, rt: &ResourceType, ns: &str, name: &str) -> Option<Arc<Value>> {
    st.store
        .get(&rt.store_key(), ns, name)
        .map(|o| for_write(rt, &o))
}

fn tracks_generation(rt: &ResourceType) -> bool {
    rt.custom
        || matches!(
            rt.kind.as_str(),
            "Deployment"
                | "ReplicaSet"
                | "StatefulSet"
                | "DaemonSet"
                | "Job"
                | "CronJob"
                | "PodDisruptionBudget"
                | "HorizontalPodAutoscaler"
                | "NetworkPolicy"
                | "Ingress"
                | "CustomResourceDefinition"
                | "Pod"
        )
}

fn name_rule(rt: &ResourceType) -> NameRule {
    if rt.group.is_empty() && rt.kind == "Namespace" {
        NameRule::Label
    } else if rt.group == "rbac.authorization.k8s.io" {
        NameRule::PathSegment
    } else {
        NameRule::Subdomain
    }
}

/// The "spec" part of an object for generation bumps: everything but metadata (and status when
/// the type has a status subresource).
fn spec_part(rt: &ResourceType, obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if rt.has_status {
            m.remove("status");
        }
    }
    v
}

/// Object without the parts that change on every write, for no-op detection.
fn comparable(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("managedFields");
        m.remove("resourceVersion");
    }
    v
}

fn is_crd(rt: &ResourceType) -> bool {
    rt.group == "apiextensions.k8s.io" && rt.kind == "CustomResourceDefinition"
}

impl Engine {
    pub fn new(
        store: Store,
        faults: Faults,
        counters: Counters,
        logs: kube_sim_kubelet::PodLogs,
        bookmark_interval: std::time::Duration,
        server_addr: String,
    ) -> Self {
        let mut registry = Registry::default();
        let crds: Vec<Value> = store
            .list("apiextensions.k8s.io/customresourcedefinitions", None)
            .iter()
            .map(|c| (**c).clone())
            .collect();
        registry.rebuild(&crds);
        Engine {
            state: Mutex::new(State {
                store,
                registry,
                pending_finalization: true,
            }),
            faults,
            counters,
            logs,
            bookmark_interval,
            server_addr,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn registry(&self) -> Registry {
        self.lock().registry.clone()
    }

    /// Creates `default`, `kube-system`, `kube-public` (and `kube-node-lease`) if missing.
    pub fn ensure_default_namespaces(&self) -> ApiResult<()> {
        let rt = self
            .registry()
            .find("", "v1", "namespaces")
            .ok_or_else(|| ApiError::internal("no namespaces type"))?;
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            if self.lock().store.get("/namespaces", "", ns).is_none() {
                let opts = WriteOpts {
                    dry_run: false,
                    manager: "kube-apiserver".into(),
                    manager_explicit: true,
                    validation: FieldValidation::Ignore,
                    force: false,
                };
                self.create(
                    &rt,
                    "",
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                    &opts,
                )?;
            }
        }
        Ok(())
    }

    // ---- reads ---------------------------------------------------------------------------

    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> ApiResult<Value> {
        let st = self.lock();
        st.store
            .get(&rt.store_key(), ns, name)
            .map(|o| present(rt, &o))
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
    }

    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> ApiResult<ListResult> {
        let start_after = match continue_token.filter(|c| !c.is_empty()) {
            Some(tok) => Some(decode_continue(tok)?),
            None => None,
        };
        let st = self.lock();
        let rv = st.store.rv();
        let all = st.store.list(&rt.store_key(), ns);
        drop(st);
        let mut matching = all
            .iter()
            .filter(|o| labels.matches(o) && fields.matches(o))
            .filter(|o| match &start_after {
                Some((sns, sname)) => {
                    (meta_str(o, "namespace"), meta_str(o, "name")) > (sns.as_str(), sname.as_str())
                }
                None => true,
            });
        let mut items = Vec::new();
        let mut continue_out = None;
        let mut remaining = None;
        match limit.filter(|l| *l > 0) {
            Some(limit) => {
                for o in matching.by_ref() {
                    items.push(present(rt, o));
                    if items.len() == limit {
                        break;
                    }
                }
                let rest = matching.count();
                if rest > 0 {
                    let last = items.last().cloned().unwrap_or(Value::Null);
                    continue_out = Some(encode_continue(
                        meta_str(&last, "namespace"),
                        meta_str(&last, "name"),
                        rv,
                    ));
                    remaining = Some(rest);
                }
            }
            None => items.extend(matching.map(|o| present(rt, o))),
        }
        Ok(ListResult {
            items,
            resource_version: rv,
            continue_token: continue_out,
            remaining,
        })
    }

    // ---- writes --------------------------------------------------------------------------

    fn check_namespace(
        st: &State,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        creating: bool,
    ) -> ApiResult<()> {
        if !rt.namespaced {
            return Ok(());
        }
        match st.store.get("/namespaces", "", ns) {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(n) if creating && n["status"]["phase"] == "Terminating" => {
                Err(ApiError::forbidden(
                    &rt.group,
                    &rt.plural,
                    name,
                    &format!(
                        "unable to create new content in namespace {ns} because it is being terminated"
                    ),
                ))
            }
            Some(_) => Ok(()),
        }
    }

    fn check_type_meta(rt: &ResourceType, body: &Value) -> ApiResult<()> {
        if let Some(kind) = body.get("kind").and_then(Value::as_str)
            && !kind.is_empty()
            && kind != rt.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                rt.kind
            )));
        }
        if let Some(av) = body.get("apiVersion").and_then(Value::as_str)
            && !av.is_empty()
        {
            let (g, _) = crate::registry::split_api_version(av);
            if g != rt.group {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({})",
                    rt.api_version()
                )));
            }
        }
        Ok(())
    }

    /// Schema admission (custom resources) and built-in validation; returns warnings.
    fn admit(
        rt: &ResourceType,
        obj: &mut Value,
        old: Option<&Value>,
        opts: &WriteOpts,
    ) -> ApiResult<Vec<String>> {
        let name = meta_str(obj, "name").to_owned();
        let mut errors: Vec<FieldError> = Vec::new();
        let mut warnings = Vec::new();
        for f in ["labels", "annotations"] {
            errors.extend(meta::validate_string_map(obj, f));
        }
        let mut unknown_fields = Vec::new();
        if rt.custom
            && let Some(schema) = &rt.schema
        {
            let adm = schema::admit(schema, obj, old);
            unknown_fields.extend(adm.unknown_fields);
            errors.extend(adm.errors);
        }
        if events::is_event(&rt.group, &rt.kind) {
            // The other Event version's fields (`message` in events.k8s.io/v1, ...) are unknown.
            unknown_fields.extend(events::prune_foreign(obj, Version::of_group(&rt.group)));
        }
        if !unknown_fields.is_empty() {
            match opts.validation {
                FieldValidation::Strict => {
                    let list: Vec<String> = unknown_fields
                        .iter()
                        .map(|f| format!("unknown field {f:?}"))
                        .collect();
                    return Err(ApiError::bad_request(format!(
                        "{kind} in version {v:?} cannot be handled as a {kind}: strict decoding error: {}",
                        list.join(", "),
                        kind = rt.kind,
                        v = rt.version
                    )));
                }
                FieldValidation::Warn => {
                    warnings.extend(
                        unknown_fields
                            .iter()
                            .map(|f| format!("unknown field {f:?}")),
                    );
                }
                FieldValidation::Ignore => {}
            }
        }
        errors.extend(builtin::validate(rt, obj));
        if is_crd(rt) {
            errors.extend(schema::structural::check_crd(obj));
        }
        if !errors.is_empty() {
            return Err(ApiError::invalid(&rt.group, &rt.kind, &name, errors));
        }
        Ok(warnings)
    }

    pub fn create(
        &self,
        rt: &ResourceType,
        ns: &str,
        body: Value,
        opts: &WriteOpts,
    ) -> ApiResult<WriteOutcome> {
        let mut st = self.lock();
        self.create_locked(&mut st, rt, ns, body, opts, Managed::Update)
    }

    fn create_locked(
        &self,
        st: &mut State,
        rt: &ResourceType,
        ns: &str,
        mut body: Value,
        opts: &WriteOpts,
        managed_mode: Managed,
    ) -> ApiResult<WriteOutcome> {
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        Self::check_type_meta(rt, &body)?;
        place_in_namespace(rt, ns, &mut body)?;
        let key = rt.store_key();
        let name = assign_name(st, rt, &key, ns, &mut body)?;
        if let Some(e) = meta::validate_name(&name, name_rule(rt)) {
            return Err(ApiError::invalid(&rt.group, &rt.kind, &name, vec![e]));
        }
        Self::check_namespace(st, rt, ns, &name, true)?;
        if st
            .store
            .get(&key, if rt.namespaced { ns } else { "" }, &name)
            .is_some()
        {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        stamp_new(rt, &mut body)?;
        builtin::default_on_create(rt, &mut body, &st.store);
        let warnings = Self::admit(rt, &mut body, None, opts)?;
        if is_crd(rt) {
            builtin::crd_status(&mut body);
        }
        if let Managed::Update = managed_mode {
            body["metadata"]["managedFields"] = json!([]);
            managed::record_update(
                None,
                &mut body,
                &opts.manager,
                &rt.api_version(),
                shape_of(rt),
                Scope::All,
            );
        }
        if opts.dry_run {
            return Ok(WriteOutcome {
                object: body,
                warnings,
                created: true,
            });
        }
        let stored = st.store.put(&key, to_storage(rt, body))?;
        if is_crd(rt) {
            self.rebuild_registry(st);
        }
        crate::gc::collect_if_orphaned(self, st, rt, &stored)?;
        Ok(WriteOutcome {
            object: present(rt, &stored),
            warnings,
            created: true,
        })
    }

    pub fn rebuild_registry(&self, st: &mut State) {
        let crds: Vec<Value> = st
            .store
            .list("apiextensions.k8s.io/customresourcedefinitions", None)
            .iter()
            .map(|c| (**c).clone())
            .collect();
        let served_before = st.registry.custom_store_keys();
        st.registry.rebuild(&crds);
        // A real apiserver starts a custom resource's watch cache when its CRD is served: a watch
        // from an older resourceVersion is 410 Gone there, so it is here.
        for key in st.registry.custom_store_keys().difference(&served_before) {
            st.store.start_watch_history(key);
        }
    }

    /// PUT (main resource or `/status`).
    pub fn update(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        mut body: Value,
        status: bool,
        opts: &WriteOpts,
    ) -> ApiResult<WriteOutcome> {
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        Self::check_type_meta(rt, &body)?;
        let body_name = meta_str(&body, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if rt.namespaced {
            let body_ns = meta_str(&body, "namespace");
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
        let mut st = self.lock();
        let Some(old) = load(&st, rt, ns, name) else {
            return Err(ApiError::not_found(&rt.group, &rt.plural, name));
        };
        let rv = meta_str(&body, "resourceVersion");
        if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::stale(&rt.group, &rt.plural, name));
        }
        // Custom resources allow no unconditional update (as the apiserver: checked against 1.20
        // by tests/tests/differential.rs).
        if rt.custom && rv.is_empty() {
            return Err(ApiError::invalid(
                &rt.group,
                &rt.kind,
                name,
                vec![FieldError::invalid(
                    "metadata.resourceVersion",
                    &json!("0x0"),
                    "must be specified for an update",
                )],
            ));
        }
        if !body["metadata"].is_object() {
            body["metadata"] = json!({});
        }
        self.finish_update(&mut st, rt, &old, body, status, opts, Managed::Update)
    }

    /// Common tail of PUT and PATCH: isolation rules, validation, generation, managed fields,
    /// no-op detection, storage, and finalization. `old` and `new` are at `rt`'s version
    /// (`old` from [`load`]).
    #[allow(clippy::too_many_arguments)]
    fn finish_update(
        &self,
        st: &mut State,
        rt: &ResourceType,
        old: &Arc<Value>,
        mut new: Value,
        status: bool,
        opts: &WriteOpts,
        managed_mode: Managed,
    ) -> ApiResult<WriteOutcome> {
        let name = meta_str(old, "name").to_owned();
        isolate_update(rt, old, &mut new, status);
        check_no_new_finalizers(rt, old, &new, &name)?;
        builtin::default_on_update(rt, &mut new, old);
        let warnings = if status && is_crd(rt) {
            Vec::new()
        } else {
            Self::admit(rt, &mut new, Some(old), opts)?
        };
        if is_crd(rt) && !status {
            builtin::crd_status(&mut new);
        }
        if tracks_generation(rt) && spec_part(rt, &new) != spec_part(rt, old) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0);
            new["metadata"]["generation"] = json!(g + 1);
        }
        if let Managed::Update = managed_mode {
            new["metadata"]["managedFields"] = old["metadata"]["managedFields"].clone();
            managed::record_update(
                Some(old),
                &mut new,
                &opts.manager,
                &rt.api_version(),
                shape_of(rt),
                scope_of(rt, status),
            );
        }
        if comparable(&new) == comparable(old) {
            return Ok(WriteOutcome {
                object: served(rt, (**old).clone()),
                warnings,
                created: false,
            });
        }
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if opts.dry_run {
            return Ok(WriteOutcome {
                object: served(rt, new),
                warnings,
                created: false,
            });
        }
        let finalized = !new["metadata"]["deletionTimestamp"].is_null()
            && new["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty());
        let key = rt.store_key();
        let out = if finalized {
            let ns = meta_str(&new, "namespace").to_owned();
            st.store.put(&key, to_storage(rt, new))?;
            let gone = crate::gc::remove_now(self, st, &key, &ns, &name)?;
            gone.unwrap_or_else(|| Arc::new(Value::Null))
        } else {
            st.store.put(&key, to_storage(rt, new))?
        };
        if is_crd(rt) {
            self.rebuild_registry(st);
        }
        crate::gc::sweep(self, st)?;
        Ok(WriteOutcome {
            object: present(rt, &out),
            warnings,
            created: false,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        kind: PatchType,
        body: &[u8],
        status: bool,
        opts: &WriteOpts,
    ) -> ApiResult<WriteOutcome> {
        if kind == PatchType::Apply {
            return self.apply(rt, ns, name, body, status, opts);
        }
        let mut st = self.lock();
        let Some(old) = load(&st, rt, ns, name) else {
            return Err(ApiError::not_found(&rt.group, &rt.plural, name));
        };
        let patched = patch::apply_patch(kind, &old, body)?;
        if !patched.is_object() {
            return Err(ApiError::bad_request("patch result is not an object"));
        }
        let rv = meta_str(&patched, "resourceVersion");
        if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::stale(&rt.group, &rt.plural, name));
        }
        let body_name = meta_str(&patched, "name");
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        self.finish_update(&mut st, rt, &old, patched, status, opts, Managed::Update)
    }

    fn apply(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        body: &[u8],
        status: bool,
        opts: &WriteOpts,
    ) -> ApiResult<WriteOutcome> {
        if !opts.manager_explicit || opts.manager.is_empty() {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                vec![FieldError::required(
                    "fieldManager",
                    "is required for apply patch",
                )],
            ));
        }
        let applied = patch::parse_apply_body(body)?;
        Self::check_type_meta(rt, &applied)?;
        let applied_name = meta_str(&applied, "name");
        if !applied_name.is_empty() && applied_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({applied_name}) does not match the name on the URL ({name})"
            )));
        }
        let mut st = self.lock();
        let existing = load(&st, rt, ns, name);
        let scope = scope_of(rt, status);
        let live = match &existing {
            Some(o) => (**o).clone(),
            None => {
                if status {
                    return Err(ApiError::not_found(&rt.group, &rt.plural, name));
                }
                let mut l = json!({"apiVersion": rt.api_version(), "kind": rt.kind, "metadata": {"name": name}});
                if rt.namespaced {
                    l["metadata"]["namespace"] = json!(ns);
                }
                l
            }
        };
        let merged = managed::apply(
            &live,
            &applied,
            &opts.manager,
            &rt.api_version(),
            opts.force,
            shape_of(rt),
            scope,
        )
        .map_err(|conflicts| apply_conflict_error(rt, name, &conflicts))?;
        match existing {
            Some(old) => self.finish_update(&mut st, rt, &old, merged, status, opts, Managed::Done),
            None => self.create_locked(&mut st, rt, ns, merged, opts, Managed::Done),
        }
    }

    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> ApiResult<Value> {
        let mut st = self.lock();
        let Some(old) = st.store.get(&rt.store_key(), ns, name) else {
            return Err(ApiError::not_found(&rt.group, &rt.plural, name));
        };
        if let Some(uid) = &opts.precondition_uid
            && uid != meta_str(&old, "uid")
        {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid")
                ),
            ));
        }
        if let Some(rv) = &opts.precondition_rv
            && rv != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.plural,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta_str(&old, "resourceVersion")
                ),
            ));
        }
        if opts.dry_run {
            return Ok(present(rt, &old));
        }
        let out = crate::gc::delete(self, &mut st, rt, &old, opts.propagation.as_deref())?;
        crate::gc::sweep(self, &mut st)?;
        Ok(present(rt, &out))
    }

    pub fn delete_collection(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        opts: &DeleteOpts,
    ) -> ApiResult<Vec<Value>> {
        let list = self.list(rt, ns, labels, fields, None, None)?;
        let mut out = Vec::new();
        for item in list.items {
            match self.delete(
                rt,
                meta_str(&item, "namespace"),
                meta_str(&item, "name"),
                opts,
            ) {
                Ok(v) => out.push(v),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

fn apply_conflict_error(
    rt: &ResourceType,
    name: &str,
    conflicts: &[managed::Conflict],
) -> ApiError {
    let lines: Vec<String> = conflicts
        .iter()
        .map(|c| format!("conflict with {:?}: {}", c.manager, c.field))
        .collect();
    let message = if conflicts.len() == 1 {
        format!("Apply failed with 1 conflict: {}", lines[0])
    } else {
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    let causes = conflicts
        .iter()
        .map(|c| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {:?} using {}", c.manager, c.api_version),
                "field": c.field,
            })
        })
        .collect();
    let mut e = ApiError::new(409, "Conflict", message).with_causes(causes);
    if let Some(d) = e.details.as_mut() {
        d["name"] = json!(name);
        d["kind"] = json!(rt.plural);
        if !rt.group.is_empty() {
            d["group"] = json!(rt.group);
        }
    }
    e
}

fn encode_continue(ns: &str, name: &str, rv: u64) -> String {
    use base64::Engine as _;
    let raw = json!({"v": "kube-sim/1", "ns": ns, "name": name, "rv": rv}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(tok: &str) -> ApiResult<(String, String)> {
    use base64::Engine as _;
    let bad = || ApiError::bad_request("continue key is not valid: invalid continue token");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(tok)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if v["v"] != "kube-sim/1" {
        return Err(bad());
    }
    Ok((
        v["ns"].as_str().unwrap_or_default().to_owned(),
        v["name"].as_str().unwrap_or_default().to_owned(),
    ))
}

/// A created object's metadata is an object, and its namespace the request's (set when absent; a
/// different one is a 400); a cluster-scoped object has none.
fn place_in_namespace(rt: &ResourceType, ns: &str, body: &mut Value) -> ApiResult<()> {
    if !body["metadata"].is_object() {
        body["metadata"] = json!({});
    }
    if rt.namespaced {
        let body_ns = meta_str(body, "namespace");
        if body_ns.is_empty() {
            body["metadata"]["namespace"] = json!(ns);
        } else if body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    } else if let Some(m) = body["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    Ok(())
}

/// The created object's name: `metadata.name`, or `generateName` plus a suffix not taken yet.
fn assign_name(
    st: &State,
    rt: &ResourceType,
    key: &str,
    ns: &str,
    body: &mut Value,
) -> ApiResult<String> {
    let name = meta_str(body, "name").to_owned();
    if !name.is_empty() {
        return Ok(name);
    }
    let prefix = meta_str(body, "generateName").to_owned();
    if prefix.is_empty() {
        return Err(ApiError::invalid(
            &rt.group,
            &rt.kind,
            "",
            vec![FieldError::required(
                "metadata.name",
                "name or generateName is required",
            )],
        ));
    }
    let name = loop {
        let candidate = format!("{prefix}{}", meta::name_suffix());
        if st.store.get(key, ns, &candidate).is_none() {
            break candidate;
        }
    };
    body["metadata"]["name"] = json!(name);
    Ok(name)
}

/// What the server sets on a created object: type meta, uid, creation time, generation 1 (when
/// tracked); a client's resourceVersion, deletion fields, selfLink and (with a status
/// subresource) status are dropped.
fn stamp_new(rt: &ResourceType, body: &mut Value) -> ApiResult<()> {
    // The write is processed at the request's version and converted when stored.
    body["apiVersion"] = json!(rt.api_version());
    body["kind"] = json!(rt.kind);
    {
        let m = body["metadata"]
            .as_object_mut()
            .ok_or_else(|| ApiError::internal("metadata"))?;
        m.remove("resourceVersion");
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        m.remove("selfLink");
        m.insert("uid".into(), json!(meta::new_uid()));
        m.insert("creationTimestamp".into(), json!(meta::now()));
        if tracks_generation(rt) {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
    }
    if rt.has_status
        && let Some(m) = body.as_object_mut()
    {
        m.remove("status");
    }
    Ok(())
}

/// What a PUT/PATCH may not change: through `/status` only `.status` (and managed fields) change;
/// elsewhere a status subresource's `.status` is kept; type meta and the server-owned metadata
/// (name, namespace, uid, creation, deletion, generation) come from the stored object.
fn isolate_update(rt: &ResourceType, old: &Value, new: &mut Value, status: bool) {
    if status {
        // The status endpoint changes only .status; everything else comes from the stored object.
        let mut merged = old.clone();
        match new.get("status") {
            Some(s) => merged["status"] = s.clone(),
            None => {
                if let Some(m) = merged.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        merged["metadata"]["managedFields"] = new["metadata"]["managedFields"].clone();
        *new = merged;
    } else if rt.has_status {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    new["apiVersion"] = old["apiVersion"].clone();
    new["kind"] = old["kind"].clone();
    if !new["metadata"].is_object() {
        new["metadata"] = json!({});
    }
    for f in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old["metadata"].get(f) {
            Some(v) => new["metadata"][f] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(f);
                }
            }
        }
    }
}

/// An object being deleted gets no new finalizers.
fn check_no_new_finalizers(
    rt: &ResourceType,
    old: &Value,
    new: &Value,
    name: &str,
) -> ApiResult<()> {
    if !old["metadata"]["deletionTimestamp"].is_null() {
        let old_f: Vec<&Value> = old["metadata"]["finalizers"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let added: Vec<String> = new["metadata"]["finalizers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|f| !old_f.contains(f))
                    .filter_map(|f| f.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if !added.is_empty() {
            return Err(ApiError::invalid(
                &rt.group,
                &rt.kind,
                name,
                vec![FieldError::forbidden(
                    "metadata.finalizers",
                    &format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                    ),
                )],
            ));
        }
    }
    Ok(())
}
