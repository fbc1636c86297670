//! Minimal decoding of Kubernetes protobuf request bodies.
//!
//! client-go's typed clientsets (used by `kubectl create configmap|secret|namespace|serviceaccount`
//! and by helm's release storage) send `application/vnd.kubernetes.protobuf` bodies and do not fall
//! back to JSON on 415. Responses are always JSON (clients accept it), but these request bodies must
//! be understood. Only the kinds listed in [`decode`] are supported (Pods, Jobs and Deployments
//! with the fields kubectl's generators set); others get 415.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};

#[derive(Clone, Copy)]
enum F {
    Str(&'static str),
    Int(&'static str),
    Bool(&'static str),
    /// Bytes rendered as base64 (how JSON carries `[]byte`).
    Bytes(&'static str),
    Time(&'static str),
    Msg(&'static str, &'static [(u32, F)]),
    RepStr(&'static str),
    RepMsg(&'static str, &'static [(u32, F)]),
    MapStr(&'static str),
    MapBytes(&'static str),
    /// FieldsV1 (raw JSON bytes inside a message).
    FieldsV1(&'static str),
}

type Schema = &'static [(u32, F)];

const OWNER_REF: Schema = &[
    (1, F::Str("kind")),
    (3, F::Str("name")),
    (4, F::Str("uid")),
    (5, F::Str("apiVersion")),
    (6, F::Bool("controller")),
    (7, F::Bool("blockOwnerDeletion")),
];
const MANAGED: Schema = &[
    (1, F::Str("manager")),
    (2, F::Str("operation")),
    (3, F::Str("apiVersion")),
    (4, F::Time("time")),
    (6, F::Str("fieldsType")),
    (7, F::FieldsV1("fieldsV1")),
    (8, F::Str("subresource")),
];
const OBJECT_META: Schema = &[
    (1, F::Str("name")),
    (2, F::Str("generateName")),
    (3, F::Str("namespace")),
    (5, F::Str("uid")),
    (6, F::Str("resourceVersion")),
    (7, F::Int("generation")),
    (8, F::Time("creationTimestamp")),
    (9, F::Time("deletionTimestamp")),
    (10, F::Int("deletionGracePeriodSeconds")),
    (11, F::MapStr("labels")),
    (12, F::MapStr("annotations")),
    (13, F::RepMsg("ownerReferences", OWNER_REF)),
    (14, F::RepStr("finalizers")),
    (17, F::RepMsg("managedFields", MANAGED)),
];
const CONFIG_MAP: Schema = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::MapStr("data")),
    (3, F::MapBytes("binaryData")),
    (4, F::Bool("immutable")),
];
const SECRET: Schema = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::MapBytes("data")),
    (3, F::Str("type")),
    (4, F::MapStr("stringData")),
    (5, F::Bool("immutable")),
];
const NS_SPEC: Schema = &[(1, F::RepStr("finalizers"))];
const NS_STATUS: Schema = &[(1, F::Str("phase"))];
const NAMESPACE: Schema = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::Msg("spec", NS_SPEC)),
    (3, F::Msg("status", NS_STATUS)),
];
const OBJECT_REF: Schema = &[
    (1, F::Str("kind")),
    (2, F::Str("namespace")),
    (3, F::Str("name")),
    (4, F::Str("uid")),
    (5, F::Str("apiVersion")),
];
const LOCAL_REF: Schema = &[(1, F::Str("name"))];
const SERVICE_ACCOUNT: Schema = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::RepMsg("secrets", OBJECT_REF)),
    (3, F::RepMsg("imagePullSecrets", LOCAL_REF)),
    (4, F::Bool("automountServiceAccountToken")),
];
const PRECONDITIONS: Schema = &[(1, F::Str("uid")), (2, F::Str("resourceVersion"))];
const DELETE_OPTIONS: Schema = &[
    (1, F::Int("gracePeriodSeconds")),
    (2, F::Msg("preconditions", PRECONDITIONS)),
    (3, F::Bool("orphanDependents")),
    (4, F::Str("propagationPolicy")),
    (5, F::RepStr("dryRun")),
];
const LABEL_SELECTOR: Schema = &[(1, F::MapStr("matchLabels"))];
const ENV_VAR: Schema = &[(1, F::Str("name")), (2, F::Str("value"))];
const CONTAINER_PORT: Schema = &[
    (1, F::Str("name")),
    (2, F::Int("hostPort")),
    (3, F::Int("containerPort")),
    (4, F::Str("protocol")),
];
const CONTAINER: Schema = &[
    (1, F::Str("name")),
    (2, F::Str("image")),
    (3, F::RepStr("command")),
    (4, F::RepStr("args")),
    (5, F::Str("workingDir")),
    (6, F::RepMsg("ports", CONTAINER_PORT)),
    (7, F::RepMsg("env", ENV_VAR)),
    (13, F::Str("terminationMessagePath")),
    (14, F::Str("imagePullPolicy")),
    (16, F::Bool("stdin")),
    (17, F::Bool("stdinOnce")),
    (18, F::Bool("tty")),
    (20, F::Str("terminationMessagePolicy")),
];
const POD_SPEC: Schema = &[
    (2, F::RepMsg("containers", CONTAINER)),
    (3, F::Str("restartPolicy")),
    (4, F::Int("terminationGracePeriodSeconds")),
    (5, F::Int("activeDeadlineSeconds")),
    (6, F::Str("dnsPolicy")),
    (7, F::MapStr("nodeSelector")),
    (8, F::Str("serviceAccountName")),
    (10, F::Str("nodeName")),
    (19, F::Str("schedulerName")),
    (20, F::RepMsg("initContainers", CONTAINER)),
];
const POD_TEMPLATE: Schema = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::Msg("spec", POD_SPEC)),
];
const POD: Schema = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::Msg("spec", POD_SPEC)),
];
const JOB_SPEC: Schema = &[
    (1, F::Int("parallelism")),
    (2, F::Int("completions")),
    (3, F::Int("activeDeadlineSeconds")),
    (4, F::Msg("selector", LABEL_SELECTOR)),
    (5, F::Bool("manualSelector")),
    (6, F::Msg("template", POD_TEMPLATE)),
    (7, F::Int("backoffLimit")),
    (8, F::Int("ttlSecondsAfterFinished")),
    (9, F::Str("completionMode")),
    (10, F::Bool("suspend")),
];
const JOB: Schema = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::Msg("spec", JOB_SPEC)),
];
const DEPLOYMENT_SPEC: Schema = &[
    (1, F::Int("replicas")),
    (2, F::Msg("selector", LABEL_SELECTOR)),
    (3, F::Msg("template", POD_TEMPLATE)),
    (5, F::Int("minReadySeconds")),
    (6, F::Int("revisionHistoryLimit")),
    (7, F::Bool("paused")),
    (9, F::Int("progressDeadlineSeconds")),
];
const DEPLOYMENT: Schema = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::Msg("spec", DEPLOYMENT_SPEC)),
];
const TYPE_META: Schema = &[(1, F::Str("apiVersion")), (2, F::Str("kind"))];
const UNKNOWN: Schema = &[
    (1, F::Msg("typeMeta", TYPE_META)),
    (2, F::Bytes("raw")),
    (3, F::Str("contentEncoding")),
    (4, F::Str("contentType")),
];

pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn bad() -> ApiError {
    ApiError::bad_request("the protobuf body could not be decoded")
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> ApiResult<u64> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or_else(bad)?;
            self.pos += 1;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(bad())
    }
    fn bytes(&mut self) -> ApiResult<&'a [u8]> {
        let len = usize::try_from(self.varint()?).map_err(|_| bad())?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(bad)?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn skip(&mut self, wire: u64) -> ApiResult<()> {
        match wire {
            0 => {
                self.varint()?;
            }
            1 => self.pos += 8,
            2 => {
                self.bytes()?;
            }
            5 => self.pos += 4,
            _ => return Err(bad()),
        }
        if self.pos > self.buf.len() {
            Err(bad())
        } else {
            Ok(())
        }
    }
}

fn string(b: &[u8]) -> ApiResult<String> {
    String::from_utf8(b.to_vec()).map_err(|_| bad())
}

fn time(b: &[u8]) -> ApiResult<Value> {
    let mut r = Reader { buf: b, pos: 0 };
    let mut secs = 0i64;
    if b.is_empty() {
        return Ok(Value::Null);
    }
    while r.pos < b.len() {
        let tag = r.varint()?;
        if tag >> 3 == 1 && tag & 7 == 0 {
            secs = r.varint()? as i64;
        } else {
            r.skip(tag & 7)?;
        }
    }
    if secs == 0 {
        return Ok(Value::Null);
    }
    Ok(chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
        .unwrap_or(Value::Null))
}

fn map_entry(b: &[u8]) -> ApiResult<(String, Vec<u8>)> {
    let mut r = Reader { buf: b, pos: 0 };
    let (mut k, mut v) = (String::new(), Vec::new());
    while r.pos < b.len() {
        let tag = r.varint()?;
        match (tag >> 3, tag & 7) {
            (1, 2) => k = string(r.bytes()?)?,
            (2, 2) => v = r.bytes()?.to_vec(),
            (_, w) => r.skip(w)?,
        }
    }
    Ok((k, v))
}

fn message(b: &[u8], schema: Schema) -> ApiResult<Value> {
    let mut out = Map::new();
    let mut r = Reader { buf: b, pos: 0 };
    while r.pos < b.len() {
        let tag = r.varint()?;
        let (num, wire) = (tag >> 3, tag & 7);
        let Some((_, f)) = schema.iter().find(|(n, _)| u64::from(*n) == num) else {
            r.skip(wire)?;
            continue;
        };
        match *f {
            // Go omits empty values from JSON (`omitempty`); protobuf carries them explicitly.
            F::Int(name) if wire == 0 => {
                let v = r.varint()? as i64;
                if v != 0 || name == "gracePeriodSeconds" {
                    out.insert(name.into(), json!(v));
                }
            }
            F::Bool(name) if wire == 0 => {
                out.insert(name.into(), json!(r.varint()? != 0));
            }
            F::Str(name) if wire == 2 => {
                let s = string(r.bytes()?)?;
                if !s.is_empty() {
                    out.insert(name.into(), json!(s));
                }
            }
            F::Bytes(name) if wire == 2 => {
                out.insert(
                    name.into(),
                    json!(base64::engine::general_purpose::STANDARD.encode(r.bytes()?)),
                );
            }
            F::Time(name) if wire == 2 => {
                let t = time(r.bytes()?)?;
                if !t.is_null() {
                    out.insert(name.into(), t);
                }
            }
            F::Msg(name, sub) if wire == 2 => {
                out.insert(name.into(), message(r.bytes()?, sub)?);
            }
            F::RepStr(name) if wire == 2 => {
                let s = string(r.bytes()?)?;
                out.entry(name)
                    .or_insert_with(|| json!([]))
                    .as_array_mut()
                    .ok_or_else(bad)?
                    .push(json!(s));
            }
            F::RepMsg(name, sub) if wire == 2 => {
                let m = message(r.bytes()?, sub)?;
                out.entry(name)
                    .or_insert_with(|| json!([]))
                    .as_array_mut()
                    .ok_or_else(bad)?
                    .push(m);
            }
            F::MapStr(name) if wire == 2 => {
                let (k, v) = map_entry(r.bytes()?)?;
                out.entry(name).or_insert_with(|| json!({}))[k] = json!(string(&v)?);
            }
            F::MapBytes(name) if wire == 2 => {
                let (k, v) = map_entry(r.bytes()?)?;
                out.entry(name).or_insert_with(|| json!({}))[k] =
                    json!(base64::engine::general_purpose::STANDARD.encode(v));
            }
            F::FieldsV1(name) if wire == 2 => {
                let inner = message(r.bytes()?, &[(1, F::Bytes("raw"))])?;
                let raw = inner["raw"]
                    .as_str()
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                    .unwrap_or_default();
                out.insert(
                    name.into(),
                    serde_json::from_slice(&raw).unwrap_or_else(|_| json!({})),
                );
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(Value::Object(out))
}

/// Decodes a `k8s\0`-prefixed protobuf envelope into JSON (object or DeleteOptions).
pub fn decode(body: &[u8]) -> ApiResult<Value> {
    let rest = body.strip_prefix(b"k8s\0").ok_or_else(bad)?;
    let env = message(rest, UNKNOWN)?;
    let raw = env["raw"]
        .as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .unwrap_or_default();
    let api_version = env["typeMeta"]["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let kind = env["typeMeta"]["kind"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let schema = match (api_version.as_str(), kind.as_str()) {
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Secret") => SECRET,
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ServiceAccount") => SERVICE_ACCOUNT,
        ("v1", "Pod") => POD,
        ("batch/v1", "Job") => JOB,
        ("apps/v1", "Deployment") => DEPLOYMENT,
        (_, "DeleteOptions") => DELETE_OPTIONS,
        _ => {
            return Err(ApiError::unsupported_media_type(
                &format!("{MEDIA_TYPE} ({api_version} {kind})"),
                &["application/json", "application/yaml"],
            ));
        }
    };
    let mut obj = message(&raw, schema)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![((num << 3) | 2) as u8, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decodes_a_configmap() {
        let meta = [
            field(1, b"foo"),
            field(11, &[field(1, b"app"), field(2, b"x")].concat()),
        ]
        .concat();
        let cm = [
            field(1, &meta),
            field(2, &[field(1, b"a"), field(2, b"b")].concat()),
        ]
        .concat();
        let tm = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let env = [b"k8s\0".to_vec(), field(1, &tm), field(2, &cm)].concat();
        let v = decode(&env).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "foo", "labels": {"app": "x"}}, "data": {"a": "b"}})
        );
    }
}
