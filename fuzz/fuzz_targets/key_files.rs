//! The key loader all schemes share (`ocicrypt_keywrap::keys`) on arbitrary bytes: PEM,
//! DER and JWK readers, with and without a password, and the classifiers: Ok or Err,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocicrypt_keywrap::keys;
use ocicrypt_keywrap::secrecy::SecretString;

fuzz_target!(|data: &[u8]| {
    let _ = keys::parse_private_key("fuzz", data, None);
    let _ = keys::parse_private_key("fuzz", data, Some(&SecretString::from("password")));
    let _ = keys::parse_public_key(data);
    let _ = keys::parse_certificate(data);
    let _ = (
        keys::is_private_key(data),
        keys::is_public_key(data),
        keys::is_certificate(data),
    );
});
