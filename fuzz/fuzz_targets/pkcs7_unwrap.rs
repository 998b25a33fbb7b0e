//! The PKCS#7 (CMS) key wrapper's unwrap and recipient listing on arbitrary DER, with a
//! fixed TEST-ONLY RSA key and certificate: Ok or Err, never a panic. Our own blob unwraps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocicrypt_keywrap::{DecryptConfig, EncryptConfig, KeyFile, KeyWrapper};
use ocicrypt_keywrap_pkcs7::Pkcs7KeyWrapper;

const KEY: &[u8] = include_bytes!("../../crates/ocicrypt-keywrap-pkcs7/tests/data/rsa2048.pem");
const CERT: &[u8] =
    include_bytes!("../../crates/ocicrypt-keywrap-pkcs7/tests/data/rsa2048-self.pem");

fuzz_target!(|data: &[u8]| {
    let mut dc = DecryptConfig::default();
    dc.private_keys.push(KeyFile::new(KEY.to_vec()));
    let _ = Pkcs7KeyWrapper.unwrap_key(&dc, data);
    dc.certificates.push(CERT.to_vec());
    let _ = Pkcs7KeyWrapper.unwrap_key(&dc, data);
    let _ = Pkcs7KeyWrapper.recipients(data);

    if data.len() < 256 {
        let mut ec = EncryptConfig::default();
        ec.pkcs7_certificates.push(CERT.to_vec());
        let blob = Pkcs7KeyWrapper
            .wrap_keys(&ec, data)
            .expect("wrapping for a valid certificate works")
            .expect("one recipient gives a blob");
        assert_eq!(
            Pkcs7KeyWrapper
                .unwrap_key(&dc, &blob)
                .expect("own blob")
                .expose(),
            data
        );
    }
});
