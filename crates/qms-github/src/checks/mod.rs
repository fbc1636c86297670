//! Check Runs out: status → desired check runs (`render`, pure) → GitHub (`sync`), and the
//! `repository_dispatch` events of spec §5.2 (`dispatch`). `reconcile` ties them to the cluster.

pub mod dispatch;
pub mod reconcile;
pub mod render;
pub mod sync;

pub use reconcile::CheckSyncer;
pub use render::{CheckAnnotation, RenderConfig, StepAnnotations};
pub use sync::{SyncInput, SyncReport, sync};
