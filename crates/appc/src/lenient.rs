//! The lax twin of [`crate::manifest`] (the idea of the reference's
//! `schema/lastditch`): read a manifest the strict parser refuses far enough
//! to *name* things in an error message ("image example.com/foo has an
//! invalid manifest: ...") and to clean up after it (remove the image, garbage
//! collect the pod).
//!
//! Every field is a plain `String` (or a list of them) and defaults to empty;
//! a field of the wrong JSON type reads as empty too. Reading fails only when
//! the input is not JSON or not a JSON object. Unlike `lastditch`, nothing
//! here checks `acKind`: the caller decides what a wrong kind means. Field
//! names match as in the strict parser (exact, else case-insensitive).

use serde_json::{Map, Value};

use crate::error::ManifestError;

/// A label or annotation, unvalidated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

/// The parts of an `app` needed to talk about it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct App {
    pub exec: Vec<String>,
    pub user: String,
    pub group: String,
}

/// An image manifest, read without validation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageManifest {
    pub ac_kind: String,
    pub ac_version: String,
    pub name: String,
    pub labels: Vec<NameValue>,
    pub app: Option<App>,
    pub annotations: Vec<NameValue>,
}

/// The image of a pod app, read without validation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuntimeImage {
    pub name: String,
    pub id: String,
    pub labels: Vec<NameValue>,
}

/// A pod app, read without validation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuntimeApp {
    pub name: String,
    pub image: RuntimeImage,
}

/// A pod manifest, read without validation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodManifest {
    pub ac_kind: String,
    pub ac_version: String,
    pub apps: Vec<RuntimeApp>,
}

/// Either kind, by `acKind`; `Unknown` keeps what could be read of any
/// other document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyManifest {
    Image(ImageManifest),
    Pod(PodManifest),
    Unknown { ac_kind: String, ac_version: String },
}

fn get<'a>(m: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    m.get(name).or_else(|| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn text(m: &Map<String, Value>, name: &str) -> String {
    match get(m, name) {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

fn objects<'a>(m: &'a Map<String, Value>, name: &str) -> Vec<&'a Map<String, Value>> {
    match get(m, name) {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_object).collect(),
        _ => Vec::new(),
    }
}

fn name_values(m: &Map<String, Value>, name: &str) -> Vec<NameValue> {
    objects(m, name)
        .into_iter()
        .map(|o| NameValue {
            name: text(o, "name"),
            value: text(o, "value"),
        })
        .collect()
}

fn object(bytes: &[u8]) -> Result<Map<String, Value>, ManifestError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(ManifestError::single(
            "",
            format!(
                "a manifest must be a JSON object, found {}",
                crate::walk::kind_of(&other)
            ),
        )),
        Err(e) => Err(ManifestError::single("", format!("not valid JSON: {e}"))),
    }
}

impl ImageManifest {
    pub fn from_json(bytes: &[u8]) -> Result<ImageManifest, ManifestError> {
        Ok(ImageManifest::from_map(&object(bytes)?))
    }

    fn from_map(m: &Map<String, Value>) -> ImageManifest {
        let app = match get(m, "app") {
            Some(Value::Object(a)) => Some(App {
                exec: match get(a, "exec") {
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(|v| v.as_str().unwrap_or_default().to_owned())
                        .collect(),
                    _ => Vec::new(),
                },
                user: text(a, "user"),
                group: text(a, "group"),
            }),
            _ => None,
        };
        ImageManifest {
            ac_kind: text(m, "acKind"),
            ac_version: text(m, "acVersion"),
            name: text(m, "name"),
            labels: name_values(m, "labels"),
            app,
            annotations: name_values(m, "annotations"),
        }
    }

    /// The value of a label, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
    }
}

impl PodManifest {
    pub fn from_json(bytes: &[u8]) -> Result<PodManifest, ManifestError> {
        Ok(PodManifest::from_map(&object(bytes)?))
    }

    fn from_map(m: &Map<String, Value>) -> PodManifest {
        let apps = objects(m, "apps")
            .into_iter()
            .map(|a| {
                let image = match get(a, "image") {
                    Some(Value::Object(i)) => RuntimeImage {
                        name: text(i, "name"),
                        id: text(i, "id"),
                        labels: name_values(i, "labels"),
                    },
                    _ => RuntimeImage::default(),
                };
                RuntimeApp {
                    name: text(a, "name"),
                    image,
                }
            })
            .collect();
        PodManifest {
            ac_kind: text(m, "acKind"),
            ac_version: text(m, "acVersion"),
            apps,
        }
    }
}

impl AnyManifest {
    pub fn from_json(bytes: &[u8]) -> Result<AnyManifest, ManifestError> {
        let m = object(bytes)?;
        Ok(match text(&m, "acKind").as_str() {
            "ImageManifest" => AnyManifest::Image(ImageManifest::from_map(&m)),
            "PodManifest" => AnyManifest::Pod(PodManifest::from_map(&m)),
            other => AnyManifest::Unknown {
                ac_kind: other.to_owned(),
                ac_version: text(&m, "acVersion"),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_broken_image_manifests() {
        let m = ImageManifest::from_json(
            br#"{"acKind": "ImageManifest", "acVersion": "bogus", "name": "Not Valid!",
                "labels": [{"name": "version", "value": "1"}, {"name": 5}, "junk"],
                "app": {"exec": ["/bin/x", 7], "user": 0},
                "annotations": {"wrong": "type"}}"#,
        )
        .unwrap();
        assert_eq!(m.ac_version, "bogus");
        assert_eq!(m.name, "Not Valid!");
        assert_eq!(m.label("version"), Some("1"));
        assert_eq!(m.labels.len(), 2);
        assert_eq!(m.labels[1].name, "");
        let app = m.app.unwrap();
        assert_eq!(app.exec, ["/bin/x", ""]);
        assert_eq!(app.user, "");
        assert!(m.annotations.is_empty());
    }

    #[test]
    fn reads_broken_pod_manifests() {
        let p = PodManifest::from_json(
            br#"{"ACKIND": "PodManifest", "apps": [
                {"name": "Bad_Name", "image": {"id": "sha512-1", "name": "x"}},
                {"name": "b", "image": null}, 3]}"#,
        )
        .unwrap();
        assert_eq!(p.ac_kind, "PodManifest");
        assert_eq!(p.apps.len(), 2);
        assert_eq!(p.apps[0].name, "Bad_Name");
        assert_eq!(p.apps[0].image.id, "sha512-1");
        assert_eq!(p.apps[1].image, RuntimeImage::default());
    }

    #[test]
    fn fails_only_on_non_objects() {
        assert!(ImageManifest::from_json(b"[]").is_err());
        assert!(PodManifest::from_json(b"{").is_err());
        assert!(ImageManifest::from_json(b"{}").is_ok());
        assert_eq!(
            AnyManifest::from_json(br#"{"acKind": "Other", "acVersion": "1"}"#).unwrap(),
            AnyManifest::Unknown {
                ac_kind: "Other".into(),
                ac_version: "1".into()
            }
        );
        assert!(matches!(
            AnyManifest::from_json(br#"{"acKind": "PodManifest"}"#).unwrap(),
            AnyManifest::Pod(_)
        ));
    }
}
