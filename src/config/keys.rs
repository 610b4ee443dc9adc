//! Every key path the config file accepts, from the schema itself (no list to keep in step): the schema's
//! `Deserialize` is run against a deserializer that answers every struct with all its fields, every list with one
//! element and every option with a value, and records the path of each value read as a leaf. `ociregistry
//! config-keys` prints them; the chart test and the docs check read them from there.

use std::cell::RefCell;

use serde::de::value::{Error as Never, MapDeserializer, SeqDeserializer};
use serde::de::{self, Deserialize, IntoDeserializer, Visitor};

use super::read::join;
use super::schema::FileConfig;

/// The key paths, in schema order: `port`, `registries[].auth.user`, `pinned[]` (a list of values).
pub fn config_keys() -> Vec<String> {
    let keys = RefCell::new(Vec::new());
    // Cannot fail: the recorder never refuses, and every field has a default.
    let _ = FileConfig::deserialize(Recorder { path: String::new(), keys: &keys });
    keys.into_inner()
}

/// Records the key path of every leaf it is asked for; a struct's fields and a list's one element are recorders
/// one level down.
struct Recorder<'a> {
    path: String,
    keys: &'a RefCell<Vec<String>>,
}

impl<'de> de::Deserializer<'de> for Recorder<'_> {
    type Error = Never;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Never> {
        self.keys.borrow_mut().push(self.path);
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Never> {
        visitor.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Never> {
        let element = Recorder { path: format!("{}[]", self.path), keys: self.keys };
        visitor.visit_seq(SeqDeserializer::new(std::iter::once(element)))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Never> {
        let field = |name: &&'static str| (*name, Recorder { path: join(&self.path, name), keys: self.keys });
        visitor.visit_map(MapDeserializer::new(fields.iter().map(field)))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit unit_struct
        newtype_struct tuple tuple_struct map enum identifier ignored_any
    }
}

impl<'de, 'a> IntoDeserializer<'de, Never> for Recorder<'a> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}
