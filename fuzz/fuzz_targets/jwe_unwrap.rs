//! The JWE key wrapper's unwrap on arbitrary wrapped-key blobs, with fixed TEST-ONLY RSA and
//! EC keys: it must return Ok or Err, never panic. A blob we wrap ourselves must unwrap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocicrypt_keywrap::{DecryptConfig, EncryptConfig, KeyFile, KeyWrapper};
use ocicrypt_keywrap_jwe::JweKeyWrapper;

const RSA: &[u8] = include_bytes!("../../crates/ocicrypt-keywrap-jwe/tests/data/rsa1024.pem");
const RSA_PUB: &[u8] =
    include_bytes!("../../crates/ocicrypt-keywrap-jwe/tests/data/rsa1024.pub.pem");
const EC: &[u8] = include_bytes!("../../crates/ocicrypt-keywrap-jwe/tests/data/ec-p256-sec1.pem");

fuzz_target!(|data: &[u8]| {
    let mut dc = DecryptConfig::default();
    dc.private_keys.push(KeyFile::new(RSA.to_vec()));
    dc.private_keys.push(KeyFile::new(EC.to_vec()));
    let _ = JweKeyWrapper.unwrap_key(&dc, data);
    let _ = JweKeyWrapper.recipients(data);

    // Round trip: whatever the plaintext, our own blob unwraps to it.
    if data.len() < 512 {
        let mut ec = EncryptConfig::default();
        ec.jwe_public_keys.push(RSA_PUB.to_vec());
        let blob = JweKeyWrapper
            .wrap_keys(&ec, data)
            .expect("wrapping with a valid key works")
            .expect("one recipient gives a blob");
        let back = JweKeyWrapper
            .unwrap_key(&dc, &blob)
            .expect("own blob unwraps");
        assert_eq!(back.expose(), data);
    }
});
