//! Key-provider input from outside: the configuration file and provider replies (and
//! requests, which the SDK parses). Ok or Err, never a panic; what parses re-serializes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocicrypt_keyprovider::Config;
use ocicrypt_keyprovider::protocol::{ProtocolInput, ProtocolOutput};

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = Config::from_json(data) {
        for (name, provider) in &config.key_providers {
            let _ = provider.invocation(name);
        }
    }
    if let Ok(reply) = ProtocolOutput::from_json(data) {
        let json = reply.to_json().expect("a parsed reply serializes");
        ProtocolOutput::from_json(&json).expect("own reply parses");
    }
    if let Ok(request) = ProtocolInput::from_json(data) {
        let json = request.to_json().expect("a parsed request serializes");
        ProtocolInput::from_json(&json).expect("own request parses");
    }
});
