//! Configuration of the GitHub integration, from `QMS_GITHUB_*` environment variables and the
//! mounted Secret directory (`$QMS_GITHUB_SECRET_DIR`).
//!
//! Secrets are read once at start; rotating the webhook secret means listing old and new secret in
//! `webhook-secret` (one per line), rolling the operator, switching GitHub, then removing the old
//! line. Every secret value is wrapped in [`Secret`] so printing the config never leaks it.

use std::path::{Path, PathBuf};

use crate::secret::Secret;

pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// GitHub does not deliver payloads over 25 MB; anything larger is not from GitHub.
pub const DEFAULT_MAX_BODY_BYTES: usize = 25 * 1024 * 1024;
/// GitHub's secondary limit for content-creating requests.
pub const DEFAULT_WRITES_PER_MINUTE: u32 = 80;
/// GitHub's secondary limit on content-creating requests per hour.
pub const DEFAULT_WRITES_PER_HOUR: u32 = 500;

/// Repository permission levels, lowest first (GitHub's `role_name` / `permission`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    None,
    Read,
    Triage,
    Write,
    Maintain,
    Admin,
}

impl Permission {
    /// Parses GitHub's words (`role_name` or the legacy `permission` field). Unknown words are
    /// `None`, so an unexpected answer never grants trust.
    pub fn parse(s: &str) -> Permission {
        match s.trim().to_ascii_lowercase().as_str() {
            "read" | "pull" => Self::Read,
            "triage" => Self::Triage,
            "write" | "push" => Self::Write,
            "maintain" => Self::Maintain,
            "admin" => Self::Admin,
            _ => Self::None,
        }
    }
}

/// How qms-github authenticates to the GitHub API.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// A personal access token or a fine-grained token (`Authorization: Bearer`).
    Token(Secret),
    /// A GitHub App: JWT signed with the app's private key, exchanged for installation tokens.
    App { app_id: u64, private_key: Secret },
    /// No credentials: webhooks still work, nothing is written to GitHub (sync reports an error).
    None,
}

#[derive(Clone, Debug)]
pub struct GithubConfig {
    /// REST API base, e.g. `https://api.github.com` or `https://ghe.example.com/api/v3`.
    pub api_base_url: String,
    /// Accepted webhook secrets (more than one during a rotation). Empty = every delivery is 401.
    pub webhook_secrets: Vec<Secret>,
    pub credentials: Credentials,
    /// Namespace of the QmsWorkflows (and WorkflowTemplates) the webhook manages.
    pub namespace: String,
    /// Review draft PRs right away (`true`) or wait for `ready_for_review` (`false`, default).
    pub run_drafts: bool,
    /// Repository permission at or above which a user may run commands and `/qms ok-to-test`.
    pub trusted_permission: Permission,
    /// Logins trusted regardless of their permission.
    pub trusted_logins: Vec<String>,
    /// Teams (`org/team-slug`) whose active members are trusted.
    pub trusted_teams: Vec<String>,
    /// `details_url` of check runs; placeholders `{namespace}`, `{name}`, `{run}`, `{step}`,
    /// `{repository}`, `{pr}`, `{sha}`. None = no link.
    pub details_url_template: Option<String>,
    /// Pacing of write requests (GitHub's secondary limits are 80/min and 500/h).
    pub writes_per_minute: u32,
    pub writes_per_hour: u32,
    /// Webhook bodies above this are refused with 413 before they are hashed.
    pub max_body_bytes: usize,
    /// Annotations shown on one check run at most, failures first (sent 50 per request); the
    /// summary counts the rest and says where to see them.
    pub max_annotations_per_check_run: usize,
    /// How long a trust verdict (permission / team lookup) per (login, repository) is reused
    /// (`QMS_GITHUB_PERMISSION_CACHE_TTL`, seconds; 0 = look up every time).
    pub permission_cache_ttl: std::time::Duration,
    /// (login, repository) pairs kept at most (`QMS_GITHUB_PERMISSION_CACHE_SIZE`).
    pub permission_cache_size: usize,
}

impl Default for GithubConfig {
    fn default() -> Self {
        Self {
            api_base_url: DEFAULT_API_URL.to_owned(),
            webhook_secrets: Vec::new(),
            credentials: Credentials::None,
            namespace: "default".to_owned(),
            run_drafts: false,
            trusted_permission: Permission::Write,
            trusted_logins: Vec::new(),
            trusted_teams: Vec::new(),
            details_url_template: None,
            writes_per_minute: DEFAULT_WRITES_PER_MINUTE,
            writes_per_hour: DEFAULT_WRITES_PER_HOUR,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_annotations_per_check_run:
                crate::checks::render::DEFAULT_MAX_ANNOTATIONS_PER_CHECK_RUN,
            permission_cache_ttl: crate::cache::DEFAULT_TRUST_TTL,
            permission_cache_size: crate::cache::DEFAULT_TRUST_CAPACITY,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}: {reason}")]
    Invalid { var: &'static str, reason: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl GithubConfig {
    /// Reads the variables (see the crate README) through `get`: `|k| std::env::var(k).ok()` for
    /// the process environment, a map in tests.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars::new(&get);
        let mut cfg = GithubConfig::default();
        if let Some(url) = vars.get("QMS_GITHUB_API_URL") {
            cfg.api_base_url = url.trim().trim_end_matches('/').to_owned();
        }
        cfg.webhook_secrets = vars
            .get_or_file("QMS_GITHUB_WEBHOOK_SECRET", "webhook-secret")?
            .as_deref()
            .map(split_secrets)
            .unwrap_or_default();
        cfg.credentials = credentials(&vars)?;
        if let Some(ns) = vars.get("QMS_GITHUB_NAMESPACE") {
            cfg.namespace = ns.trim().to_owned();
        }
        if let Some(v) = vars.get("QMS_GITHUB_RUN_DRAFTS") {
            cfg.run_drafts = parse_bool("QMS_GITHUB_RUN_DRAFTS", &v)?;
        }
        cfg.read_trust(&vars)?;
        cfg.details_url_template = vars.get("QMS_GITHUB_DETAILS_URL");
        cfg.read_limits(&vars)?;
        Ok(cfg)
    }

    /// Who may run `/qms` commands and whose pull requests run at all.
    fn read_trust(&mut self, vars: &Vars<'_>) -> Result<(), ConfigError> {
        if let Some(v) = vars.get("QMS_GITHUB_TRUSTED_PERMISSION") {
            let p = Permission::parse(&v);
            if p == Permission::None {
                return Err(ConfigError::Invalid {
                    var: "QMS_GITHUB_TRUSTED_PERMISSION",
                    reason: format!("{v:?} is not one of read, triage, write, maintain, admin"),
                });
            }
            self.trusted_permission = p;
        }
        self.trusted_logins = vars
            .get("QMS_GITHUB_TRUSTED_LOGINS")
            .map(|v| split_list(&v))
            .unwrap_or_default();
        self.trusted_teams = vars
            .get("QMS_GITHUB_TRUSTED_TEAMS")
            .map(|v| split_list(&v))
            .unwrap_or_default();
        if let Some(t) = self.trusted_teams.iter().find(|t| !t.contains('/')) {
            return Err(ConfigError::Invalid {
                var: "QMS_GITHUB_TRUSTED_TEAMS",
                reason: format!("{t:?} is not org/team-slug"),
            });
        }
        Ok(())
    }

    /// Write pacing, request and output sizes, the permission cache.
    fn read_limits(&mut self, vars: &Vars<'_>) -> Result<(), ConfigError> {
        if let Some(v) = vars.get("QMS_GITHUB_WRITES_PER_MINUTE") {
            self.writes_per_minute = at_least_one("QMS_GITHUB_WRITES_PER_MINUTE", v)?;
        }
        if let Some(v) = vars.get("QMS_GITHUB_WRITES_PER_HOUR") {
            self.writes_per_hour = at_least_one("QMS_GITHUB_WRITES_PER_HOUR", v)?;
        }
        if let Some(v) = vars.get("QMS_GITHUB_MAX_BODY_BYTES") {
            self.max_body_bytes = parse_num("QMS_GITHUB_MAX_BODY_BYTES", &v)?;
        }
        if let Some(v) = vars.get("QMS_GITHUB_MAX_ANNOTATIONS_PER_CHECK_RUN") {
            // 0 is allowed: findings are then only counted in the summary.
            self.max_annotations_per_check_run =
                parse_num("QMS_GITHUB_MAX_ANNOTATIONS_PER_CHECK_RUN", &v)?;
        }
        if let Some(v) = vars.get("QMS_GITHUB_PERMISSION_CACHE_TTL") {
            // Seconds; 0 turns the cache off.
            self.permission_cache_ttl = std::time::Duration::from_secs(parse_num(
                "QMS_GITHUB_PERMISSION_CACHE_TTL",
                v.trim().trim_end_matches('s'),
            )?);
        }
        if let Some(v) = vars.get("QMS_GITHUB_PERMISSION_CACHE_SIZE") {
            self.permission_cache_size =
                at_least_one("QMS_GITHUB_PERMISSION_CACHE_SIZE", v)? as usize;
        }
        Ok(())
    }
}

/// The variables as `from_lookup` reads them: blank counts as unset, and a secret may also come
/// from a file in `QMS_GITHUB_SECRET_DIR`.
struct Vars<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    secret_dir: Option<PathBuf>,
}

impl<'a> Vars<'a> {
    fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        let mut vars = Self {
            lookup,
            secret_dir: None,
        };
        vars.secret_dir = vars.get("QMS_GITHUB_SECRET_DIR").map(PathBuf::from);
        vars
    }

    fn get(&self, var: &str) -> Option<String> {
        (self.lookup)(var).filter(|v| !v.trim().is_empty())
    }

    /// `var`, else the file `file` of the secret directory (when there is one).
    fn get_or_file(&self, var: &str, file: &str) -> Result<Option<String>, ConfigError> {
        match self.get(var) {
            Some(v) => Ok(Some(v)),
            None => self.secret_file(file),
        }
    }

    fn secret_file(&self, file: &str) -> Result<Option<String>, ConfigError> {
        match &self.secret_dir {
            Some(dir) => read_optional(&dir.join(file)),
            None => Ok(None),
        }
    }
}

/// A GitHub App (id + private key) wins over a token; an app id without a key is an error.
fn credentials(vars: &Vars<'_>) -> Result<Credentials, ConfigError> {
    let token = vars.get_or_file("QMS_GITHUB_TOKEN", "token")?;
    let app_id = vars.get_or_file("QMS_GITHUB_APP_ID", "app-id")?;
    let key = match (
        vars.get("QMS_GITHUB_PRIVATE_KEY"),
        vars.get("QMS_GITHUB_PRIVATE_KEY_FILE"),
    ) {
        (Some(v), _) => Some(v),
        (None, Some(path)) => read_optional(Path::new(&path))?,
        (None, None) => vars.secret_file("private-key")?,
    };
    Ok(match (app_id, key, token) {
        (Some(id), Some(key), _) => Credentials::App {
            app_id: id.trim().parse().map_err(|_| ConfigError::Invalid {
                var: "QMS_GITHUB_APP_ID",
                reason: "expected a number".into(),
            })?,
            private_key: Secret::new(key),
        },
        (Some(_), None, _) => {
            return Err(ConfigError::Invalid {
                var: "QMS_GITHUB_PRIVATE_KEY",
                reason: "an app id is set but no private key".into(),
            });
        }
        (None, _, Some(token)) => Credentials::Token(Secret::new(token.trim())),
        (None, _, None) => Credentials::None,
    })
}

/// A pace or size of 0 would block every write for ever.
fn at_least_one(var: &'static str, v: String) -> Result<u32, ConfigError> {
    match parse_num(var, &v)? {
        0 => Err(ConfigError::Invalid {
            var,
            reason: "must be at least 1".into(),
        }),
        n => Ok(n),
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().is_empty() => Ok(None),
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // The error names the path, never the content.
        Err(source) => Err(ConfigError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// One secret per line (a trailing newline, as `kubectl create secret --from-file` keeps it, is not
/// part of the secret).
fn split_secrets(v: &str) -> Vec<Secret> {
    v.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .map(Secret::new)
        .collect()
}

fn split_list(v: &str) -> Vec<String> {
    v.split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_bool(var: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err(ConfigError::Invalid {
            var,
            reason: format!("{v:?} is not a boolean"),
        }),
    }
}

fn parse_num<T: std::str::FromStr>(var: &'static str, v: &str) -> Result<T, ConfigError> {
    v.trim().parse().map_err(|_| ConfigError::Invalid {
        var,
        reason: format!("{v:?} is not a number"),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<GithubConfig, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        GithubConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn reads_the_mounted_secret_dir() {
        let dir = std::env::temp_dir().join(format!("qms-github-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("webhook-secret"), "old-secret\nnew-secret\n").unwrap();
        std::fs::write(dir.join("app-id"), "12345\n").unwrap();
        std::fs::write(dir.join("private-key"), "-----BEGIN RSA PRIVATE KEY-----\n").unwrap();
        let c = cfg(&[
            ("QMS_GITHUB_SECRET_DIR", dir.to_str().unwrap()),
            ("QMS_GITHUB_API_URL", "https://ghe.example.com/api/v3/"),
            ("QMS_GITHUB_TRUSTED_PERMISSION", "maintain"),
            ("QMS_GITHUB_TRUSTED_TEAMS", "creo/qms-leads"),
            ("QMS_GITHUB_WRITES_PER_MINUTE", "40"),
            ("QMS_GITHUB_WRITES_PER_HOUR", "300"),
            ("QMS_GITHUB_MAX_ANNOTATIONS_PER_CHECK_RUN", "200"),
        ])
        .unwrap();
        assert_eq!(c.max_annotations_per_check_run, 200);
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(c.api_base_url, "https://ghe.example.com/api/v3");
        assert_eq!((c.writes_per_minute, c.writes_per_hour), (40, 300));
        assert_eq!(c.webhook_secrets.len(), 2);
        assert_eq!(c.webhook_secrets[1].expose(), "new-secret");
        assert!(matches!(
            c.credentials,
            Credentials::App { app_id: 12345, .. }
        ));
        assert_eq!(c.trusted_permission, Permission::Maintain);
        assert_eq!(c.writes_per_minute, 40);
        // Printing the whole config shows no secret.
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("old-secret") && !dbg.contains("BEGIN RSA"),
            "{dbg}"
        );
    }

    #[test]
    fn token_mode_and_defaults() {
        let c = cfg(&[("QMS_GITHUB_TOKEN", "ghp_abc\n")]).unwrap();
        match &c.credentials {
            Credentials::Token(t) => assert_eq!(t.expose(), "ghp_abc"),
            other => panic!("expected a token, got {other:?}"),
        }
        assert_eq!(c.api_base_url, DEFAULT_API_URL);
        assert_eq!(c.writes_per_minute, 80);
        assert_eq!(c.max_annotations_per_check_run, 1_000);
        assert!(!c.run_drafts);
        assert_eq!(c.permission_cache_ttl, std::time::Duration::from_secs(30));
        assert_eq!(c.permission_cache_size, 4096);
        assert!(!format!("{c:?}").contains("ghp_abc"));
    }

    #[test]
    fn refuses_bad_values_without_echoing_secrets() {
        assert!(cfg(&[("QMS_GITHUB_TRUSTED_PERMISSION", "god")]).is_err());
        assert!(cfg(&[("QMS_GITHUB_WRITES_PER_MINUTE", "0")]).is_err());
        assert!(cfg(&[("QMS_GITHUB_WRITES_PER_HOUR", "0")]).is_err());
        assert!(cfg(&[("QMS_GITHUB_TRUSTED_TEAMS", "noslash")]).is_err());
        assert!(cfg(&[("QMS_GITHUB_PERMISSION_CACHE_SIZE", "0")]).is_err());
        let e = cfg(&[("QMS_GITHUB_PERMISSION_CACHE_TTL", "soon")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("QMS_GITHUB_PERMISSION_CACHE_TTL:"),
            "{e}"
        );
        let c = cfg(&[
            ("QMS_GITHUB_PERMISSION_CACHE_TTL", "5s"),
            ("QMS_GITHUB_PERMISSION_CACHE_SIZE", "10"),
        ])
        .unwrap();
        assert_eq!(c.permission_cache_ttl, std::time::Duration::from_secs(5));
        assert_eq!(c.permission_cache_size, 10);
        let e = cfg(&[("QMS_GITHUB_MAX_ANNOTATIONS_PER_CHECK_RUN", "many")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("QMS_GITHUB_MAX_ANNOTATIONS_PER_CHECK_RUN:"),
            "{e}"
        );
        let e = cfg(&[
            ("QMS_GITHUB_APP_ID", "x"),
            ("QMS_GITHUB_PRIVATE_KEY", "SECRETKEY"),
        ])
        .unwrap_err();
        assert!(!e.to_string().contains("SECRETKEY"));
    }

    #[test]
    fn permission_order() {
        assert!(Permission::parse("admin") > Permission::parse("write"));
        assert_eq!(Permission::parse("push"), Permission::Write);
        assert_eq!(Permission::parse("weird"), Permission::None);
    }
}
