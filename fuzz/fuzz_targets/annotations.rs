//! Annotation values: splitting a wrapped-keys list and parsing a pubopts value never panic on
//! arbitrary strings, and split blobs re-encode to a list that splits the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocicrypt_spec::annotations::{self, encode_blob, split_blobs};
use ocicrypt_spec::options::PublicOptions;

fuzz_target!(|value: &str| {
    let key = annotations::keys_annotation("jwe");
    if let Ok(blobs) = split_blobs(&key, value) {
        let joined = blobs
            .iter()
            .map(|b| encode_blob(b))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            split_blobs(&key, &joined).expect("own encoding splits"),
            blobs
        );
    }
    if let Ok(public) = PublicOptions::from_annotation(value) {
        let again =
            PublicOptions::from_annotation(&public.to_annotation()).expect("own value parses");
        assert_eq!(public, again);
    }
});
