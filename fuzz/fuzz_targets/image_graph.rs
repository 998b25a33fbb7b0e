//! The image-graph walker on arbitrary indexes and manifests: documents separated by 0xff
//! bytes (never part of JSON text), the first one the root. Any sha256 digest resolves to a
//! document (picked by its first hex digits), so the fuzzer can build any graph, cycles and
//! diamonds included, without forging hashes. The walk must end within its limits, never
//! panic, and never read a document more often than the limits allow. Any document that
//! parses as a manifest must also round-trip through `Lossless` unchanged.
#![no_main]

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};

use libfuzzer_sys::fuzz_target;
use ocicrypt_image::oci_spec::image::{Descriptor, ImageManifest, MediaType};
use ocicrypt_image::transport::Source;
use ocicrypt_image::{Error, Lossless, Options, Result};

#[derive(Debug)]
struct Memory<'a> {
    docs: Vec<&'a [u8]>,
    reads: AtomicUsize,
}

impl Memory<'_> {
    fn doc(&self, desc: &Descriptor) -> &[u8] {
        let hex = desc.digest().digest();
        let n = usize::from_str_radix(hex.get(..8).unwrap_or("0"), 16).unwrap_or(0);
        self.docs
            .get(n % self.docs.len().max(1))
            .copied()
            .unwrap_or_default()
    }
}

impl Source for Memory<'_> {
    fn root(&self) -> Result<Lossless<Descriptor>> {
        let root = Descriptor::new(
            MediaType::ImageIndex,
            self.docs.first().map_or(0, |d| d.len() as u64),
            format!("sha256:{}", "0".repeat(64))
                .parse::<ocicrypt_image::oci_spec::image::Digest>()
                .map_err(|e| Error::Internal(e.to_string()))?,
        );
        Lossless::new(root)
    }

    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send>> {
        Ok(Box::new(std::io::Cursor::new(self.doc(desc).to_vec())))
    }

    // No digest check: the fuzzer cannot forge SHA-256, and the walk is what is tested.
    fn read_document(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(self.doc(desc).to_vec())
    }
}

fuzz_target!(|data: &[u8]| {
    let docs: Vec<&[u8]> = data.split(|b| *b == 0xff).collect();
    for d in &docs {
        if let Ok(m) = Lossless::<ImageManifest>::from_slice(d, "fuzz") {
            let v: serde_json::Value = serde_json::from_slice(d).expect("parsed once");
            assert_eq!(
                m.to_vec().expect("serializes"),
                serde_json::to_vec(&v).unwrap()
            );
        }
    }
    let source = Memory {
        docs,
        reads: AtomicUsize::new(0),
    };
    let _ = ocicrypt_image::inspect_source(&source, "fuzz", &Options::default());
    assert!(source.reads.load(Ordering::Relaxed) <= ocicrypt_image::graph::MAX_DOCUMENTS);
});
