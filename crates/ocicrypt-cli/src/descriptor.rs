//! OCI descriptors kept as JSON (so unknown fields survive), converted to `oci_spec`
//! descriptors for the library.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use ocicrypt::Descriptor;
use serde_json::{Map, Value};

/// A descriptor as a JSON object.
#[derive(Clone, Debug)]
pub(crate) struct DescJson(pub(crate) Map<String, Value>);

impl DescJson {
    pub(crate) fn from_value(v: Value, what: &str) -> Result<Self> {
        match v {
            Value::Object(m) => {
                let d = Self(m);
                d.to_oci()
                    .with_context(|| format!("{what} is not a valid OCI descriptor"))?;
                Ok(d)
            }
            _ => bail!("{what} is not a JSON object"),
        }
    }

    pub(crate) fn new(media_type: &str, digest: &str, size: u64) -> Self {
        let mut m = Map::new();
        m.insert("mediaType".into(), media_type.into());
        m.insert("digest".into(), digest.into());
        m.insert("size".into(), size.into());
        Self(m)
    }

    pub(crate) fn to_oci(&self) -> Result<Descriptor> {
        Ok(serde_json::from_value(Value::Object(self.0.clone()))?)
    }

    pub(crate) fn media_type(&self) -> &str {
        self.0
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub(crate) fn digest(&self) -> &str {
        self.0
            .get("digest")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub(crate) fn size(&self) -> u64 {
        self.0
            .get("size")
            .and_then(Value::as_u64)
            .unwrap_or_default()
    }

    pub(crate) fn annotations(&self) -> BTreeMap<String, String> {
        self.0
            .get("annotations")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sets the content fields; `annotations` replaces the old ones (sorted; the field is
    /// dropped when empty).
    pub(crate) fn set(
        &mut self,
        media_type: &str,
        digest: &str,
        size: u64,
        annotations: BTreeMap<String, String>,
    ) {
        self.0.insert("mediaType".into(), media_type.into());
        self.0.insert("digest".into(), digest.into());
        self.0.insert("size".into(), size.into());
        if annotations.is_empty() {
            self.0.remove("annotations");
        } else {
            let m: Map<String, Value> = annotations
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect();
            self.0.insert("annotations".into(), Value::Object(m));
        }
    }

    pub(crate) fn to_pretty(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(&self.0).unwrap_or_default();
        v.push(b'\n');
        v
    }
}
