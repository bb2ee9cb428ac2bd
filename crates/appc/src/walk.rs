//! The machinery under the strict parser: reading JSON into a
//! `serde_json::Value` (refusing duplicate keys, which the Go reference reads
//! in order and so judges by the *first* occurrence while serde keeps the
//! last: an ambiguity we refuse rather than guess), and walking that value
//! with a JSON path while collecting every problem instead of stopping at the
//! first one.
//!
//! Field lookup follows Go's `encoding/json`, which the reference tool
//! (`actool`) uses: an exact key match wins, otherwise a case-insensitive one
//! is accepted. That is why the spec's own example, which spells
//! `supplementaryGids` while the schema says `supplementaryGIDs`, is valid.
//! A JSON `null` reads as an absent field, as in Go.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::{ManifestError, Problem, ValueError};

/// Parses bytes as one JSON document, refusing duplicate object keys.
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Value, ManifestError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| ManifestError::single("", format!("not valid JSON: {e}")))?;
    Ok(value)
}

struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
            }
            let v = map.next_value_seed(StrictValue)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// `parent.name`, or `name` at the top.
pub(crate) fn field(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

/// `parent[i]`.
pub(crate) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// A short description of a JSON value's type for "expected X, found Y".
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Collects problems while a document is walked.
#[derive(Debug, Default)]
pub(crate) struct Cx {
    pub(crate) problems: Vec<Problem>,
}

impl Cx {
    pub(crate) fn err(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    pub(crate) fn count(&self) -> usize {
        self.problems.len()
    }

    /// `Ok(value)` if nothing was recorded, else all problems.
    pub(crate) fn finish<T>(self, value: Option<T>) -> Result<T, ManifestError> {
        match value {
            Some(v) if self.problems.is_empty() => Ok(v),
            _ => {
                let mut problems = self.problems;
                if problems.is_empty() {
                    problems.push(Problem::new("", "invalid manifest"));
                }
                Err(ManifestError { problems })
            }
        }
    }

    fn expected(&mut self, path: &str, what: &str, v: &Value) {
        self.err(path, format!("expected {what}, found {}", kind_of(v)));
    }

    pub(crate) fn string<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v str> {
        match v {
            Value::String(s) => Some(s),
            other => {
                self.expected(path, "a string", other);
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, v: &Value, path: &str) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            other => {
                self.expected(path, "a boolean (true or false)", other);
                None
            }
        }
    }

    /// An integer within `min..=max`; the range is part of the message.
    pub(crate) fn int(&mut self, v: &Value, path: &str, min: i64, max: i64) -> Option<i64> {
        let Value::Number(n) = v else {
            self.expected(path, "an integer", v);
            return None;
        };
        let parsed = n.as_i64().or_else(|| n.as_u64().map(|_| i64::MAX));
        match parsed {
            Some(i) if n.as_u64().is_some_and(|u| u > i64::MAX as u64) || i > max || i < min => {
                self.err(path, format!("{n} is out of range {min}-{max}"));
                None
            }
            Some(i) => Some(i),
            None => {
                self.err(path, format!("expected an integer, found {n}"));
                None
            }
        }
    }

    pub(crate) fn array<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v [Value]> {
        match v {
            Value::Array(a) => Some(a),
            other => {
                self.expected(path, "an array", other);
                None
            }
        }
    }

    pub(crate) fn object<'v>(&mut self, v: &'v Value, path: &str) -> Option<Obj<'v>> {
        match v {
            Value::Object(map) => Some(Obj {
                map,
                path: path.to_owned(),
            }),
            other => {
                self.expected(path, "an object", other);
                None
            }
        }
    }

    /// A string parsed by a type's `FromStr`, which states the broken rule.
    pub(crate) fn parse_str<T: FromStr<Err = ValueError>>(
        &mut self,
        v: &Value,
        path: &str,
    ) -> Option<T> {
        let s = self.string(v, path)?;
        match s.parse() {
            Ok(t) => Some(t),
            Err(e) => {
                self.err(path, e.to_string());
                None
            }
        }
    }

    /// A `{"string": "string"}` map (userAnnotations, userLabels, sysctl).
    pub(crate) fn string_map(
        &mut self,
        v: &Value,
        path: &str,
    ) -> Option<std::collections::BTreeMap<String, String>> {
        let obj = self.object(v, path)?;
        let before = self.count();
        let mut out = std::collections::BTreeMap::new();
        for (k, val) in obj.map {
            if let Some(s) = self.string(val, &field(path, k)) {
                out.insert(k.clone(), s.to_owned());
            }
        }
        (self.count() == before).then_some(out)
    }

    /// Each element of an array field, parsed by `each`; `None` if any failed.
    pub(crate) fn list<T>(
        &mut self,
        v: &Value,
        path: &str,
        mut each: impl FnMut(&mut Cx, &Value, &str) -> Option<T>,
    ) -> Option<Vec<T>> {
        let items = self.array(v, path)?;
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match each(self, item, &index(path, i)) {
                Some(t) => out.push(t),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

/// A JSON object being read, with its path.
#[derive(Debug, Clone)]
pub(crate) struct Obj<'v> {
    pub(crate) map: &'v Map<String, Value>,
    pub(crate) path: String,
}

impl<'v> Obj<'v> {
    /// The value of field `name`: exact key first, else a case-insensitive
    /// match (as Go does). `null` counts as absent.
    pub(crate) fn get(&self, name: &str) -> Option<&'v Value> {
        let found = self.map.get(name).or_else(|| {
            self.map
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        });
        found.filter(|v| !v.is_null())
    }

    pub(crate) fn path_of(&self, name: &str) -> String {
        field(&self.path, name)
    }

    /// A required field; records `is required` when absent.
    pub(crate) fn req(&self, cx: &mut Cx, name: &str) -> Option<&'v Value> {
        let v = self.get(name);
        if v.is_none() {
            cx.err(&self.path_of(name), "is required");
        }
        v
    }

    /// Parse an optional field. The outer `Option` is `None` when the field
    /// was present but invalid; the inner one when it was absent.
    pub(crate) fn opt<T>(
        &self,
        cx: &mut Cx,
        name: &str,
        parse: impl FnOnce(&mut Cx, &'v Value, &str) -> Option<T>,
    ) -> Option<Option<T>> {
        match self.get(name) {
            None => Some(None),
            Some(v) => parse(cx, v, &self.path_of(name)).map(Some),
        }
    }

    /// Parse a required field.
    pub(crate) fn must<T>(
        &self,
        cx: &mut Cx,
        name: &str,
        parse: impl FnOnce(&mut Cx, &'v Value, &str) -> Option<T>,
    ) -> Option<T> {
        let v = self.req(cx, name)?;
        parse(cx, v, &self.path_of(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused() {
        let err = parse_json(br#"{"a": 1, "b": {"c": 1, "c": 2}}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate key \"c\""), "{err}");
        assert!(parse_json(br#"{"a": [1, {"b": null}]}"#).is_ok());
    }

    #[test]
    fn trailing_garbage_is_refused() {
        assert!(parse_json(b"{} x").is_err());
        assert!(parse_json(b"{").is_err());
    }

    #[test]
    fn lookup_is_exact_first_then_case_insensitive() {
        let v = serde_json::json!({"acKind": "a", "ACKIND": "b", "Name": "n", "x": null});
        let mut cx = Cx::default();
        let obj = cx.object(&v, "").unwrap();
        assert_eq!(obj.get("acKind"), Some(&Value::from("a")));
        assert_eq!(obj.get("name"), Some(&Value::from("n")));
        assert_eq!(obj.get("x"), None);
    }

    #[test]
    fn int_reports_range_and_type() {
        let mut cx = Cx::default();
        assert_eq!(cx.int(&Value::from(5), "p", 1, 10), Some(5));
        assert_eq!(cx.int(&Value::from(0), "p", 1, 10), None);
        assert_eq!(cx.int(&Value::from(1.5), "q", 1, 10), None);
        assert_eq!(cx.int(&Value::from(u64::MAX), "r", 1, 10), None);
        let lines: Vec<String> = cx.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "p: 0 is out of range 1-10",
                "q: expected an integer, found 1.5",
                "r: 18446744073709551615 is out of range 1-10"
            ]
        );
    }
}
