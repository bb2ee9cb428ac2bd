//! appc meta discovery (`spec/discovery.md`): from an image name such as
//! `example.com/project/app` to the URLs of its ACI, signature and keys.
//!
//! A name has no scheme and no host part of its own, so the spec resolves it
//! like Go's remote import paths: fetch `https://NAME?ac-discovery=1`, read
//! the HTML's `<meta name="ac-discovery" content="PREFIX TEMPLATE">` and
//! `<meta name="ac-discovery-pubkeys" content="PREFIX URL">` tags, and fill
//! the template with the name and labels. If a page has nothing usable, walk
//! up the name (`example.com/project`, then `example.com`).
//!
//! This module is the pure part: HTML parsing, template rendering and the
//! walk's decisions. It does no I/O. The walk is a small state machine
//! ([`Discovery`]: ask it for the next URL, feed it the page) with a
//! convenience driver ([`discover`]) taking a page getter closure, so that
//! `berth-fetch` plugs in HTTP (redirects, auth, TLS options) and everything
//! here is testable with a `HashMap`.
//!
//! ## Behaviour, and where it comes from
//!
//! - **Walk order.** Every `/`-separated prefix of the name, longest first
//!   (Go `DiscoverWalk`). For each, `https://PREFIX?ac-discovery=1`; only when
//!   that fails (any error or non-200 status, which the getter reports as an
//!   `Err`) and `insecure_http` is set, `http://PREFIX?ac-discovery=1` (Go
//!   `httpsOrHTTP`). A page that loads but has nothing usable does not cause
//!   an http:// retry, as in Go.
//! - **When to stop.** Image endpoints are taken from the *first* page that
//!   yields at least one usable endpoint, and public keys from the first page
//!   that yields at least one usable key URL; the walk stops once everything
//!   wanted is found. This is exactly what Go's separate
//!   `DiscoverACIEndpoints` and `DiscoverPublicKeys` walks return, but with
//!   the pages fetched once. Keys are therefore not necessarily from the same
//!   page as the endpoints (a site may publish keys only at its root).
//! - **Prefix match** is a plain string prefix of the name, as Go's
//!   `strings.HasPrefix(name, prefix)`: the prefix `example.com/ap` matches
//!   `example.com/app`. This is not a trust boundary: a page is only ever
//!   consulted for names under its own path, so a prefix only narrows which
//!   of those names a tag is for.
//! - **Templates.** `{name}` is the name, `{ext}` is `aci` for the image and
//!   `aci.asc` for its signature, and `{LABEL}` is the value of any label
//!   (`{version}`, `{os}`, `{arch}`, custom ones). `version` defaults to
//!   `latest` (Go `defaultVersion`); `os`/`arch` are the caller's to fill,
//!   with [`ImageReference::with_defaults`]. A template with a placeholder
//!   left unfilled is skipped (spec: the client substitutes every variable;
//!   Go: `renderTemplate`'s check for a leftover `{...}`). Unlike Go, values
//!   are substituted in one pass (a value containing `{x}` is not
//!   re-expanded), characters that would break a URL (space, `#`, `?`, `%`,
//!   non-ASCII...) are percent-encoded in label values, and a template
//!   without `{ext}` is refused (spec: templates "must contain `{ext}`";
//!   otherwise the image and signature URLs would be the same).
//! - **Schemes.** Only `https://` endpoints and key URLs are used, plus
//!   `http://` ones when `insecure_http` is set; others (the spec's `hdfs://`
//!   example) are recorded as ignored. Within a page, https endpoints are
//!   listed before http ones, otherwise in document order (the spec lets the
//!   client choose); exact duplicates are dropped.
//! - **HTML** is read with a WHATWG tokenizer, so real-world markup works:
//!   attributes in any order and case, unquoted or single-quoted values,
//!   character references, unclosed tags, comments, tags in `<body>`; text
//!   inside `<script>`, `<style>`, `<title>` etc. is not markup (as in Go's
//!   tokenizer). The `name` attribute is compared case-insensitively (HTML
//!   metadata names are); `content` is split on ASCII whitespace and must
//!   have exactly two fields (Go would take `a b c` as prefix `a` and URL
//!   `b c`, an unusable URL). Every skipped `ac-*` meta tag is kept with the
//!   reason, for `--debug`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::reference::{ImageReference, DEFAULT_DISCOVERY_VERSION};
use crate::types::AcIdentifier;

/// The query that marks a discovery request (spec: `https://{name}?ac-discovery=1`).
pub const DISCOVERY_QUERY: &str = "ac-discovery=1";

/// The `name` of the meta tag holding an image URL template.
pub const META_DISCOVERY: &str = "ac-discovery";
/// The `name` of the meta tag holding a public keys URL.
pub const META_PUBKEYS: &str = "ac-discovery-pubkeys";

/// The two kinds of discovery meta tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetaKind {
    /// `ac-discovery`: a URL template for the image and its signature.
    Discovery,
    /// `ac-discovery-pubkeys`: a URL of public keys.
    Pubkeys,
}

impl MetaKind {
    /// The meta tag's `name` attribute.
    pub fn meta_name(self) -> &'static str {
        match self {
            MetaKind::Discovery => META_DISCOVERY,
            MetaKind::Pubkeys => META_PUBKEYS,
        }
    }
}

/// One well-formed discovery meta tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaTag {
    pub kind: MetaKind,
    /// The prefix-match: the tag applies to names starting with it.
    pub prefix: String,
    /// A URL template (`ac-discovery`) or a URL (`ac-discovery-pubkeys`).
    pub url: String,
}

/// A discovery meta tag that was not used, and why (for `--debug`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredMeta {
    /// The tag's `name` attribute as written.
    pub name: String,
    /// The tag's `content` attribute as written (empty when absent).
    pub content: String,
    pub reason: String,
}

impl fmt::Display for IgnoredMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<meta name={:?} content={:?}>: {}",
            self.name, self.content, self.reason
        )
    }
}

/// The discovery meta tags of one page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaTags {
    /// Well-formed tags, in document order.
    pub tags: Vec<MetaTag>,
    /// `ac-*` meta tags that are malformed or of an unknown kind.
    pub ignored: Vec<IgnoredMeta>,
}

/// Finds the discovery meta tags in an HTML page, however broken its markup.
///
/// Meta tags whose name does not start with `ac-` (charset, viewport...) are
/// skipped silently; `ac-*` ones that cannot be used are listed in
/// [`MetaTags::ignored`] with the reason.
pub fn parse_meta_tags(html: &str) -> MetaTags {
    use html5gum::{DefaultEmitter, Token, Tokenizer};

    let mut emitter = DefaultEmitter::default();
    // Treat the content of <script>, <style>, <title>, <textarea>... as text,
    // as a browser (and Go's tokenizer) does: a meta tag written inside a
    // script string is not a meta tag.
    emitter.naively_switch_states(true);
    let mut out = MetaTags::default();
    for token in Tokenizer::new_with_emitter(html, emitter) {
        let Ok(Token::StartTag(tag)) = token else {
            continue;
        };
        if tag.name.as_slice() != b"meta" {
            continue;
        }
        let attr = |key: &[u8]| {
            tag.attributes
                .get(key)
                .map(|v| String::from_utf8_lossy(&v.value).into_owned())
        };
        let Some(name) = attr(b"name") else {
            continue;
        };
        let content = attr(b"content");
        if let Some(entry) = classify_meta(name, content) {
            match entry {
                Ok(tag) => out.tags.push(tag),
                Err(ignored) => out.ignored.push(ignored),
            }
        }
    }
    out
}

/// `None` for a meta tag that is none of discovery's business.
fn classify_meta(name: String, content: Option<String>) -> Option<Result<MetaTag, IgnoredMeta>> {
    let key = name.trim_matches(|c: char| c.is_ascii_whitespace());
    let kind = if key.eq_ignore_ascii_case(META_DISCOVERY) {
        MetaKind::Discovery
    } else if key.eq_ignore_ascii_case(META_PUBKEYS) {
        MetaKind::Pubkeys
    } else if key.len() >= 3 && key[..3].eq_ignore_ascii_case("ac-") {
        return Some(Err(IgnoredMeta {
            name,
            content: content.unwrap_or_default(),
            reason: format!(
                "unknown ac- meta name (discovery uses {META_DISCOVERY:?} and {META_PUBKEYS:?})"
            ),
        }));
    } else {
        return None;
    };
    let Some(content) = content else {
        return Some(Err(IgnoredMeta {
            name,
            content: String::new(),
            reason: "no content attribute".to_owned(),
        }));
    };
    let fields: Vec<&str> = content.split_ascii_whitespace().collect();
    let &[prefix, url] = fields.as_slice() else {
        let what = if kind == MetaKind::Discovery {
            "PREFIX URL-TEMPLATE"
        } else {
            "PREFIX URL"
        };
        let reason = format!(
            "content must be two space-separated fields, {what}; it has {}",
            fields.len()
        );
        return Some(Err(IgnoredMeta {
            name,
            content,
            reason,
        }));
    };
    Some(Ok(MetaTag {
        kind,
        prefix: prefix.to_owned(),
        url: url.to_owned(),
    }))
}

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("placeholder{} {} not filled: the reference has no such label", if .placeholders.len() == 1 { "" } else { "s" }, .placeholders.iter().map(|p| format!("{{{p}}}")).collect::<Vec<_>>().join(", "))]
    Unfilled { placeholders: Vec<String> },
    #[error("template has no {{ext}}: the image and signature URLs would be the same")]
    NoExt,
}

/// Renders a discovery template for `reference`, with `{ext}` set to `ext`.
///
/// Placeholders are `{NAME}` with no `{` inside; `{name}` is the image name,
/// `{ext}` is `ext` (even if the reference has a label called `ext`), any
/// other is the label of that name. A `{` with no `}` after it is literal.
/// Fails listing every placeholder that has no value.
pub fn render_template(
    template: &str,
    reference: &ImageReference,
    ext: &str,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut unfilled = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let key = &after[..close];
        if key.contains('{') {
            // `{{name}`: the first brace is literal.
            out.push('{');
            rest = after;
            continue;
        }
        match key {
            "name" => out.push_str(reference.name().as_str()),
            "ext" => out.push_str(ext),
            _ => match reference.label(key) {
                Some(v) => push_encoded(&mut out, v),
                None => {
                    if !unfilled.iter().any(|u| u == key) {
                        unfilled.push(key.to_owned());
                    }
                }
            },
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    if unfilled.is_empty() {
        Ok(out)
    } else {
        Err(TemplateError::Unfilled {
            placeholders: unfilled,
        })
    }
}

/// Appends a label value, percent-encoding what would change the URL's
/// structure or is not allowed in one.
fn push_encoded(out: &mut String, value: &str) {
    for b in value.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Where an image and its signature can be fetched.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    /// The template rendered with `{ext}` = `aci`.
    pub aci_url: String,
    /// The template rendered with `{ext}` = `aci.asc`.
    pub asc_url: String,
}

impl Endpoint {
    /// Renders an `ac-discovery` template for `reference` (see
    /// [`render_template`]); the template must contain `{ext}`.
    pub fn render(template: &str, reference: &ImageReference) -> Result<Endpoint, TemplateError> {
        if !template.contains("{ext}") {
            return Err(TemplateError::NoExt);
        }
        Ok(Endpoint {
            aci_url: render_template(template, reference, "aci")?,
            asc_url: render_template(template, reference, "aci.asc")?,
        })
    }

    /// Whether the image is fetched over TLS.
    pub fn is_https(&self) -> bool {
        scheme_of(&self.aci_url) == Some(Scheme::Https)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Https,
    Http,
}

fn scheme_of(url: &str) -> Option<Scheme> {
    let (scheme, _) = url.split_once("://")?;
    if scheme.eq_ignore_ascii_case("https") {
        Some(Scheme::Https)
    } else if scheme.eq_ignore_ascii_case("http") {
        Some(Scheme::Http)
    } else {
        None
    }
}

/// `Err(reason)` when a rendered URL may not be used under these options.
fn check_scheme(url: &str, insecure_http: bool) -> Result<Scheme, String> {
    match scheme_of(url) {
        Some(Scheme::Https) => Ok(Scheme::Https),
        Some(Scheme::Http) if insecure_http => Ok(Scheme::Http),
        Some(Scheme::Http) => Err(format!(
            "{url}: plain http:// is used only when insecure HTTP is allowed"
        )),
        None => Err(format!(
            "{url}: only https:// and http:// URLs can be fetched"
        )),
    }
}

/// The prefixes of a name that discovery tries, longest first:
/// `example.com/project/app`, `example.com/project`, `example.com`.
/// (Empty path segments, `a//b`, give no prefix of their own.)
pub fn discovery_prefixes(name: &AcIdentifier) -> Vec<String> {
    let name = name.as_str();
    let mut out = vec![name.to_owned()];
    for (i, _) in name.rmatch_indices('/') {
        let prefix = &name[..i];
        if !prefix.is_empty() && !prefix.ends_with('/') {
            out.push(prefix.to_owned());
        }
    }
    out
}

/// The discovery URL of one prefix: `https://PREFIX?ac-discovery=1` (or
/// `http://` when `https` is false).
pub fn discovery_url(prefix: &str, https: bool) -> String {
    let scheme = if https { "https" } else { "http" };
    format!("{scheme}://{prefix}?{DISCOVERY_QUERY}")
}

/// Every URL discovery may fetch for `name`, in order: for each prefix
/// (longest first) the https:// URL, followed by the http:// one when
/// `insecure_http` is set (that one is fetched only if the https:// one
/// fails).
pub fn discovery_urls(name: &AcIdentifier, insecure_http: bool) -> Vec<String> {
    let mut out = Vec::new();
    for prefix in discovery_prefixes(name) {
        out.push(discovery_url(&prefix, true));
        if insecure_http {
            out.push(discovery_url(&prefix, false));
        }
    }
    out
}

/// What discovery looks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Want {
    /// Image endpoints and public keys (`berth fetch`, `berth image discover`).
    #[default]
    ImageAndKeys,
    /// Only image endpoints.
    Image,
    /// Only public keys (`berth trust --prefix`).
    Keys,
}

impl Want {
    fn image(self) -> bool {
        matches!(self, Want::ImageAndKeys | Want::Image)
    }
    fn keys(self) -> bool {
        matches!(self, Want::ImageAndKeys | Want::Keys)
    }
}

/// How discovery runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryOptions {
    /// Fall back to http:// discovery URLs when https:// fails, and accept
    /// http:// image and key URLs.
    pub insecure_http: bool,
    pub want: Want,
}

/// The result of fetching one discovery URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
    /// The getter failed (network error, non-200 status...).
    FetchFailed { error: String },
    /// The page loaded. The counts are what it offered that was usable
    /// (used only if nothing was found on an earlier page).
    Page {
        endpoints: usize,
        pubkeys: usize,
        /// Tags that were not used: malformed, prefix not matching,
        /// placeholders unfilled, scheme not allowed.
        ignored: Vec<IgnoredMeta>,
    },
}

/// One fetched discovery URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub url: String,
    pub outcome: Outcome,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::FetchFailed { error } => write!(f, "{}: {error}", self.url),
            Outcome::Page {
                endpoints,
                pubkeys,
                ignored,
            } => {
                write!(
                    f,
                    "{}: {endpoints} image endpoint(s), {pubkeys} key URL(s)",
                    self.url
                )?;
                if !ignored.is_empty() {
                    write!(f, ", {} meta tag(s) ignored", ignored.len())?;
                }
                Ok(())
            }
        }
    }
}

/// What discovery found, and every URL it tried on the way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryResult {
    /// The reference the templates were rendered for (with `version`
    /// defaulted to `latest`).
    pub reference: ImageReference,
    /// From the first page that offered any: https ones first.
    pub image_endpoints: Vec<Endpoint>,
    /// From the first page that offered any.
    pub pubkeys: Vec<String>,
    pub tried: Vec<Attempt>,
}

impl DiscoveryResult {
    /// A multi-line account of the attempts, for an error message or
    /// `--debug`: one line per URL, then one per ignored meta tag.
    pub fn explain(&self) -> String {
        let mut s = String::new();
        for a in &self.tried {
            s.push_str(&format!("  {a}\n"));
            if let Outcome::Page { ignored, .. } = &a.outcome {
                for i in ignored {
                    s.push_str(&format!("    ignored {i}\n"));
                }
            }
        }
        s
    }
}

/// The discovery walk as a state machine: [`next_url`](Self::next_url) says
/// what to fetch, [`feed`](Self::feed) takes the page (or the error), and
/// [`finish`](Self::finish) gives the result once `next_url` is `None`.
#[derive(Debug, Clone)]
pub struct Discovery {
    options: DiscoveryOptions,
    prefixes: Vec<String>,
    /// Index in `prefixes` of the URL to fetch next; `prefixes.len()` when done.
    index: usize,
    /// Whether the next URL is the http:// fallback of `prefixes[index]`.
    http_fallback: bool,
    image_done: bool,
    keys_done: bool,
    result: DiscoveryResult,
}

impl Discovery {
    /// Starts discovery for `reference`. Its `version` defaults to `latest`;
    /// `os` and `arch` are not filled in here (use
    /// [`ImageReference::with_defaults`] first, or templates needing them are
    /// skipped).
    pub fn new(reference: &ImageReference, options: DiscoveryOptions) -> Self {
        let reference = if reference.version().is_some() {
            reference.clone()
        } else {
            let version = AcIdentifier::try_from("version")
                .unwrap_or_else(|_| unreachable!("\"version\" is a valid AC identifier"));
            reference
                .with_label(version, DEFAULT_DISCOVERY_VERSION)
                .unwrap_or_else(|_| reference.clone())
        };
        Discovery {
            options,
            prefixes: discovery_prefixes(reference.name()),
            index: 0,
            http_fallback: false,
            image_done: !options.want.image(),
            keys_done: !options.want.keys(),
            result: DiscoveryResult {
                reference,
                image_endpoints: Vec::new(),
                pubkeys: Vec::new(),
                tried: Vec::new(),
            },
        }
    }

    /// The URL to fetch next, or `None` when the walk is over.
    pub fn next_url(&self) -> Option<String> {
        if self.is_done() {
            return None;
        }
        let prefix = self.prefixes.get(self.index)?;
        Some(discovery_url(prefix, !self.http_fallback))
    }

    /// Whether the walk is over: everything wanted was found, or every
    /// prefix was tried.
    pub fn is_done(&self) -> bool {
        (self.image_done && self.keys_done) || self.index >= self.prefixes.len()
    }

    /// Takes the response to [`next_url`](Self::next_url): the page's HTML,
    /// or a description of why it could not be had. Ignored when the walk is
    /// over.
    pub fn feed(&mut self, page: Result<&str, String>) {
        let Some(url) = self.next_url() else {
            return;
        };
        match page {
            Err(error) => {
                self.result.tried.push(Attempt {
                    url,
                    outcome: Outcome::FetchFailed { error },
                });
                if !self.http_fallback && self.options.insecure_http {
                    self.http_fallback = true;
                } else {
                    self.advance();
                }
            }
            Ok(html) => {
                let found = evaluate_page(html, &self.result.reference, self.options.insecure_http);
                if !self.image_done && !found.endpoints.is_empty() {
                    self.result.image_endpoints = found.endpoints.clone();
                    self.image_done = true;
                }
                if !self.keys_done && !found.pubkeys.is_empty() {
                    self.result.pubkeys = found.pubkeys.clone();
                    self.keys_done = true;
                }
                self.result.tried.push(Attempt {
                    url,
                    outcome: Outcome::Page {
                        endpoints: found.endpoints.len(),
                        pubkeys: found.pubkeys.len(),
                        ignored: found.ignored,
                    },
                });
                self.advance();
            }
        }
    }

    fn advance(&mut self) {
        self.index += 1;
        self.http_fallback = false;
    }

    /// The result so far (complete once [`is_done`](Self::is_done)).
    pub fn finish(self) -> DiscoveryResult {
        self.result
    }
}

/// Runs the discovery walk with `get` fetching each discovery URL: `Ok` with
/// the body of a 200 response (after redirects), `Err` for anything else.
pub fn discover<E: fmt::Display>(
    reference: &ImageReference,
    options: DiscoveryOptions,
    get: &mut dyn FnMut(&str) -> Result<String, E>,
) -> DiscoveryResult {
    let mut walk = Discovery::new(reference, options);
    while let Some(url) = walk.next_url() {
        match get(&url) {
            Ok(page) => walk.feed(Ok(&page)),
            Err(e) => walk.feed(Err(e.to_string())),
        }
    }
    walk.finish()
}

/// What one page offers for one reference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageFindings {
    /// Usable endpoints, https ones first, duplicates dropped.
    pub endpoints: Vec<Endpoint>,
    /// Usable key URLs, duplicates dropped.
    pub pubkeys: Vec<String>,
    pub ignored: Vec<IgnoredMeta>,
}

/// Applies one page's meta tags to `reference` (exactly as given: no
/// defaults are added here).
pub fn evaluate_page(html: &str, reference: &ImageReference, insecure_http: bool) -> PageFindings {
    let meta = parse_meta_tags(html);
    let mut out = PageFindings {
        ignored: meta.ignored,
        ..PageFindings::default()
    };
    let mut http_endpoints = Vec::new();
    let name = reference.name().as_str();
    for tag in meta.tags {
        let ignore = |reason: String| IgnoredMeta {
            name: tag.kind.meta_name().to_owned(),
            content: format!("{} {}", tag.prefix, tag.url),
            reason,
        };
        if !name.starts_with(&tag.prefix) {
            out.ignored.push(ignore(format!(
                "prefix {:?} does not match {name:?}",
                tag.prefix
            )));
            continue;
        }
        match tag.kind {
            MetaKind::Discovery => {
                let ep = match Endpoint::render(&tag.url, reference) {
                    Ok(ep) => ep,
                    Err(e) => {
                        out.ignored.push(ignore(e.to_string()));
                        continue;
                    }
                };
                let scheme = check_scheme(&ep.aci_url, insecure_http)
                    .and_then(|s| check_scheme(&ep.asc_url, insecure_http).map(|_| s));
                match scheme {
                    Err(reason) => out.ignored.push(ignore(reason)),
                    Ok(Scheme::Https) if !out.endpoints.contains(&ep) => out.endpoints.push(ep),
                    Ok(Scheme::Http) if !http_endpoints.contains(&ep) => http_endpoints.push(ep),
                    Ok(_) => {}
                }
            }
            MetaKind::Pubkeys => match check_scheme(&tag.url, insecure_http) {
                Err(reason) => out.ignored.push(ignore(reason)),
                Ok(_) if !out.pubkeys.contains(&tag.url) => out.pubkeys.push(tag.url.clone()),
                Ok(_) => {}
            },
        }
    }
    out.endpoints.extend(http_endpoints);
    out
}
