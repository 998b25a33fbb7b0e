//! The OpenPGP key wrapper's unwrap, key ids and recipients on arbitrary packets, with a
//! fixed TEST-ONLY secret key: Ok or Err, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocicrypt_keywrap::{DecryptConfig, KeyFile, KeyWrapper};
use ocicrypt_keywrap_pgp::PgpKeyWrapper;

const SECRET: &[u8] = include_bytes!("../../crates/ocicrypt-keywrap-pgp/tests/data/bob.sec.gpg");

fuzz_target!(|data: &[u8]| {
    let mut dc = DecryptConfig::default();
    dc.gpg_private_keys.push(KeyFile::new(SECRET.to_vec()));
    let _ = PgpKeyWrapper.unwrap_key(&dc, data);
    let _ = PgpKeyWrapper.key_ids(data);
    let _ = PgpKeyWrapper.recipients(data);
    let _ = ocicrypt_keywrap_pgp::is_secret_key(data);
});
