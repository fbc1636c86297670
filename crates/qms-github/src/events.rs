//! Typed models of the parts of GitHub webhook payloads that qms-github uses.
//!
//! Only fields we read are modelled; everything else in the payload is ignored, so GitHub adding
//! fields never breaks parsing. Parsing returns an error for a payload that lacks a field we need —
//! never a panic.

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct User {
    pub login: String,
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Repository {
    #[serde(default)]
    pub id: u64,
    /// `owner/name`.
    pub full_name: String,
    pub name: String,
    pub owner: User,
    #[serde(default)]
    pub fork: bool,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
pub struct Installation {
    pub id: u64,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct GitRef {
    pub sha: String,
    #[serde(rename = "ref")]
    pub ref_: String,
    /// `None` when the head repository was deleted.
    #[serde(default)]
    pub repo: Option<Repository>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct PullRequest {
    pub number: u64,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub draft: bool,
    pub head: GitRef,
    pub base: GitRef,
    pub user: User,
    #[serde(default)]
    pub html_url: String,
    /// Set on `closed`: whether the pull request was merged (its head is now on the base branch).
    #[serde(default)]
    pub merged: bool,
    /// RFC 3339 time of the merge: orders the baselines of merged pull requests whose `closed`
    /// deliveries arrive out of order.
    #[serde(default)]
    pub merged_at: Option<String>,
}

impl PullRequest {
    /// A PR from another repository (a fork): its code is untrusted until someone trusted says so.
    /// A deleted head repository counts as a fork (we cannot tell, so we do not trust it).
    pub fn is_from_fork(&self) -> bool {
        match (&self.head.repo, &self.base.repo) {
            (Some(head), Some(base)) => {
                !head.full_name.eq_ignore_ascii_case(&base.full_name)
                    || (head.id != 0 && base.id != 0 && head.id != base.id)
            }
            _ => true,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct PullRequestEvent {
    pub action: String,
    pub number: u64,
    pub pull_request: PullRequest,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<Installation>,
    pub sender: User,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Issue {
    pub number: u64,
    /// Present only when the issue is a pull request.
    #[serde(default)]
    pub pull_request: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Comment {
    pub id: u64,
    #[serde(default)]
    pub body: String,
    pub user: User,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct IssueCommentEvent {
    pub action: String,
    pub issue: Issue,
    pub comment: Comment,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<Installation>,
    pub sender: User,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct PullRequestRef {
    pub number: u64,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct CheckRun {
    pub id: i64,
    pub name: String,
    pub head_sha: String,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub pull_requests: Vec<PullRequestRef>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct RequestedAction {
    pub identifier: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct CheckRunEvent {
    pub action: String,
    pub check_run: CheckRun,
    #[serde(default)]
    pub requested_action: Option<RequestedAction>,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<Installation>,
    pub sender: User,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct CheckSuite {
    pub id: i64,
    pub head_sha: String,
    /// Empty for PRs from forks (GitHub only lists PRs of the same repository).
    #[serde(default)]
    pub pull_requests: Vec<PullRequestRef>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct CheckSuiteEvent {
    pub action: String,
    pub check_suite: CheckSuite,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<Installation>,
    pub sender: User,
}

/// The merge group of a `merge_group` event (GitHub merge queue): a temporary branch
/// `refs/heads/gh-readonly-queue/<base>/pr-<number>-<sha>` holding the base plus the queued pull
/// requests up to `pr-<number>`. Refs are full refs (`refs/heads/...`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct MergeGroup {
    pub head_sha: String,
    pub head_ref: String,
    pub base_sha: String,
    pub base_ref: String,
}

impl MergeGroup {
    /// The number of the pull request at the head of the group, from `head_ref`'s last segment
    /// `pr-<number>-<sha>`; `None` when the ref has another shape.
    pub fn pull_request(&self) -> Option<u64> {
        let last = self.head_ref.rsplit('/').next()?;
        let (number, _sha) = last.strip_prefix("pr-")?.split_once('-')?;
        number.parse().ok().filter(|n| *n > 0)
    }
}

/// `merge_group`: `checks_requested` when a group needs its required checks, `destroyed`
/// (`reason`: merged, invalidated or dequeued) when it leaves the queue.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct MergeGroupEvent {
    pub action: String,
    #[serde(default)]
    pub reason: Option<String>,
    pub merge_group: MergeGroup,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<Installation>,
    pub sender: User,
}

/// The commit at the head of a push.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct HeadCommit {
    pub id: String,
    /// ISO 8601 time of the commit.
    #[serde(default)]
    pub timestamp: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Pusher {
    #[serde(default)]
    pub name: Option<String>,
}

/// `push`: commits pushed to a branch or tag. `ref` is the full ref (`refs/heads/main`,
/// `refs/tags/v1`); `after` is all zeros (and `deleted` true) when the ref was deleted.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct PushEvent {
    #[serde(rename = "ref")]
    pub ref_: String,
    pub before: String,
    pub after: String,
    #[serde(default)]
    pub created: bool,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub forced: bool,
    #[serde(default)]
    pub head_commit: Option<HeadCommit>,
    pub repository: PushRepository,
    #[serde(default)]
    pub pusher: Option<Pusher>,
    #[serde(default)]
    pub installation: Option<Installation>,
    pub sender: User,
}

/// The repository of a push payload: as elsewhere, plus `pushed_at`, which GitHub sends as Unix
/// seconds in push payloads (and as an ISO 8601 string in others).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct PushRepository {
    #[serde(flatten)]
    pub repository: Repository,
    #[serde(default)]
    pub pushed_at: Option<serde_json::Value>,
}

impl PushEvent {
    /// The branch name of a `refs/heads/` ref; `None` for tags and other refs.
    pub fn branch(&self) -> Option<&str> {
        self.ref_
            .strip_prefix("refs/heads/")
            .filter(|b| !b.is_empty())
    }

    /// Whether the push deleted its ref (nothing to review).
    pub fn is_deletion(&self) -> bool {
        self.deleted || (!self.after.is_empty() && self.after.bytes().all(|b| b == b'0'))
    }

    /// When the push happened: the repository's `pushed_at` (Unix seconds or ISO 8601), else the
    /// head commit's time; `None` when the payload has neither.
    pub fn pushed_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        use chrono::{DateTime, Utc};
        let parse = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        };
        let from_repo = match &self.repository.pushed_at {
            Some(serde_json::Value::Number(n)) => n
                .as_i64()
                .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0)),
            Some(serde_json::Value::String(s)) => parse(s),
            _ => None,
        };
        from_repo.or_else(|| {
            self.head_commit
                .as_ref()
                .and_then(|c| c.timestamp.as_deref())
                .and_then(parse)
        })
    }
}

/// A parsed delivery.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Ping,
    PullRequest(Box<PullRequestEvent>),
    IssueComment(Box<IssueCommentEvent>),
    CheckRun(Box<CheckRunEvent>),
    CheckSuite(Box<CheckSuiteEvent>),
    MergeGroup(Box<MergeGroupEvent>),
    Push(Box<PushEvent>),
    /// An event type we do not handle (answered 202 "ignored").
    Other(String),
}

impl Event {
    pub fn installation(&self) -> Option<u64> {
        match self {
            Event::PullRequest(e) => e.installation.map(|i| i.id),
            Event::IssueComment(e) => e.installation.map(|i| i.id),
            Event::CheckRun(e) => e.installation.map(|i| i.id),
            Event::CheckSuite(e) => e.installation.map(|i| i.id),
            Event::MergeGroup(e) => e.installation.map(|i| i.id),
            Event::Push(e) => e.installation.map(|i| i.id),
            Event::Ping | Event::Other(_) => None,
        }
    }

    pub fn repository(&self) -> Option<&Repository> {
        match self {
            Event::PullRequest(e) => Some(&e.repository),
            Event::IssueComment(e) => Some(&e.repository),
            Event::CheckRun(e) => Some(&e.repository),
            Event::CheckSuite(e) => Some(&e.repository),
            Event::MergeGroup(e) => Some(&e.repository),
            Event::Push(e) => Some(&e.repository.repository),
            Event::Ping | Event::Other(_) => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid {event} payload: {message}")]
pub struct ParseError {
    pub event: String,
    pub message: String,
}

/// Parses the JSON body of a delivery whose `X-GitHub-Event` is `event`.
pub fn parse(event: &str, body: &[u8]) -> Result<Event, ParseError> {
    fn typed<T: serde::de::DeserializeOwned>(event: &str, body: &[u8]) -> Result<T, ParseError> {
        serde_json::from_slice(body).map_err(|e| ParseError {
            event: event.to_owned(),
            // serde_json's message names the field and position, never echoes the payload.
            message: e.to_string(),
        })
    }
    Ok(match event {
        "ping" => Event::Ping,
        "pull_request" => Event::PullRequest(Box::new(typed(event, body)?)),
        "issue_comment" => Event::IssueComment(Box::new(typed(event, body)?)),
        "check_run" => Event::CheckRun(Box::new(typed(event, body)?)),
        "check_suite" => Event::CheckSuite(Box::new(typed(event, body)?)),
        "merge_group" => Event::MergeGroup(Box::new(typed(event, body)?)),
        "push" => Event::Push(Box::new(typed(event, body)?)),
        other => Event::Other(other.chars().take(64).collect()),
    })
}
