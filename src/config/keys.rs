//! Every key path the config file accepts, from the schema itself (no list to keep in step): the schema's
//! `Deserialize` is run against a deserializer that answers every struct with all its fields, every list with one
//! element and every option with a value, and records the path of each value read as a leaf. `ociregistry
//! config-keys` prints them; the chart test and the docs check read them from there.

use serde::de::value::{Error as Never, StrDeserializer};
use serde::de::{self, Deserialize, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::schema::FileConfig;

/// The key paths, in schema order: `port`, `registries[].auth.user`, `pinned[]` (a list of values).
pub fn config_keys() -> Vec<String> {
    let mut keys = Vec::new();
    // Cannot fail: the recorder never refuses, and every field has a default.
    let _ = FileConfig::deserialize(Recorder { path: String::new(), keys: &mut keys });
    keys
}

/// Records the key path of every leaf it is asked for.
struct Recorder<'a> {
    path: String,
    keys: &'a mut Vec<String>,
}

impl<'de> de::Deserializer<'de> for Recorder<'_> {
    type Error = Never;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Never> {
        self.keys.push(self.path);
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Never> {
        visitor.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Never> {
        visitor.visit_seq(OneElement(Some(Recorder { path: format!("{}[]", self.path), keys: self.keys })))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Never> {
        visitor.visit_map(Fields { parent: self.path, fields: fields.iter(), current: "", keys: self.keys })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit unit_struct
        newtype_struct tuple tuple_struct map enum identifier ignored_any
    }
}

/// A list: one element, recorded under `list[]`.
struct OneElement<'a>(Option<Recorder<'a>>);

impl<'de> SeqAccess<'de> for OneElement<'_> {
    type Error = Never;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Never> {
        self.0.take().map(|recorder| seed.deserialize(recorder)).transpose()
    }
}

/// A struct: each of its fields, recorded under `parent.field`.
struct Fields<'a> {
    parent: String,
    fields: std::slice::Iter<'static, &'static str>,
    current: &'static str,
    keys: &'a mut Vec<String>,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Never;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Never> {
        let Some(field) = self.fields.next() else {
            return Ok(None);
        };
        self.current = field;
        seed.deserialize(StrDeserializer::<Never>::new(field)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Never> {
        let path = match self.parent.as_str() {
            "" => self.current.to_string(),
            parent => format!("{parent}.{}", self.current),
        };
        seed.deserialize(Recorder { path, keys: self.keys })
    }
}
