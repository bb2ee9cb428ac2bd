//! Problems found in manifests: each names the JSON path of the field and the
//! rule it breaks, so a person can find and fix it without reading the spec.

use std::fmt;

/// One broken rule at one place in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON path of the offending field, e.g. `app.ports[1].port`; empty for
    /// the document as a whole.
    pub path: String,
    /// What is wrong, e.g. `arch "amd64" is not valid for os "freebsd"`.
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A manifest that did not parse: every problem found, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub problems: Vec<Problem>,
}

impl ManifestError {
    pub fn single(path: impl Into<String>, message: impl Into<String>) -> Self {
        ManifestError {
            problems: vec![Problem::new(path, message)],
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [] => f.write_str("invalid manifest"),
            [one] => write!(f, "{one}"),
            [first, rest @ ..] => write!(f, "{first} (and {} more problems)", rest.len()),
        }
    }
}

impl std::error::Error for ManifestError {}

/// Why a single value (a name, an ID, a quantity...) is not valid: the rule it
/// breaks, without a location. Returned by the `TryFrom<&str>`/`FromStr`
/// constructors of the spec's types; the manifest parser puts the JSON path
/// in front of it to make a [`Problem`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    message: String,
}

impl ValueError {
    pub fn new(message: impl Into<String>) -> Self {
        ValueError {
            message: message.into(),
        }
    }

    /// The broken rule, e.g. `"Foo" is not a valid AC name: ...`.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ValueError {}

impl ManifestError {
    /// The problems as lines, one per problem, ready to print.
    pub fn lines(&self) -> Vec<String> {
        self.problems.iter().map(ToString::to_string).collect()
    }

    /// Whether some problem is located at `path` or below it.
    pub fn mentions(&self, path: &str) -> bool {
        self.problems.iter().any(|p| {
            p.path == path
                || p.path
                    .strip_prefix(path)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        })
    }
}
