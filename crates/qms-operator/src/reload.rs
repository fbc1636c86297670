//! Live configuration (spec §7.2): the `--config` file is read again every
//! `config_reload_interval` and, when its text changed, validated and applied without a restart.
//!
//! Polling the file's content rather than watching inotify events: kubelet updates a mounted
//! ConfigMap by swapping the `..data` symlink of the volume, which a watch on the file itself never
//! sees; reading the text through the symlink always gives the version in force.
//!
//! A valid file puts its live settings ([`crate::config::LiveSettings`]) in force for every
//! reconcile that starts afterwards and re-triggers the workflows; a key that needs a restart is
//! reported. An invalid or unreadable file is refused with the key named (the start-up messages)
//! and the last good configuration stays in force. Each outcome is logged, counted in
//! `qms_config_reloads_total{result}` and recorded as an Event on the operator's Pod. Every
//! replica reloads, leader or standby, so a standby takes over with the configuration in force.

use std::sync::Arc;

use kube::runtime::events::{Event, EventType};

use crate::config::{self, ConfigError, ConfigSource, LiveSettings};
use crate::context::Shared;
use crate::metrics::ConfigReloadResult;

/// Event reasons.
pub const REASON_APPLIED: &str = "ConfigReloaded";
pub const REASON_REJECTED: &str = "ConfigRejected";
pub const REASON_RESTART: &str = "ConfigRestartRequired";

/// What one changed version of the file leads to (pure: decided from the text).
#[derive(Debug)]
pub enum Outcome {
    Applied {
        live: LiveSettings,
        /// Live keys whose value changed.
        changed: Vec<&'static str>,
        /// Keys that changed but take effect after a restart only.
        restart: Vec<&'static str>,
    },
    Rejected(ConfigError),
}

/// Decides on file text `text` (or the error reading it) against the running settings.
pub fn evaluate(
    source: &ConfigSource,
    running: &crate::Settings,
    in_force: &LiveSettings,
    text: Result<&str, ConfigError>,
) -> Outcome {
    match text.and_then(|t| config::reload(source, t)) {
        Ok(new) => {
            let live = new.live();
            Outcome::Applied {
                changed: in_force.changed_keys(&live),
                restart: config::restart_only_changes(running, &new),
                live,
            }
        }
        Err(e) => Outcome::Rejected(e),
    }
}

/// Runs until aborted (one of the operator's tasks).
pub async fn run(shared: Arc<Shared>, source: ConfigSource) {
    let interval = shared.settings.config_reload_interval;
    // The text (or read error) last handled: each version is applied or refused once.
    let mut seen = source.hash;
    loop {
        tokio::time::sleep(interval).await;
        let read = tokio::fs::read_to_string(&source.path).await;
        let hash = match &read {
            Ok(text) => config::config_hash(text),
            // Distinct from any text's hash in practice; the same error is reported once.
            Err(e) => config::config_hash(&format!("\u{0}read error: {}", e.kind())),
        };
        if hash == seen {
            continue;
        }
        seen = hash;
        let text = read.as_deref().map_err(|e| ConfigError::Read {
            path: source.path.display().to_string(),
            source: std::io::Error::new(e.kind(), e.to_string()),
        });
        let outcome = evaluate(&source, &shared.settings, &shared.live(), text);
        report(&shared, outcome, hash).await;
    }
}

async fn report(shared: &Shared, outcome: Outcome, hash: u64) {
    // One action per file version, so that kube's event series (folded by action) keep each
    // version's own note.
    let action = format!("Reload config {hash:012x}");
    match outcome {
        Outcome::Rejected(e) => {
            shared
                .metrics
                .config_reload(ConfigReloadResult::rejected, hash);
            tracing::error!(error = %e, "configuration change refused; the last good configuration stays in force");
            publish(
                shared,
                EventType::Warning,
                REASON_REJECTED,
                format!("{e}; the last good configuration stays in force"),
                &action,
            )
            .await;
        }
        Outcome::Applied {
            live,
            changed,
            restart,
        } => {
            let any_change = !changed.is_empty();
            shared.set_live(live);
            shared
                .metrics
                .config_reload(ConfigReloadResult::applied, hash);
            tracing::info!(changed = ?changed, "configuration reloaded");
            let note = if any_change {
                format!("applied: {}", changed.join(", "))
            } else {
                "applied: no live setting changed".to_owned()
            };
            publish(shared, EventType::Normal, REASON_APPLIED, note, &action).await;
            for key in restart {
                tracing::warn!(
                    key,
                    "configuration key changed: takes effect after a restart"
                );
                publish(
                    shared,
                    EventType::Warning,
                    REASON_RESTART,
                    format!("key {key} changed: takes effect after a restart"),
                    &format!("{action} {key}"),
                )
                .await;
            }
            if any_change {
                // Slots may have opened, deadlines and backoffs moved: decide again.
                shared.trigger_all_workflows();
            }
        }
    }
}

async fn publish(shared: &Shared, type_: EventType, reason: &str, note: String, action: &str) {
    let Some(target) = &shared.settings.event_target else {
        return;
    };
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.chars().take(128).collect(),
        secondary: None,
    };
    if let Err(e) = shared.recorder.publish(&event, target).await {
        tracing::warn!(error = %e, reason, "could not record the configuration event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SettingsArgs, parse_file};

    fn source(args: SettingsArgs) -> ConfigSource {
        ConfigSource {
            path: "/etc/qms-operator/config.yaml".into(),
            args,
            hash: 0,
        }
    }

    fn running(text: &str, args: &SettingsArgs) -> crate::Settings {
        crate::Settings::from_parts(&parse_file("f", text).unwrap(), args).unwrap()
    }

    const OLD: &str =
        "orchestrator:\n  name: a\n  workflow_engine:\n    max_concurrent_workflows: 5\n";

    #[test]
    fn a_valid_change_applies_its_live_keys_and_names_restart_only_ones() {
        let args = SettingsArgs::default();
        let run = running(OLD, &args);
        let text = "orchestrator:\n  name: b\n  workflow_engine:\n    max_concurrent_workflows: 9\n  quality_gates:\n    timeout_buffer: 45s\n";
        match evaluate(&source(args), &run, &run.live(), Ok(text)) {
            Outcome::Applied {
                live,
                changed,
                restart,
            } => {
                assert_eq!(live.max_concurrent_workflows, 9);
                assert_eq!(
                    live.engine.gate_timeout_buffer,
                    std::time::Duration::from_secs(45)
                );
                assert_eq!(
                    changed,
                    [
                        "orchestrator.workflow_engine.max_concurrent_workflows",
                        "orchestrator.quality_gates.timeout_buffer"
                    ]
                );
                assert_eq!(restart, ["orchestrator.name"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_invalid_change_is_refused_with_the_key() {
        let args = SettingsArgs::default();
        let run = running(OLD, &args);
        let bad = "orchestrator:\n  workflow_engine:\n    max_concurrent_workflows: 0\n";
        match evaluate(&source(args.clone()), &run, &run.live(), Ok(bad)) {
            Outcome::Rejected(e) => assert!(
                e.to_string()
                    .starts_with("orchestrator.workflow_engine.max_concurrent_workflows:"),
                "{e}"
            ),
            other => panic!("{other:?}"),
        }
        let unknown = "orchestrator:\n  event_bus: {}\n";
        match evaluate(&source(args), &run, &run.live(), Ok(unknown)) {
            Outcome::Rejected(e) => assert!(e.to_string().contains("event_bus"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_still_win_over_a_reloaded_file() {
        let args = SettingsArgs {
            max_concurrent_workflows: Some(3),
            ..SettingsArgs::default()
        };
        let run = running(OLD, &args);
        let text =
            "orchestrator:\n  name: a\n  workflow_engine:\n    max_concurrent_workflows: 9\n";
        match evaluate(&source(args), &run, &run.live(), Ok(text)) {
            Outcome::Applied { live, changed, .. } => {
                assert_eq!(live.max_concurrent_workflows, 3);
                assert!(changed.is_empty(), "{changed:?}");
            }
            other => panic!("{other:?}"),
        }
    }
}
