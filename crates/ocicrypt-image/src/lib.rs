#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod digest;
mod error;
pub mod file;
mod fsx;
pub mod graph;
mod image;
pub mod layout;
pub mod lossless;
mod options;
mod pipe;
mod reference;
pub mod registry;
pub mod transport;

pub use error::{Error, Result};
pub use file::{PlainLayer, decrypt_file, encrypt_file, rotate_file};
pub use fsx::{STALE_AFTER, Staged, remove_stale, remove_temporaries, write_atomic};
pub use image::{
    ImageInfo, LayerEntry, ManifestInfo, Report, decrypt, encrypt, inspect, inspect_keys,
    inspect_source, inspect_with, rewrap, rotate,
};
pub use lossless::Lossless;
pub use options::{Options, Progress, ProgressFn};
pub use reference::{ImageRef, ParseRefError};

pub use oci_spec;
pub use ocicrypt;
