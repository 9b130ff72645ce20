//! Whether stored bytes are an object the API can serve (what
//! [`super::prepared::stored`] accepts), answered in one pass over the JSON
//! that builds nothing. The watch cache asks this of every event it applies;
//! building the whole `Value` only to drop it was a tenth of a member's CPU
//! while pods were created through the API (docs/BENCHMARKS.md, issue 10).

use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// `true` exactly when [`super::prepared::stored`] would succeed: valid JSON,
/// a JSON object, and `metadata` absent or a JSON object. A repeated key
/// counts as its last occurrence, as `serde_json::Value` keeps it.
pub fn servable(raw: &[u8]) -> bool {
    let mut de = serde_json::Deserializer::from_slice(raw);
    match de.deserialize_any(TopLevel) {
        Ok(ok) => ok && de.end().is_ok(),
        Err(_) => false,
    }
}

/// The top-level value: `Ok(true)` for an object whose last `metadata` (if
/// any) is an object. Anything else is an `Err` (the visitor's defaults
/// refuse every other type), which [`servable`] answers `false` for, as it
/// does JSON that does not parse.
struct TopLevel;

impl<'de> Visitor<'de> for TopLevel {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut metadata_ok = true;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "metadata" {
                metadata_ok = map.next_value_seed(IsObject)?;
            } else {
                map.next_value_seed(IsObject)?;
            }
        }
        Ok(metadata_ok)
    }
}

/// Any JSON value, read through: whether it was an object. Numbers are
/// checked all the way down, because a `Value` cannot hold an infinite one.
struct IsObject;

impl<'de> DeserializeSeed<'de> for IsObject {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IsObject {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(IsObject)?;
        }
        Ok(true)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element_seed(IsObject)?.is_some() {}
        Ok(false)
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<bool, E> {
        // serde_json's `Value` refuses what it cannot hold; so does this.
        if v.is_finite() {
            Ok(false)
        } else {
            Err(E::custom("a number out of range"))
        }
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use keel_store::KeyValue;

    use super::servable;
    use crate::registry::prepared::stored;

    fn builds(raw: &str) -> bool {
        let kv = KeyValue {
            key: "/registry/core/pods/default/p".into(),
            value: raw.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            uid: None,
        };
        stored(&kv, 1).is_ok()
    }

    #[test]
    fn servable_agrees_with_building_the_object() {
        for raw in [
            r#"{"metadata":{"name":"p"},"spec":{"nodeName":"n"}}"#,
            r#"{}"#,
            r#"{"spec":[1,2,{"a":null}]}"#,
            r#"{"metadata":null}"#,
            r#"{"metadata":[]}"#,
            r#"{"metadata":"x"}"#,
            r#"{"metadata":7}"#,
            r#"{"metadata":"x","metadata":{}}"#,
            r#"{"metadata":{},"metadata":1}"#,
            r#"{"a":1e400}"#,
            r#"{"a":-0.5,"b":true,"c":"\u00e9"}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"\ud800":1}"#,
            r#"{"a":{"\ud800":1}}"#,
            r#"{"a":{"\udc00x":1}}"#,
            r#"{"a":{"k\u00":1}}"#,
            r#"{"a":{"\n\"":[1e400]}}"#,
            r#"[]"#,
            r#"[{"metadata":{}}]"#,
            r#""s""#,
            r#"1"#,
            r#"null"#,
            r#"{"metadata":{}} trailing"#,
            r#"{"metadata":{}"#,
            "not json",
            "",
        ] {
            assert_eq!(servable(raw.as_bytes()), builds(raw), "{raw}");
        }
        // Nesting past serde_json's recursion limit fails both ways.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let raw = format!(r#"{{"a":{deep}}}"#);
        assert!(!builds(&raw));
        assert!(!servable(raw.as_bytes()));
    }
}
