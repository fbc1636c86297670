//! W3C trace context across the API server hop (spec §5.3).
//!
//! A webhook delivery, the workflow reconciles it causes, the Jobs they create and the check-run
//! sync run in different tasks (and, for the Jobs, in other processes) connected only through
//! objects in the API server. The span that writes an object records its context there as a
//! `traceparent` (https://www.w3.org/TR/trace-context/#traceparent-header) annotation; whoever
//! acts on the object later makes its span a child of that context, so one delivery is one trace.
//!
//! Without an OpenTelemetry layer in the subscriber (no OTLP endpoint configured) spans carry no
//! valid context: [`current`] is `None` and nothing is written.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The annotation holding the W3C `traceparent` of the span that last wrote the object's spec
/// (on QmsWorkflows: the webhook delivery; on Jobs: the workflow reconcile that created it).
pub const ANNOTATION_TRACEPARENT: &str = "qms.creo.dev/traceparent";

/// `00-<trace id>-<span id>-<flags>` of a valid span context.
pub fn format(sc: &SpanContext) -> Option<String> {
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// Parses a version-00 `traceparent`; `None` for anything malformed (an annotation anyone can
/// write must not break a reconcile: a bad one just starts a new trace).
pub fn parse(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if parts.next().is_some()
        || version != "00"
        || !hex(trace, 32)
        || !hex(span, 16)
        || !hex(flags, 2)
    {
        return None;
    }
    let sc = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    sc.is_valid().then_some(sc)
}

/// The `traceparent` of the current `tracing` span, when it is exported.
pub fn current() -> Option<String> {
    format(tracing::Span::current().context().span().span_context())
}

/// Makes `span` (not entered yet) a child of `traceparent` when that is a valid one.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(sc) = traceparent.and_then(parse) {
        // Fails only without an OpenTelemetry layer, when there is nothing to link.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(sc));
    }
}

/// The `traceparent` annotation of an object's metadata.
pub fn of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<&str> {
    meta.annotations
        .as_ref()?
        .get(ANNOTATION_TRACEPARENT)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_malformed_ones_are_ignored() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = parse(tp).unwrap();
        assert_eq!(
            sc.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert!(sc.is_sampled() && sc.is_remote());
        assert_eq!(format(&sc).as_deref(), Some(tp));
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
        assert_eq!(format(&SpanContext::NONE), None);
    }

    #[test]
    fn without_an_opentelemetry_layer_there_is_no_current_context() {
        let span = tracing::info_span!("delivery");
        let _g = span.enter();
        assert_eq!(current(), None);
    }
}
