//! The configuration reference (`docs/configuration.md`) against the structs the file is read
//! into: every documented key exists, and every key the structs accept is documented. The struct
//! side comes from serde itself: a deserializer that answers each struct with its field names and
//! each leaf with a neutral value, recording the key paths it was asked for.

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use std::cell::RefCell;

use super::raw::RawConfig;

/// Every key path `RawConfig` accepts; a map's keys appear as `<Name>`.
pub fn config_keys() -> Vec<String> {
    let keys = RefCell::new(Vec::new());
    let _: RawConfig = serde::Deserialize::deserialize(Lister { path: String::new(), keys: &keys })
        .expect("the lister answers every request");
    keys.into_inner()
}

struct Lister<'a> {
    path: String,
    keys: &'a RefCell<Vec<String>>,
}

impl Lister<'_> {
    fn leaf(&self) {
        self.keys.borrow_mut().push(self.path.clone());
    }
}

type Error = de::value::Error;

impl<'de> Deserializer<'de> for Lister<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // A `toml::Value` field (a number or a string): any value it takes will do.
        self.leaf();
        visitor.visit_i64(0)
    }
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_bool(false)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_i64(0)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_u64(0)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_f64(0.0)
    }
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_str("")
    }
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf();
        visitor.visit_seq(de::value::SeqDeserializer::<std::iter::Empty<()>, Error>::new(std::iter::empty()))
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // A table of names (operations): its keys are the operation names.
        self.keys.borrow_mut().push(format!("{}.<Name>", self.path));
        visitor.visit_map(de::value::MapDeserializer::<std::iter::Empty<((), ())>, Error>::new(std::iter::empty()))
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(Fields { fields, next: 0, path: self.path, keys: self.keys })
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i128 u8 u16 u32 u128 f32 char bytes byte_buf unit unit_struct newtype_struct
        tuple tuple_struct enum identifier ignored_any
    }
}

struct Fields<'a> {
    fields: &'static [&'static str],
    next: usize,
    path: String,
    keys: &'a RefCell<Vec<String>>,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        let Some(field) = self.fields.get(self.next) else { return Ok(None) };
        seed.deserialize((*field).into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let field = self.fields[self.next];
        self.next += 1;
        let path = if self.path.is_empty() { field.to_string() } else { format!("{}.{field}", self.path) };
        seed.deserialize(Lister { path, keys: self.keys })
    }
}

/// The keys of the reference's table, each with its row's text: a first cell such as
/// `` `tls.cert_file`, `tls.key_file` `` or `` `rate_limit.per_ip` / `.per_token` `` names several.
pub fn documented_keys(markdown: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for row in markdown.lines().filter(|l| l.starts_with("| `")) {
        let first = row.trim_start_matches('|').split('|').next().unwrap_or_default();
        let mut parent = String::new();
        for key in first.split('`').skip(1).step_by(2) {
            let key = match key.strip_prefix('.') {
                Some(sibling) => format!("{parent}.{sibling}"),
                None => key.to_string(),
            };
            parent = key.rsplit_once('.').map_or(String::new(), |(p, _)| p.to_string());
            out.push((key, row.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = include_str!("../../docs/configuration.md");

    #[test]
    fn the_lister_sees_nested_tables_and_maps() {
        let keys = config_keys();
        for key in
            ["listen", "discovery.urls", "proof.max_age", "rate_limit.per_ip.burst", "operations.max_body.<Name>"]
        {
            assert!(keys.iter().any(|k| k == key), "{key} not listed: {keys:?}");
        }
    }

    #[test]
    fn every_documented_key_exists_and_every_key_is_documented() {
        let (keys, documented) = (config_keys(), documented_keys(REFERENCE));
        assert!(documented.len() > 40, "the reference's table was not found");
        let mut problems = Vec::new();
        for (doc, _) in &documented {
            if !keys.iter().any(|k| k == doc || k.starts_with(&format!("{doc}."))) {
                problems.push(format!("documented but not a key: {doc}"));
            }
        }
        for key in &keys {
            // Documented itself, or as a sub-key named in its table's row (`per_second` in the
            // row of `rate_limit.per_ip`).
            let covered = documented.iter().any(|(doc, row)| {
                key == doc || key.strip_prefix(&format!("{doc}.")).is_some_and(|rest| row.contains(&format!("`{rest}")))
            });
            if !covered {
                problems.push(format!("a key missing from docs/configuration.md: {key}"));
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
