//! Custom resource schemas: CRD structural checks, and for each custom resource write the
//! apiserver's pipeline: drop nulls, prune unknown fields, apply defaults, validate (OpenAPI + CEL).

pub mod cel;
pub mod prune;
pub mod structural;
pub mod validate;

use serde_json::Value;

use crate::error::FieldError;

pub struct Admission {
    /// Paths of pruned unknown fields (for `fieldValidation=Warn|Strict`).
    pub unknown_fields: Vec<String>,
    pub errors: Vec<FieldError>,
}

/// Runs the custom-resource write pipeline in place on `obj`.
pub fn admit(schema: &Value, obj: &mut Value, old: Option<&Value>) -> Admission {
    let mut unknown = Vec::new();
    prune::drop_nulls(schema, obj);
    prune::prune(schema, obj, "", true, &mut unknown);
    prune::apply_defaults(schema, obj);
    let mut errors = Vec::new();
    validate::validate(schema, obj, "", true, &mut errors);
    if errors.is_empty() {
        errors.extend(cel::validate(schema, obj, old));
    }
    Admission {
        unknown_fields: unknown,
        errors,
    }
}
