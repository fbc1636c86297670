//! `/qms …` commands in pull request comments.
//!
//! A command is a line that starts with `/qms` (leading spaces allowed). Lines inside fenced code
//! blocks and quoted lines (`> /qms approve`) are not commands, so pasting an example or quoting
//! someone does not act. A comment may hold several commands, one per line (at most
//! [`MAX_COMMANDS`]).

use std::time::Duration;

use qms_api::KubeDuration;
use qms_api::names::{is_dns_label, is_dns_subdomain};

pub const MAX_COMMANDS: usize = 10;
/// Overrides last 24 h unless `--expires` says otherwise, and never longer than a week.
pub const DEFAULT_OVERRIDE_TTL: Duration = Duration::from_secs(24 * 3600);
pub const MAX_OVERRIDE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest reason kept (the rest is cut): reasons end up in the CRD and in check run text.
pub const MAX_REASON_CHARS: usize = 1000;

pub const USAGE: &str = "Commands: `/qms approve [reason]`, `/qms reject <reason>`, \
`/qms retry [step]`, `/qms override <gate> <reason> [--expires 24h]`, `/qms explain <gate>`, `/qms ok-to-test`.";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Approve {
        reason: String,
    },
    Reject {
        reason: String,
    },
    Retry {
        step: Option<String>,
    },
    Override {
        gate: String,
        reason: String,
        ttl: Duration,
    },
    OkToTest,
    /// Reply with how gate `gate` was decided for the current head SHA (read-only).
    Explain {
        gate: String,
    },
}

impl Command {
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Approve { .. } => "approve",
            Command::Reject { .. } => "reject",
            Command::Retry { .. } => "retry",
            Command::Override { .. } => "override",
            Command::OkToTest => "ok-to-test",
            Command::Explain { .. } => "explain",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("unknown command `/qms {0}`. {USAGE}")]
    Unknown(String),
    #[error("`/qms {verb}` needs {what}. {USAGE}")]
    Missing {
        verb: &'static str,
        what: &'static str,
    },
    #[error("`/qms {verb}`: {message}")]
    Invalid { verb: &'static str, message: String },
}

/// All commands in `body`, in order; invalid ones as errors (to be answered with a reply).
pub fn parse(body: &str) -> Vec<Result<Command, CommandError>> {
    let mut out = Vec::new();
    let mut in_fence = false;
    for line in body.lines() {
        let t = line.trim();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let Some(rest) = t.strip_prefix("/qms") else {
            continue;
        };
        // `/qmsfoo` is not ours.
        if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
            continue;
        }
        out.push(parse_line(rest.trim()));
        if out.len() == MAX_COMMANDS {
            break;
        }
    }
    out
}

fn parse_line(rest: &str) -> Result<Command, CommandError> {
    let (verb, args) = match rest.split_once(char::is_whitespace) {
        Some((v, a)) => (v, a.trim()),
        None => (rest, ""),
    };
    match verb.to_ascii_lowercase().as_str() {
        "approve" | "lgtm" => Ok(Command::Approve {
            reason: reason(args),
        }),
        "reject" => {
            if args.is_empty() {
                return Err(CommandError::Missing {
                    verb: "reject",
                    what: "a reason",
                });
            }
            Ok(Command::Reject {
                reason: reason(args),
            })
        }
        "retry" | "rerun" => {
            let mut words = args.split_whitespace();
            let step = words.next().map(str::to_owned);
            if let Some(step) = &step
                && !is_dns_label(step)
            {
                return Err(CommandError::Invalid {
                    verb: "retry",
                    message: format!("{:?} is not a step name", clip(step, 64)),
                });
            }
            Ok(Command::Retry { step })
        }
        "override" => parse_override(args),
        "ok-to-test" | "ok_to_test" => Ok(Command::OkToTest),
        "explain" => {
            let Some(gate) = args.split_whitespace().next() else {
                return Err(CommandError::Missing {
                    verb: "explain",
                    what: "a gate",
                });
            };
            if !is_dns_label(gate) && !is_dns_subdomain(gate) {
                return Err(CommandError::Invalid {
                    verb: "explain",
                    message: format!("{:?} is not a gate name", clip(gate, 64)),
                });
            }
            Ok(Command::Explain {
                gate: gate.to_owned(),
            })
        }
        "" => Err(CommandError::Unknown(String::new())),
        other => Err(CommandError::Unknown(clip(other, 40))),
    }
}

fn parse_override(args: &str) -> Result<Command, CommandError> {
    let verb = "override";
    let mut words: Vec<&str> = args.split_whitespace().collect();
    let mut ttl = DEFAULT_OVERRIDE_TTL;
    if let Some(i) = words.iter().position(|w| *w == "--expires") {
        let Some(value) = words.get(i + 1) else {
            return Err(CommandError::Missing {
                verb,
                what: "a duration after --expires (e.g. 24h)",
            });
        };
        ttl = parse_ttl(value).map_err(|message| CommandError::Invalid { verb, message })?;
        words.drain(i..=i + 1);
    } else if let Some(w) = words.iter().find(|w| w.starts_with("--expires=")) {
        let value = &w["--expires=".len()..];
        ttl = parse_ttl(value).map_err(|message| CommandError::Invalid { verb, message })?;
        words.retain(|w| !w.starts_with("--expires="));
    }
    let Some((gate, reason_words)) = words.split_first() else {
        return Err(CommandError::Missing {
            verb,
            what: "a gate and a reason",
        });
    };
    if !is_dns_label(gate) && !is_dns_subdomain(gate) {
        return Err(CommandError::Invalid {
            verb,
            message: format!("{:?} is not a gate name", clip(gate, 64)),
        });
    }
    if reason_words.is_empty() {
        return Err(CommandError::Missing {
            verb,
            what: "a reason after the gate",
        });
    }
    Ok(Command::Override {
        gate: (*gate).to_owned(),
        reason: reason(&reason_words.join(" ")),
        ttl,
    })
}

fn parse_ttl(value: &str) -> Result<Duration, String> {
    // Days are common in conversation; Kubernetes durations stop at hours.
    let parsed = if let Some(days) = value.strip_suffix('d') {
        days.parse::<u64>()
            .ok()
            .and_then(|d| d.checked_mul(24 * 3600))
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{:?} is not a duration", clip(value, 32)))
    } else {
        KubeDuration::parse(value)
            .and_then(|d| d.to_std())
            .map_err(|_| format!("{:?} is not a duration (e.g. 24h, 90m)", clip(value, 32)))
    }?;
    if parsed.is_zero() {
        return Err("the expiry must be in the future".into());
    }
    if parsed > MAX_OVERRIDE_TTL {
        return Err("an override lasts at most 7 days (168h)".into());
    }
    Ok(parsed)
}

fn reason(s: &str) -> String {
    clip(s.trim(), MAX_REASON_CHARS)
}

fn clip(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(body: &str) -> Result<Command, CommandError> {
        let mut v = parse(body);
        assert_eq!(v.len(), 1, "{body:?} → {v:?}");
        v.remove(0)
    }

    #[test]
    fn each_command() {
        assert_eq!(
            one("/qms approve looks good"),
            Ok(Command::Approve {
                reason: "looks good".into()
            })
        );
        assert_eq!(
            one("  /qms approve"),
            Ok(Command::Approve { reason: "".into() })
        );
        assert_eq!(
            one("/qms reject missing tests"),
            Ok(Command::Reject {
                reason: "missing tests".into()
            })
        );
        assert_eq!(one("/qms retry"), Ok(Command::Retry { step: None }));
        assert_eq!(
            one("/qms explain code-coverage"),
            Ok(Command::Explain {
                gate: "code-coverage".into()
            })
        );
        assert!(matches!(
            one("/qms explain"),
            Err(CommandError::Missing {
                verb: "explain",
                ..
            })
        ));
        assert!(matches!(
            one("/qms explain Bad_Gate!"),
            Err(CommandError::Invalid {
                verb: "explain",
                ..
            })
        ));
        assert_eq!(
            one("/qms retry dod-validation"),
            Ok(Command::Retry {
                step: Some("dod-validation".into())
            })
        );
        assert_eq!(
            one("/qms override code-coverage hotfix for outage --expires 2h"),
            Ok(Command::Override {
                gate: "code-coverage".into(),
                reason: "hotfix for outage".into(),
                ttl: Duration::from_secs(7200)
            })
        );
        assert_eq!(
            one("/qms override code-coverage --expires=1d flaky"),
            Ok(Command::Override {
                gate: "code-coverage".into(),
                reason: "flaky".into(),
                ttl: Duration::from_secs(86400)
            })
        );
        assert_eq!(
            one("/qms override code-coverage hotfix"),
            Ok(Command::Override {
                gate: "code-coverage".into(),
                reason: "hotfix".into(),
                ttl: DEFAULT_OVERRIDE_TTL
            })
        );
        assert_eq!(one("/qms ok-to-test"), Ok(Command::OkToTest));
        assert_eq!(one("/qms OK-TO-TEST"), Ok(Command::OkToTest));
    }

    #[test]
    fn errors_name_what_is_missing() {
        assert!(matches!(
            one("/qms reject"),
            Err(CommandError::Missing { verb: "reject", .. })
        ));
        assert!(matches!(
            one("/qms override code-coverage"),
            Err(CommandError::Missing {
                verb: "override",
                ..
            })
        ));
        assert!(matches!(
            one("/qms override x y --expires 30d"),
            Err(CommandError::Invalid { .. })
        ));
        assert!(matches!(
            one("/qms override x y --expires"),
            Err(CommandError::Missing { .. })
        ));
        assert!(matches!(one("/qms deploy"), Err(CommandError::Unknown(v)) if v == "deploy"));
        assert!(matches!(
            one("/qms retry ../../etc"),
            Err(CommandError::Invalid { .. })
        ));
    }

    #[test]
    fn ignores_quotes_code_and_lookalikes() {
        let body =
            "Thanks!\n> /qms approve\n```\n/qms approve\n```\n/qmsapprove\nplain /qms approve";
        assert!(parse(body).is_empty());
        let two = parse("/qms retry\nand\n/qms approve ok");
        assert_eq!(two.len(), 2);
        let many = "/qms retry\n".repeat(50);
        assert_eq!(parse(&many).len(), MAX_COMMANDS);
    }
}
