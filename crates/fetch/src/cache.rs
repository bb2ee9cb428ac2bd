//! What a previous download of a URL told us about caching it.
//!
//! The store persists a [`CacheInfo`] next to each image it fetched over the
//! network (rkt kept the same three facts in its `remote` table) and hands it
//! back to [`Fetcher::download`](crate::Fetcher::download) on the next fetch of
//! that URL.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use ureq::http::header::{AGE, CACHE_CONTROL, ETAG, LAST_MODIFIED};
use ureq::http::HeaderMap;

/// Cache validators and lifetime of one fetched URL.
///
/// Serialises to plain JSON, for instance
/// `{"etag":"\"v1\"","last_modified":null,"max_age":3600,"fetched_at":1764400000}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheInfo {
    /// The `ETag` response header, quotes and `W/` prefix included, as sent.
    #[serde(default)]
    pub etag: Option<String>,
    /// The `Last-Modified` response header, as sent.
    #[serde(default)]
    pub last_modified: Option<String>,
    /// Seconds the response stays fresh after [`fetched_at`](Self::fetched_at):
    /// `Cache-Control: max-age` minus the `Age` the response already had.
    /// `None` when the server gave no lifetime or asked for revalidation
    /// (`no-cache`, `no-store`): such a response is never fresh.
    #[serde(default)]
    pub max_age: Option<u64>,
    /// When the response was received (or last revalidated), in seconds
    /// since the Unix epoch.
    #[serde(default)]
    pub fetched_at: u64,
}

impl CacheInfo {
    /// Reads the caching headers of a response received at `now`.
    pub(crate) fn from_headers(headers: &HeaderMap, now: SystemTime) -> Self {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &ureq::http::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let age = text(AGE)
            .and_then(|a| a.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let max_age = headers
            .get_all(CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        CacheInfo {
            etag: text(ETAG),
            last_modified: text(LAST_MODIFIED),
            max_age: parse_max_age(&max_age).map(|m| m.saturating_sub(age)),
            fetched_at: unix_seconds(now),
        }
    }

    /// The caching facts after a `304 Not Modified` received at `now`: the
    /// validators are kept unless the 304 carries new ones, the lifetime is
    /// the one the 304 gives (RFC 9111 §4.3.4).
    pub(crate) fn revalidated(&self, headers: &HeaderMap, now: SystemTime) -> Self {
        let fresh = CacheInfo::from_headers(headers, now);
        CacheInfo {
            etag: fresh.etag.or_else(|| self.etag.clone()),
            last_modified: fresh.last_modified.or_else(|| self.last_modified.clone()),
            max_age: fresh.max_age,
            fetched_at: fresh.fetched_at,
        }
    }

    /// When the cached response stops being fresh; `None` if it never was.
    pub fn expires_at(&self) -> Option<SystemTime> {
        let max_age = self.max_age?;
        UNIX_EPOCH.checked_add(Duration::from_secs(self.fetched_at.checked_add(max_age)?))
    }

    /// Whether the cached copy may be used at `now` without asking the
    /// server.
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        self.expires_at().is_some_and(|expiry| now < expiry)
    }

    /// Whether a conditional request can be made (there is a validator).
    pub fn has_validator(&self) -> bool {
        self.etag.is_some() || self.last_modified.is_some()
    }
}

/// The freshness lifetime from a `Cache-Control` value, `None` when there is
/// none or the server wants every use revalidated.
fn parse_max_age(cache_control: &str) -> Option<u64> {
    let mut max_age = None;
    for directive in cache_control.split(',') {
        let directive = directive.trim();
        let (name, value) = match directive.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (directive, None),
        };
        if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
            return None;
        }
        if name.eq_ignore_ascii_case("max-age") {
            max_age = value.and_then(|v| v.parse::<u64>().ok());
        }
    }
    max_age
}

pub(crate) fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn max_age_directives() {
        assert_eq!(parse_max_age("max-age=60"), Some(60));
        assert_eq!(parse_max_age("public, Max-Age=\"120\""), Some(120));
        assert_eq!(parse_max_age("max-age=60, no-cache"), None);
        assert_eq!(parse_max_age("no-store"), None);
        assert_eq!(parse_max_age("private"), None);
        assert_eq!(parse_max_age("max-age=abc"), None);
    }

    #[test]
    fn freshness_counts_age_and_expires() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let info = CacheInfo::from_headers(
            &headers(&[
                ("cache-control", "max-age=100"),
                ("age", "40"),
                ("etag", "\"abc\""),
            ]),
            now,
        );
        assert_eq!(info.max_age, Some(60));
        assert_eq!(info.etag.as_deref(), Some("\"abc\""));
        assert!(info.is_fresh(now + Duration::from_secs(59)));
        assert!(!info.is_fresh(now + Duration::from_secs(60)));
        assert!(!CacheInfo::default().is_fresh(now));
    }

    #[test]
    fn revalidation_keeps_old_validators() {
        let now = UNIX_EPOCH + Duration::from_secs(5_000);
        let old = CacheInfo {
            etag: Some("\"v1\"".into()),
            last_modified: Some("Mon, 01 Jan 2024 00:00:00 GMT".into()),
            max_age: Some(10),
            fetched_at: 1,
        };
        let new = old.revalidated(&headers(&[("cache-control", "max-age=30")]), now);
        assert_eq!(new.etag, old.etag);
        assert_eq!(new.last_modified, old.last_modified);
        assert_eq!(new.max_age, Some(30));
        assert_eq!(new.fetched_at, 5_000);
    }

    #[test]
    fn serde_round_trip_and_lenient_missing_fields() {
        let info = CacheInfo {
            etag: Some("\"x\"".into()),
            last_modified: None,
            max_age: Some(5),
            fetched_at: 7,
        };
        let json = serde_json::to_string(&info).unwrap();
        assert_eq!(serde_json::from_str::<CacheInfo>(&json).unwrap(), info);
        assert_eq!(
            serde_json::from_str::<CacheInfo>("{}").unwrap(),
            CacheInfo::default()
        );
    }
}
