//! Public and private option JSON: parsing arbitrary bytes never panics, and whatever parses
//! survives a `to_json` / `from_json` round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocicrypt_spec::options::{PrivateOptions, PublicOptions};

fuzz_target!(|data: &[u8]| {
    if let Ok(public) = PublicOptions::from_json(data) {
        let again = PublicOptions::from_json(&public.to_json()).expect("own JSON parses");
        assert_eq!(public, again);
    }
    if let Ok(private) = PrivateOptions::from_json(data) {
        let again = PrivateOptions::from_json(private.to_json().expose()).expect("own JSON parses");
        assert_eq!(private, again);
    }
});
