//! JSON documents read as `oci-spec` types without losing what those types do not model.
//!
//! `oci_spec::image::ImageManifest`, `ImageIndex` and `Descriptor` drop fields they do not
//! know (an extension field, a future spec field, a field of a layer descriptor). A
//! [`Lossless<T>`] keeps the document as it was read beside the typed value; a change to the
//! typed value is merged back into the document field by field (arrays of the same length
//! element by element), so that fields the type does not model stay where they were, in
//! their order.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{Error, Result};

/// A typed view (`T`) of a JSON object that keeps every field `T` does not model.
#[derive(Clone, Debug, PartialEq)]
pub struct Lossless<T> {
    raw: Map<String, Value>,
    typed: T,
}

impl<T: Serialize + DeserializeOwned> Lossless<T> {
    /// Parses `bytes` (naming the document `what` in errors).
    ///
    /// # Errors
    /// [`Error::Json`] if it is not a JSON object or does not fit `T`.
    pub fn from_slice(bytes: &[u8], what: &str) -> Result<Self> {
        let value: Value = serde_json::from_slice(bytes).map_err(Error::json(what))?;
        Self::from_value(value, what)
    }

    /// Takes a parsed document (naming it `what` in errors).
    ///
    /// # Errors
    /// [`Error::Json`] if it is not a JSON object or does not fit `T`.
    pub fn from_value(value: Value, what: &str) -> Result<Self> {
        let typed = T::deserialize(&value).map_err(Error::json(what))?;
        match value {
            Value::Object(raw) => Ok(Self { raw, typed }),
            _ => Err(Error::json(what)(serde::de::Error::custom(
                "expected a JSON object",
            ))),
        }
    }

    /// A document that is just `typed`.
    ///
    /// # Errors
    /// `T` does not serialize to a JSON object.
    pub fn new(typed: T) -> Result<Self> {
        match serde_json::to_value(&typed) {
            Ok(Value::Object(raw)) => Ok(Self { raw, typed }),
            _ => Err(Error::Internal("a document is not a JSON object".into())),
        }
    }

    /// The typed view.
    pub fn get(&self) -> &T {
        &self.typed
    }

    /// The whole document, unknown fields included.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }

    /// Changes the typed view with `f` and merges the change into the document.
    ///
    /// # Errors
    /// `T` does not serialize to JSON.
    pub fn update(&mut self, f: impl FnOnce(&mut T)) -> Result<()> {
        let before = to_value(&self.typed)?;
        f(&mut self.typed);
        let after = to_value(&self.typed)?;
        let mut raw = Value::Object(std::mem::take(&mut self.raw));
        merge(&mut raw, &before, after);
        if let Value::Object(m) = raw {
            self.raw = m;
        }
        Ok(())
    }

    /// The document as compact JSON.
    ///
    /// # Errors
    /// Never in practice (a map of JSON values always serializes).
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(&self.raw).map_err(|e| Error::Internal(e.to_string()))
    }

    /// The document as indented JSON with a final newline.
    ///
    /// # Errors
    /// Never in practice.
    pub fn to_pretty(&self) -> Result<Vec<u8>> {
        let mut v =
            serde_json::to_vec_pretty(&self.raw).map_err(|e| Error::Internal(e.to_string()))?;
        v.push(b'\n');
        Ok(v)
    }
}

impl<T: Serialize> Serialize for Lossless<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(s)
    }
}

fn to_value<T: Serialize>(t: &T) -> Result<Value> {
    serde_json::to_value(t).map_err(|e| Error::Internal(e.to_string()))
}

/// Applies the change from `before` to `after` (two serializations of the typed view) to
/// `raw`: fields in `after` are set, fields only in `before` are removed, fields in neither
/// (unknown to the type) are kept.
fn merge(raw: &mut Value, before: &Value, after: Value) {
    match (raw, after) {
        (Value::Object(raw), Value::Object(after)) => {
            if let Value::Object(before) = before {
                for k in before.keys() {
                    if !after.contains_key(k) {
                        raw.shift_remove(k);
                    }
                }
            }
            for (k, v) in after {
                let old = before.get(&k).unwrap_or(&Value::Null);
                match raw.get_mut(&k) {
                    Some(slot) => merge(slot, old, v),
                    None => {
                        raw.insert(k, v);
                    }
                }
            }
        }
        (Value::Array(raw), Value::Array(after))
            if raw.len() == after.len()
                && before.as_array().is_some_and(|b| b.len() == after.len()) =>
        {
            let before = before.as_array().map(Vec::as_slice).unwrap_or_default();
            for ((slot, old), v) in raw.iter_mut().zip(before).zip(after) {
                merge(slot, old, v);
            }
        }
        (raw, after) => *raw = after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{Descriptor, ImageManifest};
    use serde_json::json;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn manifest() -> Value {
        json!({
            "schemaVersion": 2,
            "x-top": {"keep": [1, 2]},
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D1, "size": 3, "x-config": true},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D1, "size": 3, "x-layer": "zero",
                 "annotations": {"a": "b"}},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": D2, "size": 4}
            ],
            "annotations": {"m": "n"}
        })
    }

    #[test]
    fn unchanged_documents_round_trip_exactly() {
        let v = manifest();
        let bytes = serde_json::to_vec(&v).unwrap();
        let m: Lossless<ImageManifest> = Lossless::from_slice(&bytes, "m").unwrap();
        assert_eq!(m.to_vec().unwrap(), bytes);
        assert_eq!(m.get().layers().len(), 2);
    }

    #[test]
    fn changes_keep_unknown_fields_at_every_level() {
        let mut m: Lossless<ImageManifest> = Lossless::from_value(manifest(), "m").unwrap();
        let new: Descriptor = serde_json::from_value(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
            "digest": D2, "size": 9, "annotations": {"e": "f"}
        }))
        .unwrap();
        m.update(|t| {
            if let Some(l) = t.layers_mut().first_mut() {
                *l = new.clone();
            }
            t.set_annotations(None);
        })
        .unwrap();
        let out = Value::Object(m.raw().clone());
        assert_eq!(out["x-top"], json!({"keep": [1, 2]}));
        assert_eq!(out["config"]["x-config"], json!(true));
        assert_eq!(out["layers"][0]["x-layer"], json!("zero"));
        assert_eq!(out["layers"][0]["size"], json!(9));
        assert_eq!(out["layers"][0]["annotations"], json!({"e": "f"}));
        assert_eq!(out["layers"][1], manifest()["layers"][1]);
        assert!(out.get("annotations").is_none());
        // The typed view and the document agree.
        let again: ImageManifest = serde_json::from_value(out).unwrap();
        assert_eq!(&again, m.get());
    }

    #[test]
    fn bad_documents_are_errors() {
        assert!(Lossless::<ImageManifest>::from_slice(b"[]", "m").is_err());
        assert!(Lossless::<ImageManifest>::from_slice(b"{", "m").is_err());
        assert!(Lossless::<Descriptor>::from_slice(br#"{"digest":"x"}"#, "d").is_err());
    }
}
