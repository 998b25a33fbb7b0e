#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod annotations;
mod error;
mod gojson;
pub mod media_types;
pub mod options;
pub mod secret;

pub use error::Error;
pub use gojson::to_go_json;
