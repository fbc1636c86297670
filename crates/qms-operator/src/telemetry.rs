//! Optional trace export over OTLP/HTTP with protobuf bodies (spec §5.3). Off unless an endpoint
//! is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` / `--otlp-endpoint`); then no exporter is built
//! and spans cost what `tracing` spans cost.
//!
//! The spans of one review form one trace: the webhook delivery (qms-github) writes its context
//! into the QmsWorkflow's `qms.creo.dev/traceparent` annotation, every [`reconcile_span`] and
//! [`check_sync_span`] of the workflow is a child of it, and the Jobs a reconcile creates carry the
//! reconcile's context in the same annotation. Spans carry the workflow's correlation id
//! (`qms.correlation_id`, spec §6.1) once it has one.
//!
//! The exporter sends with hyper (already the Kubernetes client's HTTP stack) rather than a
//! second HTTP client: the batch span processor exports from its own thread, so each request is
//! spawned onto the operator's Tokio runtime and awaited from there.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use qms_api::QmsWorkflow;
use tracing_subscriber::registry::LookupSpan;

pub use qms_github::trace_context::{ANNOTATION_TRACEPARENT, current as current_traceparent};

/// `service.name` unless `OTEL_SERVICE_NAME` says otherwise.
pub const SERVICE_NAME: &str = "qms-operator";

/// How long one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("the OTLP trace exporter needs a Tokio runtime")]
    NoRuntime,
    #[error("cannot build the OTLP trace exporter: {0}")]
    Build(String),
}

/// The tracer provider behind the layer: flush it before the process exits.
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Exports every finished span now (blocks: call from a blocking thread).
    pub fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::warn!(error = %e, "could not export the remaining spans");
        }
    }

    /// Flushes and stops the exporter (blocks).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "could not shut the trace exporter down cleanly");
        }
    }
}

/// The OpenTelemetry layer exporting the operator's spans (targets `qms_operator` and
/// `qms_github`, info and above) to `traces_url` (`<base>/v1/traces`). Must be called within a
/// Tokio runtime, which then carries the export requests.
pub fn otlp_layer<S>(
    traces_url: &str,
) -> Result<
    (
        impl tracing_subscriber::Layer<S> + Send + Sync + 'static,
        Tracing,
    ),
    TelemetryError,
>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span> + Send + Sync + 'static,
{
    let handle = tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
    let client = OnRuntime {
        inner: opentelemetry_http::hyper::HyperClient::with_default_connector(EXPORT_TIMEOUT, None),
        handle,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TelemetryError::Build(e.to_string()))?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none_or(|v| v.is_empty()) {
        resource = resource.with_service_name(SERVICE_NAME);
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer: SdkTracer = provider.tracer("qms-operator");
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target("qms_operator", tracing::Level::INFO)
        .with_target("qms_github", tracing::Level::INFO);
    let layer = tracing_subscriber::Layer::with_filter(
        tracing_opentelemetry::layer().with_tracer(tracer),
        filter,
    );
    Ok((layer, Tracing { provider }))
}

/// A hyper client whose requests run on the Tokio runtime it was built in, whichever thread
/// (the batch processor's) awaits them.
#[derive(Debug)]
struct OnRuntime {
    inner: opentelemetry_http::hyper::HyperClient,
    handle: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.inner.clone();
        self.handle
            .spawn(async move { client.send_bytes(request).await })
            .await
            .map_err(|e| Box::new(e) as HttpError)?
    }
}

/// The workflow's correlation id (empty before its first status write).
fn correlation_id(wf: &QmsWorkflow) -> &str {
    wf.status
        .as_ref()
        .and_then(|s| s.correlation_id.as_deref())
        .unwrap_or("")
}

fn workflow_key(wf: &QmsWorkflow) -> String {
    format!(
        "{}/{}",
        wf.metadata.namespace.as_deref().unwrap_or_default(),
        wf.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The span of one reconcile of `wf`, a child of the delivery that wrote it (its traceparent
/// annotation) when there is one. Record a correlation id assigned during the reconcile with
/// [`record_correlation_id`].
pub fn reconcile_span(wf: &QmsWorkflow) -> tracing::Span {
    let span = tracing::info_span!(
        "workflow reconcile",
        workflow = %workflow_key(wf),
        qms.correlation_id = tracing::field::Empty,
    );
    link(&span, wf);
    span
}

/// The span of one GitHub check-run sync of `wf` (same parent as [`reconcile_span`]).
pub fn check_sync_span(wf: &QmsWorkflow) -> tracing::Span {
    let span = tracing::info_span!(
        "check-run sync",
        workflow = %workflow_key(wf),
        qms.correlation_id = tracing::field::Empty,
    );
    link(&span, wf);
    span
}

fn link(span: &tracing::Span, wf: &QmsWorkflow) {
    qms_github::trace_context::set_parent(span, qms_github::trace_context::of(&wf.metadata));
    record_correlation_id(span, correlation_id(wf));
}

/// Sets `qms.correlation_id` on `span` (a no-op for an empty id).
pub fn record_correlation_id(span: &tracing::Span, id: &str) {
    if !id.is_empty() {
        span.record("qms.correlation_id", id);
    }
}
