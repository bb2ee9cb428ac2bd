//! The registry v2 client (distribution spec) over the crate's HTTP layer.
//!
//! - **Manifests**: `GET /v2/<repo>/manifests/<tag|digest>` with an
//!   `Accept` for OCI manifests and indexes and Docker schema 2 manifests
//!   and lists. A manifest asked for by digest must hash to it; one asked
//!   for by tag must match the `Docker-Content-Digest` the registry sends.
//!   An index resolves to the manifest for the host's platform (or
//!   `--platform`).
//! - **Auth**: the first `401` carries `WWW-Authenticate`. `Bearer
//!   realm=…,service=…,scope=…` sends us to the token server (with Basic
//!   credentials when we have some for the registry: `auth.d` `dockerAuth`
//!   or `auth` entries, or the Docker `config.json`), and the token is sent
//!   to the registry's own host only (never to the blob storage a registry
//!   redirects to). `Basic` challenges get the Basic credentials directly.
//! - **Blobs**: `GET /v2/<repo>/blobs/<digest>` into
//!   `cas/partial/sha256-<hex>` (the HTTP layer resumes it with `Range`
//!   after a kill), then hashed and moved into the store; a mismatch is
//!   reported with the blob's digest and nothing is stored. Blobs already
//!   in the store are never requested. Independent layers download in
//!   parallel, at most [`OciFetchOptions::parallel`](super::OciFetchOptions)
//!   at once.

use std::sync::Mutex;

use berth_appc::oci::spec::Descriptor;
use berth_appc::oci::DockerReference;
use berth_store::Digest;
use ureq::http::header::ACCEPT;
use url::Url;

use super::{digest, sha256, OciFetchError, OciFetched, OciFetcher, Transfers, MAX_DOCUMENT};
use crate::{Credentials, FetchError, Outcome, Progress, ProgressGroup, PullPolicy};

/// Every manifest type berth reads, most preferred first.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parse `Bearer realm="https://auth",service="registry",scope="a,b"`
/// (quoted values may hold commas and escaped quotes).
pub(crate) fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = Vec::new();
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b',') {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let key = rest[ks..i].trim().to_string();
        i += 1;
        let mut val = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                val.push(b[i] as char);
                i += 1;
            }
            i += 1;
        } else {
            let vs = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            val = rest[vs..i].trim().to_string();
        }
        params.push((key, val));
    }
    Some(Challenge {
        scheme: scheme.to_string(),
        params,
    })
}

/// One repository on one registry, with the token got so far.
struct Repo<'f, 'a> {
    f: &'f OciFetcher<'a>,
    base: Url,
    registry: String,
    repository: String,
    reference: String,
    basic: Option<Credentials>,
    /// The `Authorization` value that works (a Bearer token), once known.
    auth: Mutex<Option<String>>,
}

impl Repo<'_, '_> {
    fn url(&self, path: &str) -> String {
        format!(
            "{}v2/{}/{}",
            self.base.as_str(),
            self.repository,
            path.trim_start_matches('/')
        )
    }

    fn current_auth(&self) -> Option<String> {
        self.auth.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Answer a `401`'s challenge: get a token (Bearer) or use the Basic
    /// credentials. Returns the new `Authorization` value.
    fn authenticate(&self, challenge: Option<&str>) -> Result<String, OciFetchError> {
        let auth_err = |reason: String| OciFetchError::Auth {
            registry: self.registry.clone(),
            reason,
        };
        let Some(c) = challenge.and_then(parse_challenge) else {
            return Err(auth_err(
                "the registry asked for credentials without saying how (no WWW-Authenticate)"
                    .into(),
            ));
        };
        if c.scheme.eq_ignore_ascii_case("basic") {
            return match &self.basic {
                Some(b) => Ok(b.header_value()),
                None => Err(auth_err(format!(
                    "the registry needs a user name and password: add them to an auth.d/*.json \
                     (\"rktKind\": \"dockerAuth\", \"registries\": [\"{}\"]) or to a Docker config.json \
                     given with --registry-config",
                    self.registry
                ))),
            };
        }
        if !c.scheme.eq_ignore_ascii_case("bearer") {
            return Err(auth_err(format!(
                "unsupported authentication scheme {:?}",
                c.scheme
            )));
        }
        let realm = c
            .param("realm")
            .ok_or_else(|| auth_err("the Bearer challenge has no realm".into()))?;
        let mut url = Url::parse(realm)
            .map_err(|e| auth_err(format!("the token realm {realm:?} is not a URL: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = c.param("service") {
                q.append_pair("service", s);
            }
            let scope = c
                .param("scope")
                .map(str::to_string)
                .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
            for s in scope.split(' ').filter(|s| !s.is_empty()) {
                q.append_pair("scope", s);
            }
        }
        let basic = self.basic.as_ref().map(|b| b.header_value());
        let resp = self
            .f
            .http
            .get_small_with(url.as_str(), &[], basic.as_deref(), 1 << 20)?;
        if resp.status != 200 {
            return Err(match resp.status {
                401 | 403 => auth_err(format!(
                    "the token server {} refused {} ({}){}",
                    url.origin().ascii_serialization(),
                    if basic.is_some() {
                        "the credentials"
                    } else {
                        "an anonymous request"
                    },
                    resp.status,
                    if basic.is_some() {
                        ": check the credentials for this registry"
                    } else {
                        ": add credentials for this registry to auth.d or a Docker config.json (--registry-config)"
                    }
                )),
                _ => OciFetchError::Fetch(resp.error(basic.is_some())),
            });
        }
        let v: serde_json::Value = serde_json::from_slice(&resp.body)
            .map_err(|e| auth_err(format!("the token server's answer is not JSON: {e}")))?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| auth_err("the token server's answer has no token".into()))?;
        Ok(format!("Bearer {token}"))
    }

    /// GET a manifest-sized document, authenticating on a `401`.
    fn get_doc(&self, path: &str) -> Result<crate::SmallResponse, OciFetchError> {
        let url = self.url(path);
        let accept = [(ACCEPT, MANIFEST_ACCEPT.to_string())];
        let mut retried = false;
        loop {
            let auth = self
                .current_auth()
                .or_else(|| self.basic.as_ref().map(|b| b.header_value()));
            let resp = self
                .f
                .http
                .get_small_with(&url, &accept, auth.as_deref(), MAX_DOCUMENT)?;
            match resp.status {
                200 => return Ok(resp),
                401 if !retried => {
                    retried = true;
                    let a = self.authenticate(resp.header("www-authenticate"))?;
                    *self.auth.lock().unwrap_or_else(|e| e.into_inner()) = Some(a);
                }
                404 => return Err(OciFetchError::Fetch(FetchError::NotFound { url: resp.url })),
                _ => return Err(OciFetchError::Fetch(resp.error(auth.is_some()))),
            }
        }
    }

    /// A manifest or index by tag or digest, checked against the digest.
    fn manifest(&self, reference: &str) -> Result<(Vec<u8>, String), OciFetchError> {
        let resp = self.get_doc(&format!("manifests/{reference}"))?;
        let got = sha256(&resp.body);
        let expected = if reference.starts_with("sha256:") {
            Some(reference.to_string())
        } else {
            resp.header("docker-content-digest")
                .filter(|d| d.starts_with("sha256:"))
                .map(str::to_string)
        };
        if let Some(e) = expected {
            if got.to_string() != e {
                return Err(OciFetchError::Corrupt {
                    reference: self.reference.clone(),
                    digest: e,
                    actual: got.to_string(),
                });
            }
        }
        let ct = resp
            .header("content-type")
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        Ok((resp.body, ct))
    }

    /// Download one blob into the store (resuming a partial download).
    fn blob(&self, d: &Descriptor, progress: Progress) -> Result<bool, OciFetchError> {
        let dg = digest(&self.reference, d)?;
        if self.f.store.has_blob(&dg) {
            return Ok(false);
        }
        let url = self.url(&format!("blobs/{dg}"));
        let partial = self.f.store.partial_path(&dg);
        let mut retried = false;
        let completed = loop {
            let auth = self
                .current_auth()
                .or_else(|| self.basic.as_ref().map(|b| b.header_value()));
            match self
                .f
                .http
                .download_with(&url, None, &partial, &[], auth.as_deref())
            {
                Ok(Outcome::Body(dl)) => {
                    break dl.with_progress(progress.clone()).finish()?;
                }
                Ok(_) => {
                    return Err(OciFetchError::Fetch(FetchError::UnexpectedStatus {
                        url,
                        status: crate::Status(304),
                    }))
                }
                Err(FetchError::AccessDenied { .. }) if !retried => {
                    // The token may have expired mid-pull: ask again.
                    retried = true;
                    let resp = self.f.http.get_small_with(&url, &[], None, 1 << 20).ok();
                    let a = self
                        .authenticate(resp.as_ref().and_then(|r| r.header("www-authenticate")))?;
                    *self.auth.lock().unwrap_or_else(|e| e.into_inner()) = Some(a);
                }
                Err(e) => return Err(e.into()),
            }
        };
        let _ = std::fs::remove_file(crate::resume_info_path(&partial));
        if completed.len != d.size {
            let _ = std::fs::remove_file(&partial);
            return Err(OciFetchError::Size {
                reference: self.reference.clone(),
                digest: dg.to_string(),
                expected: d.size,
                actual: completed.len,
            });
        }
        self.f
            .store
            .commit_partial(&dg)
            .map_err(|e| OciFetchError::from_blob(&self.reference, e))?;
        Ok(true)
    }
}

impl OciFetcher<'_> {
    /// Fetch `docker://REF` from its registry.
    pub fn fetch_docker(&self, r: &DockerReference) -> Result<OciFetched, OciFetchError> {
        let stored_as = format!("docker://{r}");
        if self.opts.policy != PullPolicy::Update {
            if let Some(image) = self.store.oci_lookup(&stored_as)? {
                return Ok(OciFetched {
                    image,
                    downloaded: Vec::new(),
                    reused: Vec::new(),
                    from_store: true,
                });
            }
            if self.opts.policy == PullPolicy::Never {
                return Err(OciFetchError::NotInStore {
                    reference: stored_as,
                });
            }
        }
        let scheme = if self.http.config().allow_http {
            "http"
        } else {
            "https"
        };
        let base = Url::parse(&format!("{scheme}://{}/", r.registry())).map_err(|e| {
            OciFetchError::Document {
                reference: stored_as.clone(),
                what: "registry".into(),
                reason: e.to_string(),
            }
        })?;
        let host = base.host_str().unwrap_or_default().to_string();
        let basic = match self
            .http
            .config()
            .auth
            .for_registry(r.registry())
            .or_else(|| {
                self.http
                    .config()
                    .auth
                    .for_host(&host, base.port_or_known_default())
            }) {
            Some(c) => Some(c.clone()),
            None => match &self.opts.registry_config {
                Some(p) => super::docker_config_credentials(p, r.registry())?,
                None => None,
            },
        };
        let repo = Repo {
            f: self,
            base,
            registry: r.registry().to_string(),
            repository: r.repository().to_string(),
            reference: stored_as.clone(),
            basic,
            auth: Mutex::new(None),
        };
        let (first, ct) = repo.manifest(r.manifest_reference())?;
        let (mbytes, mt) =
            self.resolve_index(&stored_as, first, &ct, &|d| repo.manifest(&d.digest))?;
        let mdigest = sha256(&mbytes);
        // The stored image is current: just record the name.
        if let Some(_known) = self.store.oci_get(&mdigest)? {
            let manifest = self.parse_manifest(&stored_as, &mbytes)?;
            let image = self.record(
                &stored_as,
                &mbytes,
                &mt,
                &manifest,
                Some(stored_as.clone()),
                repo.url(&format!("manifests/{}", r.manifest_reference())),
            )?;
            return Ok(OciFetched {
                image,
                downloaded: Vec::new(),
                reused: Vec::new(),
                from_store: false,
            });
        }
        let manifest = self.parse_manifest(&stored_as, &mbytes)?;
        let _guard = self.store.oci_pull_guard()?;
        let mut todo: Vec<Descriptor> = Vec::new();
        let mut t = Transfers::default();
        for d in std::iter::once(&manifest.config).chain(manifest.layers.iter()) {
            let dg = digest(&stored_as, d)?;
            if self.store.has_blob(&dg) {
                t.reused.push(dg);
            } else if !todo.iter().any(|x| x.digest == d.digest) {
                todo.push(d.clone());
            }
        }
        let queue = Mutex::new(todo.into_iter().rev().collect::<Vec<_>>());
        let done = Mutex::new(Vec::new());
        let failed: Mutex<Option<OciFetchError>> = Mutex::new(None);
        let workers = self.opts.parallel.max(1);
        let bars = ProgressGroup::stderr(self.opts.progress);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    if failed.lock().map(|f| f.is_some()).unwrap_or(true) {
                        return;
                    }
                    let Some(d) = queue.lock().ok().and_then(|mut q| q.pop()) else {
                        return;
                    };
                    let short = d.digest.get(7..19).unwrap_or(&d.digest).to_string();
                    let progress = bars.bar(short);
                    match repo.blob(&d, progress) {
                        Ok(true) => {
                            if let (Ok(mut v), Ok(dg)) = (done.lock(), d.digest.parse::<Digest>()) {
                                v.push(dg);
                            }
                        }
                        Ok(false) => {}
                        Err(e) => {
                            if let Ok(mut f) = failed.lock() {
                                f.get_or_insert(e);
                            }
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        t.downloaded = done.into_inner().unwrap_or_else(|e| e.into_inner());
        let image = self.record(
            &stored_as,
            &mbytes,
            &mt,
            &manifest,
            Some(stored_as.clone()),
            repo.url(&format!("manifests/{}", r.manifest_reference())),
        )?;
        Ok(t.done(image))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "Bearer");
        assert_eq!(c.param("realm"), Some("https://auth.example/token"));
        assert_eq!(c.param("service"), Some("registry.example"));
        assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));
        let c = parse_challenge(r#"Basic realm="x\"y""#).unwrap();
        assert_eq!(c.scheme, "Basic");
        assert_eq!(c.param("realm"), Some("x\"y"));
        let c = parse_challenge("Bearer realm=http://a/t, service=s").unwrap();
        assert_eq!(c.param("service"), Some("s"));
    }
}
