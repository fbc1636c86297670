//! Credentials for the GitHub API: a plain token, or a GitHub App (RS256 JWT → installation
//! tokens, cached per installation until shortly before they expire).
//!
//! The HTTP exchange itself is in `client.rs`; this module holds keys, builds JWTs and keeps the
//! cache. Nothing here prints a key or a token (see [`Secret`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::config::Credentials;
use crate::secret::Secret;

/// An installation token is replaced this long before GitHub's `expires_at` (tokens live 1 h), so
/// a request never starts with a token about to expire.
pub const TOKEN_REFRESH_MARGIN: Duration = Duration::minutes(5);

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthError {
    #[error("the GitHub App private key is not a valid RSA PEM key")]
    BadKey,
    #[error("cannot sign the GitHub App JWT")]
    Sign,
    #[error("no GitHub App installation is known for {0}")]
    NoInstallation(String),
    #[error("no GitHub credentials are configured")]
    NoCredentials,
}

pub enum Auth {
    None,
    Token(Secret),
    App(AppAuth),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("Auth::None"),
            Auth::Token(_) => f.write_str("Auth::Token([redacted])"),
            Auth::App(a) => write!(f, "Auth::App {{ app_id: {}, key: [redacted] }}", a.app_id),
        }
    }
}

impl Auth {
    pub fn from_credentials(c: &Credentials) -> Result<Self, AuthError> {
        Ok(match c {
            Credentials::None => Auth::None,
            Credentials::Token(t) => Auth::Token(t.clone()),
            Credentials::App {
                app_id,
                private_key,
            } => Auth::App(AppAuth::new(*app_id, private_key)?),
        })
    }
}

pub struct AppAuth {
    pub app_id: u64,
    key: EncodingKey,
    tokens: Mutex<HashMap<u64, CachedToken>>,
    installations: Mutex<HashMap<String, u64>>,
}

#[derive(Clone)]
struct CachedToken {
    token: Secret,
    expires_at: DateTime<Utc>,
}

#[derive(Serialize)]
struct Claims {
    iat: i64,
    exp: i64,
    iss: String,
}

impl AppAuth {
    pub fn new(app_id: u64, private_key: &Secret) -> Result<Self, AuthError> {
        let key = EncodingKey::from_rsa_pem(private_key.expose().as_bytes())
            .map_err(|_| AuthError::BadKey)?;
        Ok(Self {
            app_id,
            key,
            tokens: Mutex::new(HashMap::new()),
            installations: Mutex::new(HashMap::new()),
        })
    }

    /// The app's JWT: issued a minute in the past (GitHub's clock may be behind ours), valid for
    /// 9 minutes (GitHub accepts at most 10).
    pub fn jwt(&self, now: DateTime<Utc>) -> Result<Secret, AuthError> {
        let claims = Claims {
            iat: (now - Duration::seconds(60)).timestamp(),
            exp: (now + Duration::minutes(9)).timestamp(),
            iss: self.app_id.to_string(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map(Secret::new)
            .map_err(|_| AuthError::Sign)
    }

    /// A cached installation token still valid at `now` (with the refresh margin).
    pub fn cached_token(&self, installation: u64, now: DateTime<Utc>) -> Option<Secret> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(&installation)
            .filter(|t| t.expires_at - TOKEN_REFRESH_MARGIN > now)
            .map(|t| t.token.clone())
    }

    pub fn store_token(&self, installation: u64, token: Secret, expires_at: DateTime<Utc>) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.insert(installation, CachedToken { token, expires_at });
    }

    /// Forget a token GitHub refused (revoked, app reinstalled).
    pub fn forget_token(&self, installation: u64) {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&installation);
    }

    pub fn known_installation(&self, repository: &str) -> Option<u64> {
        self.installations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&repository.to_ascii_lowercase())
            .copied()
    }

    pub fn remember_installation(&self, repository: &str, installation: u64) {
        self.installations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(repository.to_ascii_lowercase(), installation);
    }
}
