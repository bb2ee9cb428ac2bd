//! `--pull-policy`: when to use the store and when to ask the network.

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use crate::CacheInfo;

/// How an image reference that names a remote image is resolved
/// (`--pull-policy=never|new|update`).
///
/// Local files are always read, whatever the policy. rkt's defaults, kept by
/// berth: `new` for `run` and `prepare`, `update` for `fetch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PullPolicy {
    /// Use the store only; never touch the network. An image that is not in
    /// the store is an error.
    Never,
    /// Use the image in the store if there is one; download only images that
    /// are missing.
    New,
    /// Ask the server for a newer version even when the store has one, unless
    /// the stored copy is still fresh (`Cache-Control: max-age` not expired).
    /// The request is conditional (`If-None-Match`), so an unchanged image is
    /// not downloaded again: the server answers `304 Not Modified`.
    Update,
}

/// What the caller should do for one image, see [`PullPolicy::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullDecision {
    /// Use the copy in the store; send no request.
    UseStore,
    /// Call [`Fetcher::download`](crate::Fetcher::download), passing the
    /// stored [`CacheInfo`] if the image is in the store (so an unchanged image
    /// comes back as `NotModified`) and `None` otherwise.
    Fetch,
    /// The image is not in the store and the policy forbids fetching it.
    Unavailable,
}

impl PullPolicy {
    /// Decides whether to contact the network for an image, given whether
    /// the store holds it and, if it came from the network, the cache facts
    /// of its last download.
    ///
    /// `cache` is ignored when `in_store` is false: cache facts without the
    /// image they describe are worth nothing.
    pub fn decide(
        self,
        in_store: bool,
        cache: Option<&CacheInfo>,
        now: SystemTime,
    ) -> PullDecision {
        match (self, in_store) {
            (PullPolicy::Never, true) | (PullPolicy::New, true) => PullDecision::UseStore,
            (PullPolicy::Never, false) => PullDecision::Unavailable,
            (PullPolicy::New, false) | (PullPolicy::Update, false) => PullDecision::Fetch,
            (PullPolicy::Update, true) => {
                if cache.is_some_and(|c| c.is_fresh(now)) {
                    PullDecision::UseStore
                } else {
                    PullDecision::Fetch
                }
            }
        }
    }

    /// The flag value, as accepted by [`FromStr`].
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Never => "never",
            PullPolicy::New => "new",
            PullPolicy::Update => "update",
        }
    }
}

impl fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown `--pull-policy` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pull policy {0:?} (expected never, new or update)")]
pub struct ParsePullPolicyError(pub String);

impl FromStr for PullPolicy {
    type Err = ParsePullPolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "never" => Ok(PullPolicy::Never),
            "new" => Ok(PullPolicy::New),
            "update" => Ok(PullPolicy::Update),
            other => Err(ParsePullPolicyError(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::unix_seconds;
    use std::time::Duration;

    #[test]
    fn parse_and_display_round_trip() {
        for p in [PullPolicy::Never, PullPolicy::New, PullPolicy::Update] {
            assert_eq!(p.to_string().parse::<PullPolicy>(), Ok(p));
        }
        let err = "always".parse::<PullPolicy>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid pull policy \"always\" (expected never, new or update)"
        );
    }

    #[test]
    fn decisions() {
        let now = SystemTime::now();
        let fresh = CacheInfo {
            max_age: Some(3600),
            fetched_at: unix_seconds(now),
            ..CacheInfo::default()
        };
        let stale = CacheInfo {
            max_age: Some(10),
            fetched_at: unix_seconds(now - Duration::from_secs(100)),
            ..CacheInfo::default()
        };
        use PullDecision::*;
        use PullPolicy::*;
        assert_eq!(Never.decide(true, None, now), UseStore);
        assert_eq!(Never.decide(false, Some(&fresh), now), Unavailable);
        assert_eq!(New.decide(true, Some(&stale), now), UseStore);
        assert_eq!(New.decide(false, None, now), Fetch);
        assert_eq!(Update.decide(true, Some(&fresh), now), UseStore);
        assert_eq!(Update.decide(true, Some(&stale), now), Fetch);
        assert_eq!(Update.decide(true, None, now), Fetch);
        assert_eq!(Update.decide(false, Some(&fresh), now), Fetch);
    }
}
