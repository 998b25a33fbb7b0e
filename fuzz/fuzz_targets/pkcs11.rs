//! PKCS#11 input from outside: RFC 7512 URIs, key files, module policies and wrapped-key
//! JSON blobs (unwrapped with a key file whose module the policy forbids, so no module is
//! ever loaded). Ok or Err, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocicrypt_keywrap::{DecryptConfig, KeyWrapper, SecretBytes};
use ocicrypt_keywrap_pkcs11::{Pkcs11Config, Pkcs11KeyFile, Pkcs11KeyWrapper, Pkcs11Uri};

const KEY_FILE: &[u8] =
    b"pkcs11:\n  uri: pkcs11:token=t;object=k;type=private?module-path=/nonexistent/lib.so&pin-value=1\n";

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(uri) = Pkcs11Uri::parse(s) {
            let _ = uri.to_string();
        }
    }
    let _ = Pkcs11KeyFile::parse(data);
    let _ = Pkcs11Config::from_yaml(data);
    let mut dc = DecryptConfig::default();
    dc.pkcs11_yamls.push(SecretBytes::copy_from(KEY_FILE));
    dc.pkcs11_config = Some(b"module-directories: []\nallowed-module-paths: []\n".to_vec());
    let _ = Pkcs11KeyWrapper::new().unwrap_key(&dc, data);
});
