//! Kubernetes `Status` errors. Every failure the server returns goes through [`ApiError`] so that
//! clients (kube-rs, client-go in kubectl/helm) see exactly the shape the real apiserver sends and
//! map it to the same error types (`IsNotFound`, `IsConflict`, `IsInvalid`, ...).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One field-level problem, rendered as `details.causes[]` and as part of the message.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Kubernetes cause reason, e.g. `FieldValueRequired`.
    pub reason: &'static str,
    /// Field path, e.g. `spec.steps[0].type`.
    pub field: String,
    /// Message without the field prefix, e.g. `Required value`.
    pub message: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        let message = if detail.is_empty() {
            "Required value".to_owned()
        } else {
            format!("Required value: {detail}")
        };
        FieldError {
            reason: "FieldValueRequired",
            field: field.into(),
            message,
        }
    }
    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Self {
        FieldError {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {}: {detail}", render_value(value)),
        }
    }
    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[Value]) -> Self {
        let list: Vec<String> = supported.iter().map(render_value).collect();
        FieldError {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                render_value(value),
                list.join(", ")
            ),
        }
    }
    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        FieldError {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {detail}"),
        }
    }
    pub fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        FieldError {
            reason: "FieldValueDuplicate",
            field: field.into(),
            message: format!("Duplicate value: {}", render_value(value)),
        }
    }
    pub fn too_long(field: impl Into<String>, max: u64) -> Self {
        FieldError {
            reason: "FieldValueTooLong",
            field: field.into(),
            message: format!("Too long: may not be more than {max} bytes"),
        }
    }
    pub fn too_many(field: impl Into<String>, actual: usize, max: u64) -> Self {
        FieldError {
            reason: "FieldValueTooMany",
            field: field.into(),
            message: format!("Too many: {actual}: must have at most {max} items"),
        }
    }
    /// `field: message`, the form used inside the top-level Status message.
    pub fn line(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

/// Renders a value the way apimachinery's field errors do: strings quoted, numbers bare.
pub fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".to_owned(),
        other => other.to_string(),
    }
}

/// An error response in Kubernetes `Status` form.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Value>,
    /// Extra response headers (e.g. `Retry-After` for 429).
    pub headers: Vec<(String, String)>,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.to_owned(),
            message: message.into(),
            details: None,
            headers: Vec::new(),
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// `pods "x"` / `deployments.apps "x"`: how apimachinery names a resource in messages.
    pub fn qualified(group: &str, plural: &str) -> String {
        if group.is_empty() {
            plural.to_owned()
        } else {
            format!("{plural}.{group}")
        }
    }

    fn name_details(group: &str, plural: &str, name: &str) -> Value {
        let mut d = json!({ "name": name, "kind": plural });
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        d
    }

    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", Self::qualified(group, plural)),
        )
        .with_details(Self::name_details(group, plural, name))
    }

    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", Self::qualified(group, plural)),
        )
        .with_details(Self::name_details(group, plural, name))
    }

    pub fn conflict(group: &str, plural: &str, name: &str, detail: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: {detail}",
                Self::qualified(group, plural)
            ),
        )
        .with_details(Self::name_details(group, plural, name))
    }

    pub fn stale(group: &str, plural: &str, name: &str) -> Self {
        Self::conflict(
            group,
            plural,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn forbidden(group: &str, plural: &str, name: &str, detail: &str) -> Self {
        ApiError::new(
            403,
            "Forbidden",
            format!(
                "{} {name:?} is forbidden: {detail}",
                Self::qualified(group, plural)
            ),
        )
        .with_details(Self::name_details(group, plural, name))
    }

    /// 422 Invalid: `Kind.group "name" is invalid: field: msg` (several errors are bracketed).
    pub fn invalid(group: &str, kind: &str, name: &str, errors: Vec<FieldError>) -> Self {
        let qualified_kind = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        let lines: Vec<String> = errors.iter().map(FieldError::line).collect();
        let joined = if lines.len() == 1 {
            lines[0].clone()
        } else {
            format!("[{}]", lines.join(", "))
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({ "reason": e.reason, "message": e.message, "field": e.field }))
            .collect();
        let mut details = json!({ "name": name, "kind": kind, "causes": causes });
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        ApiError::new(
            422,
            "Invalid",
            format!("{qualified_kind} {name:?} is invalid: {joined}"),
        )
        .with_details(details)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> Self {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
        .with_details(json!({ "causes": [{ "reason": "UnexpectedServerResponse", "message": content_type }] }))
    }

    pub fn gone(message: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(500, "InternalError", message)
    }

    pub fn path_not_found() -> Self {
        ApiError::new(404, "NotFound", "the server could not find the requested resource")
            .with_details(json!({ "causes": [{ "reason": "UnexpectedServerResponse", "message": "404 page not found" }] }))
    }

    pub fn with_header(mut self, name: &str, value: String) -> Self {
        self.headers.push((name.to_owned(), value));
        self
    }

    pub fn with_causes(mut self, causes: Vec<Value>) -> Self {
        let mut details = self.details.take().unwrap_or_else(|| json!({}));
        details["causes"] = Value::Array(causes);
        self.details = Some(details);
        self
    }

    /// The `Status` object body.
    pub fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = self.to_status().to_string();
        let mut resp = (code, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (k, v) in &self.headers {
            if let (Ok(name), Ok(value)) = (
                header::HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                resp.headers_mut().insert(name, value);
            }
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
