//! Deletion semantics: finalizers hold objects (deletionTimestamp set) until removed; owner
//! references cascade (Background deletes dependents, Foreground holds the owner with the
//! `foregroundDeletion` finalizer until blocking dependents are gone, Orphan strips the owner
//! reference); deleting a Namespace terminates it and everything in it; deleting a CRD deletes
//! its instances. The garbage collector runs synchronously inside the write, so by the time a
//! DELETE returns, every dependent without finalizers is gone.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::engine::{Engine, State};
use crate::error::ApiResult;
use crate::registry::ResourceType;
use crate::store::meta_str;

const FOREGROUND: &str = "foregroundDeletion";
const CRD_CLEANUP: &str = "customresourcecleanup.apiextensions.k8s.io";
const CRD_KEY: &str = "apiextensions.k8s.io/customresourcedefinitions";
const NS_KEY: &str = "/namespaces";

fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn rt_for_key(st: &State, key: &str) -> Option<Arc<ResourceType>> {
    let (group, plural) = key.rsplit_once('/')?;
    st.registry.find_any_version(group, plural)
}

/// Sets deletionTimestamp (once), optionally adding a finalizer; bumps generation like the apiserver.
fn mark_deleting(
    st: &mut State,
    key: &str,
    obj: &Arc<Value>,
    add_finalizer: Option<&str>,
) -> ApiResult<Arc<Value>> {
    let mut fins = finalizers(obj);
    let already = !obj["metadata"]["deletionTimestamp"].is_null();
    let adds = add_finalizer.is_some_and(|f| !fins.iter().any(|x| x == f));
    if already && !adds {
        return Ok(obj.clone());
    }
    let mut new = (**obj).clone();
    if let Some(f) = add_finalizer.filter(|_| adds) {
        fins.push(f.to_owned());
        new["metadata"]["finalizers"] = json!(fins);
    }
    if !already {
        new["metadata"]["deletionTimestamp"] = json!(crate::meta::now());
        new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        if let Some(g) = new["metadata"]["generation"].as_i64() {
            new["metadata"]["generation"] = json!(g + 1);
        }
    }
    st.store.put(key, new)
}

/// Deletes `obj` with the given propagation policy; returns the object as it is afterwards
/// (still present with deletionTimestamp, or the final state that was removed).
pub fn delete(
    engine: &Engine,
    st: &mut State,
    rt: &ResourceType,
    obj: &Arc<Value>,
    policy: Option<&str>,
) -> ApiResult<Arc<Value>> {
    let key = rt.store_key();
    let ns = meta_str(obj, "namespace").to_owned();
    let name = meta_str(obj, "name").to_owned();
    let uid = meta_str(obj, "uid").to_owned();
    if key == NS_KEY {
        return delete_namespace(engine, st, obj);
    }
    if key == CRD_KEY {
        return delete_crd(engine, st, obj);
    }
    match policy {
        Some("Orphan") => orphan_dependents(st, &uid)?,
        Some("Foreground") => {
            let marked = mark_deleting(st, &key, obj, Some(FOREGROUND))?;
            st.pending_finalization = true;
            for (dkey, dep) in st.store.dependents_of(&uid) {
                if let Some(drt) = rt_for_key(st, &dkey) {
                    delete(engine, st, &drt, &dep, Some("Background"))?;
                }
            }
            return Ok(st.store.get(&key, &ns, &name).unwrap_or(marked));
        }
        _ => {}
    }
    if !finalizers(obj).is_empty() {
        return mark_deleting(st, &key, obj, None);
    }
    Ok(remove_now(engine, st, &key, &ns, &name)?.unwrap_or_else(|| obj.clone()))
}

/// The garbage collector's rule for dependents whose owners are all gone: delete them
/// (Background). Real clusters do it asynchronously; doing it right after the create gives
/// watchers the same ADDED-then-DELETED sequence. This closes the race in which a controller
/// creates a dependent (a Job's Pod) just after its owner was deleted.
pub fn collect_if_orphaned(
    engine: &Engine,
    st: &mut State,
    rt: &ResourceType,
    obj: &Arc<Value>,
) -> ApiResult<()> {
    let Some(refs) = obj["metadata"]["ownerReferences"].as_array() else {
        return Ok(());
    };
    let uids: Vec<&str> = refs.iter().filter_map(|r| r["uid"].as_str()).collect();
    if uids.is_empty() || uids.iter().any(|u| st.store.uid_exists(u)) {
        return Ok(());
    }
    delete(engine, st, rt, obj, Some("Background")).map(drop)
}

fn orphan_dependents(st: &mut State, uid: &str) -> ApiResult<()> {
    for (dkey, dep) in st.store.dependents_of(uid) {
        let mut new = (*dep).clone();
        if let Some(refs) = new["metadata"]["ownerReferences"].as_array_mut() {
            refs.retain(|r| r["uid"].as_str() != Some(uid));
            if refs.is_empty()
                && let Some(m) = new["metadata"].as_object_mut()
            {
                m.remove("ownerReferences");
            }
        }
        st.store.put(&dkey, new)?;
    }
    Ok(())
}

/// Removes an object from the store now and cascades to its dependents (Background).
pub fn remove_now(
    engine: &Engine,
    st: &mut State,
    key: &str,
    ns: &str,
    name: &str,
) -> ApiResult<Option<Arc<Value>>> {
    let gone = st.store.remove(key, ns, name)?;
    if let Some(g) = &gone {
        if key == "/pods" {
            engine.logs.remove(ns, name);
        }
        let uid = meta_str(g, "uid").to_owned();
        for (dkey, dep) in st.store.dependents_of(&uid) {
            let other_owner_alive =
                dep["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| {
                        refs.iter()
                            .filter_map(|r| r["uid"].as_str())
                            .any(|u| u != uid && st.store.uid_exists(u))
                    });
            if other_owner_alive || !dep["metadata"]["deletionTimestamp"].is_null() {
                continue;
            }
            match rt_for_key(st, &dkey) {
                Some(drt) => {
                    delete(engine, st, &drt, &dep, Some("Background"))?;
                }
                None => {
                    remove_now(
                        engine,
                        st,
                        &dkey,
                        meta_str(&dep, "namespace"),
                        meta_str(&dep, "name"),
                    )?;
                }
            }
        }
        if key == CRD_KEY {
            engine.rebuild_registry(st);
        }
    }
    Ok(gone)
}

fn delete_namespace(engine: &Engine, st: &mut State, ns_obj: &Arc<Value>) -> ApiResult<Arc<Value>> {
    let name = meta_str(ns_obj, "name").to_owned();
    let marked = if ns_obj["status"]["phase"] == "Terminating" {
        ns_obj.clone()
    } else {
        let mut new = (**ns_obj).clone();
        new["metadata"]["deletionTimestamp"] = json!(crate::meta::now());
        new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        new["status"]["phase"] = json!("Terminating");
        st.store.put(NS_KEY, new)?
    };
    st.pending_finalization = true;
    for key in st.store.keys() {
        let Some(rt) = rt_for_key(st, &key) else {
            continue;
        };
        if !rt.namespaced {
            continue;
        }
        for obj in st.store.list(&key, Some(&name)) {
            if obj["metadata"]["deletionTimestamp"].is_null() {
                delete(engine, st, &rt, &obj, Some("Background"))?;
            }
        }
    }
    Ok(st.store.get(NS_KEY, "", &name).unwrap_or(marked))
}

fn delete_crd(engine: &Engine, st: &mut State, crd: &Arc<Value>) -> ApiResult<Arc<Value>> {
    let name = meta_str(crd, "name").to_owned();
    let marked = mark_deleting(st, CRD_KEY, crd, Some(CRD_CLEANUP))?;
    st.pending_finalization = true;
    let bucket = format!(
        "{}/{}",
        crd["spec"]["group"].as_str().unwrap_or_default(),
        crd["spec"]["names"]["plural"].as_str().unwrap_or_default()
    );
    if let Some(rt) = rt_for_key(st, &bucket) {
        for obj in st.store.list(&bucket, None) {
            if obj["metadata"]["deletionTimestamp"].is_null() {
                delete(engine, st, &rt, &obj, Some("Background"))?;
            }
        }
    }
    Ok(st.store.get(CRD_KEY, "", &name).unwrap_or(marked))
}

fn remove_finalizer(st: &mut State, key: &str, obj: &Arc<Value>, f: &str) -> ApiResult<Arc<Value>> {
    let mut new = (**obj).clone();
    let fins: Vec<String> = finalizers(obj).into_iter().filter(|x| x != f).collect();
    if fins.is_empty() {
        if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("finalizers");
        }
    } else {
        new["metadata"]["finalizers"] = json!(fins);
    }
    st.store.put(key, new)
}

/// Finishes deletions that were waiting: foreground owners whose blocking dependents are gone,
/// terminating namespaces that are empty, deleted CRDs without instances. Loops to a fixpoint.
pub fn sweep(engine: &Engine, st: &mut State) -> ApiResult<()> {
    if !st.pending_finalization {
        return Ok(());
    }
    loop {
        let mut changed = false;
        let mut pending = false;
        for key in st.store.keys() {
            for obj in st.store.list(&key, None) {
                if obj["metadata"]["deletionTimestamp"].is_null() {
                    continue;
                }
                let fins = finalizers(&obj);
                let ns = meta_str(&obj, "namespace").to_owned();
                let name = meta_str(&obj, "name").to_owned();
                if fins.iter().any(|f| f == FOREGROUND) {
                    pending = true;
                    let uid = meta_str(&obj, "uid");
                    let blocked = st.store.dependents_of(uid).iter().any(|(_, d)| {
                        d["metadata"]["ownerReferences"]
                            .as_array()
                            .is_some_and(|r| {
                                r.iter().any(|r| {
                                    r["uid"].as_str() == Some(uid)
                                        && r["blockOwnerDeletion"].as_bool() == Some(true)
                                })
                            })
                    });
                    if !blocked {
                        let updated = remove_finalizer(st, &key, &obj, FOREGROUND)?;
                        if finalizers(&updated).is_empty() {
                            remove_now(engine, st, &key, &ns, &name)?;
                        }
                        changed = true;
                    }
                } else if key == CRD_KEY && fins.iter().any(|f| f == CRD_CLEANUP) {
                    pending = true;
                    let bucket = format!(
                        "{}/{}",
                        obj["spec"]["group"].as_str().unwrap_or_default(),
                        obj["spec"]["names"]["plural"].as_str().unwrap_or_default()
                    );
                    if st.store.list(&bucket, None).is_empty() {
                        let updated = remove_finalizer(st, &key, &obj, CRD_CLEANUP)?;
                        if finalizers(&updated).is_empty() {
                            remove_now(engine, st, &key, &ns, &name)?;
                        }
                        changed = true;
                    }
                } else if key == NS_KEY && obj["status"]["phase"] == "Terminating" {
                    pending = true;
                    let empty = st
                        .store
                        .keys()
                        .iter()
                        .filter(|k| k.as_str() != NS_KEY)
                        .all(|k| st.store.list(k, Some(&name)).is_empty());
                    if empty && fins.is_empty() {
                        remove_now(engine, st, &key, "", &name)?;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            st.pending_finalization = pending;
            return Ok(());
        }
    }
}
