//! PATCH support: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch
//! (built-ins only, like the real server) and server-side apply with field ownership.

pub mod managed;
pub mod shape;
pub mod strategic;

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

pub const ACCEPTED: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
    "application/apply-patch+cbor",
];

pub const ACCEPTED_BUILTIN: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "application/apply-patch+cbor",
];

impl PatchType {
    /// From the request Content-Type; custom resources refuse strategic merge with 415.
    pub fn from_content_type(ct: &str, custom: bool) -> ApiResult<Self> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        let accepted = if custom { ACCEPTED } else { ACCEPTED_BUILTIN };
        match base {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" if !custom => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" => Ok(PatchType::Apply),
            _ => Err(ApiError::unsupported_media_type(ct, accepted)),
        }
    }
}

/// Applies a JSON, merge or strategic patch body to `original`.
pub fn apply_patch(kind: PatchType, original: &Value, body: &[u8]) -> ApiResult<Value> {
    let parse = |b: &[u8]| -> ApiResult<Value> {
        serde_json::from_slice(b)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
    };
    match kind {
        PatchType::Json => {
            let patch: json_patch::Patch = serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
            let mut doc = original.clone();
            for (index, op) in patch.0.into_iter().enumerate() {
                // The apiserver's JSON patch library (evanphx/json-patch) lets `test` with value
                // null pass when the path does not exist; kube-runtime's `finalizer()` relies on
                // it to add the first finalizer. RFC 6902 alone would fail that test.
                if let json_patch::PatchOperation::Test(t) = &op
                    && t.value.is_null()
                    && doc.pointer(t.path.as_str()).is_none()
                {
                    continue;
                }
                json_patch::patch(&mut doc, &[op]).map_err(|e| {
                    // A failed `test` op is a conflict-free rejection: the real server answers 422.
                    ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "the server rejected our request due to an error in our request: \
                             operation {index}: {e}"
                        ),
                    )
                })?;
            }
            Ok(doc)
        }
        PatchType::Merge => {
            let patch = parse(body)?;
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "merge patch body must be a JSON object",
                ));
            }
            let mut doc = original.clone();
            json_patch::merge(&mut doc, &patch);
            Ok(doc)
        }
        PatchType::Strategic => {
            let patch = parse(body)?;
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "strategic merge patch body must be a JSON object",
                ));
            }
            Ok(strategic::apply(original, &patch))
        }
        PatchType::Apply => Err(ApiError::internal(
            "apply patches are handled by server-side apply",
        )),
    }
}

/// Parses an apply configuration (YAML or JSON).
pub fn parse_apply_body(body: &[u8]) -> ApiResult<Value> {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => serde_saphyr::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?,
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "apply configuration must be an object",
        ));
    }
    Ok(v)
}
