//! One layer blob from a file to a file (what `ocicrypt layer encrypt|decrypt` do).
//!
//! The input is read on a thread of its own, the output written and hashed on another,
//! beside the cipher's; the output is written under a temporary name and renamed into place
//! only after the HMAC and the digests were checked.

use std::fs::File;
use std::path::Path;

use oci_spec::image::{Descriptor, MediaType};
use ocicrypt::{DecryptConfig, EncryptConfig, Encrypted};

use crate::fsx::Staged;
use crate::options::{Counting, Progress};
use crate::pipe::{Input, Output};
use crate::transport::{check_digest, check_size, sha256_digest};
use crate::{Error, Options, Result};

/// The plain layer to encrypt: described by its descriptor (whose digest and size are
/// checked against the data), or only by its media type (its digest is computed).
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum PlainLayer<'a> {
    /// The layer's descriptor.
    Described(&'a Descriptor),
    /// No descriptor: the media type of the plain data.
    Undescribed(&'a MediaType),
}

fn open(path: &Path) -> Result<(File, u64)> {
    let f = File::open(path).map_err(Error::io(format!("cannot open {}", path.display())))?;
    let len = f
        .metadata()
        .map_err(Error::io(format!("cannot stat {}", path.display())))?
        .len();
    Ok((f, len))
}

/// Removes what killed runs left beside `output` (see [`crate::remove_stale`]).
fn tidy(output: &Path) {
    match output.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => crate::remove_stale(dir),
        _ => crate::remove_stale(Path::new(".")),
    }
}

/// Whether a file command reads, writes and hashes on helper threads beside the cipher's:
/// when it may keep more than one CPU busy ([`Options::jobs`]).
fn helpers(options: &Options) -> bool {
    options.jobs.get() > 1
}

/// Opens the input (on a read-ahead thread with [`helpers`]); `start` reports the start of
/// the layer.
fn input(path: &Path, hash: bool, start: bool, options: &Options) -> Result<(Input, u64)> {
    let (file, len) = open(path)?;
    if start {
        options.report(Progress::LayerStarted {
            id: 0,
            total: 1,
            size: len,
        });
    }
    let counting = Counting {
        inner: file,
        id: 0,
        options: options.clone(),
    };
    let input = Input::open(counting, hash, helpers(options)).map_err(read_err(path))?;
    Ok((input, len))
}

/// Encrypts the layer blob `input` for the recipients of `ec` into the file `output`;
/// returns the encrypted blob's descriptor. If the layer is encrypted already (its
/// descriptor has wrapped keys), the recipients are added with a key of `ec.decrypt` and the
/// data is copied as it is (its digest checked).
///
/// # Errors
/// The input does not match its descriptor, a recipient or key fails, or the output
/// cannot be written (it is then left as it was).
pub fn encrypt_file(
    input_path: &Path,
    output_path: &Path,
    plain: PlainLayer<'_>,
    ec: &EncryptConfig,
    options: &Options,
) -> Result<Descriptor> {
    let ctx = &options.ocicrypt;
    tidy(output_path);
    let (input, len) = input(input_path, false, true, options)?;
    let mut out = Output::open(Staged::new(output_path)?, true, helpers(options))
        .map_err(Error::io(format!("cannot write {}", output_path.display())))?;
    let write_err = || Error::io(format!("cannot write {}", output_path.display()));
    let encrypted = |enc: &mut dyn std::io::Read, out: &mut Output<Staged>| {
        out.copy_from(enc)
            .map_err(Error::stream("encryption failed"))
    };
    let result = match plain {
        PlainLayer::Described(base) => {
            check_size(base, len)?;
            match ctx.encrypt_layer(ec, input, base)? {
                Encrypted::Stream(enc) => {
                    let mut enc = enc.parallel(helpers(options));
                    encrypted(&mut enc, &mut out)?;
                    let (staged, written) = out.finish().map_err(write_err())?;
                    let digest = sha256_digest(&written.digest.unwrap_or_default())?;
                    (staged, enc.finalize_descriptor(digest, written.len)?)
                }
                Encrypted::RecipientsAdded(ann) => {
                    let (mut r, _) = self::input(input_path, true, false, options)?;
                    out.copy_from(&mut r).map_err(write_err())?;
                    check_digest(base, r.finish().map_err(read_err(input_path))?.digest)?;
                    let (staged, _) = out.finish().map_err(write_err())?;
                    (staged, ocicrypt::descriptor::rewrapped(base, &ann))
                }
            }
        }
        PlainLayer::Undescribed(media_type) => {
            let mut enc = ctx
                .encrypt_stream(ec, input)?
                .media_type(media_type.clone())
                .parallel(helpers(options));
            encrypted(&mut enc, &mut out)?;
            let (staged, written) = out.finish().map_err(write_err())?;
            let digest = sha256_digest(&written.digest.unwrap_or_default())?;
            (staged, enc.finalize_descriptor(digest, written.len)?)
        }
    };
    options.report(Progress::LayerFinished { id: 0 });
    let (staged, desc) = result;
    staged.commit()?;
    Ok(desc)
}

/// The error of opening or finishing to read `path`.
fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    Error::io(format!("cannot read {}", path.display()))
}

/// Opens the encrypted layer blob `input_path` (checked against `desc`'s digest and size as
/// it is read) and the staged output `output_path` (hashed if `hash`): for [`decrypt_file`]
/// and [`rotate_file`].
fn open_encrypted(
    input_path: &Path,
    output_path: &Path,
    desc: &Descriptor,
    hash: bool,
    options: &Options,
) -> Result<(Input, Output<Staged>)> {
    crate::digest::checked(desc.digest())?;
    tidy(output_path);
    let (input, len) = input(input_path, true, true, options)?;
    check_size(desc, len)?;
    let out = Output::open(Staged::new(output_path)?, hash, helpers(options))
        .map_err(Error::io(format!("cannot write {}", output_path.display())))?;
    Ok((input, out))
}

/// Decrypts the layer blob `input` (described by `desc`) with the keys of `dc` into the
/// file `output`; returns the plain blob's descriptor. The output appears only after the
/// HMAC, the plaintext digest and the blob's digest were checked.
///
/// # Errors
/// The input does not match `desc`, no key opens the layer, the data fails
/// authentication, or the output cannot be written (it is then left as it was).
pub fn decrypt_file(
    input_path: &Path,
    output_path: &Path,
    desc: &Descriptor,
    dc: &DecryptConfig,
    options: &Options,
) -> Result<Descriptor> {
    let (mut input, mut out) = open_encrypted(input_path, output_path, desc, false, options)?;
    let write_err = || Error::io(format!("cannot write {}", output_path.display()));
    let plain = {
        let mut dec = options
            .ocicrypt
            .decrypt_layer(dc, &mut input, desc)?
            .parallel(helpers(options));
        out.copy_from(&mut dec)
            .map_err(Error::stream("decryption failed"))?;
        dec.descriptor()
    };
    options.report(Progress::LayerFinished { id: 0 });
    check_digest(desc, input.finish().map_err(read_err(input_path))?.digest)?;
    // The decrypting reader computed and checked the plaintext digest at the end of the
    // stream; it is the digest of exactly the bytes written.
    let plain = plain
        .ok_or_else(|| Error::Internal("decryption ended without a verified digest".into()))?;
    let (staged, _) = out.finish().map_err(write_err())?;
    staged.commit()?;
    Ok(plain)
}

/// Re-encrypts the encrypted layer blob `input` (described by `desc`) under a fresh layer key
/// for exactly the recipients of `ec` (unwrapping with `ec.decrypt`) into the file `output`,
/// in one streaming pass; returns the new blob's descriptor. The old blob's digest and HMAC
/// and the plaintext digest are checked before the output appears.
///
/// # Errors
/// As [`decrypt_file`]; a recipient that cannot be wrapped for.
pub fn rotate_file(
    input_path: &Path,
    output_path: &Path,
    desc: &Descriptor,
    ec: &EncryptConfig,
    options: &Options,
) -> Result<Descriptor> {
    let (mut input, mut out) = open_encrypted(input_path, output_path, desc, true, options)?;
    let write_err = || Error::io(format!("cannot write {}", output_path.display()));
    let (staged, new) = {
        let mut enc = options
            .ocicrypt
            .rotate_layer(ec, &mut input, desc)?
            .parallel_both(helpers(options));
        out.copy_from(&mut enc)
            .map_err(Error::stream("rotation failed"))?;
        let (staged, written) = out.finish().map_err(write_err())?;
        let digest = sha256_digest(&written.digest.unwrap_or_default())?;
        (staged, enc.finalize_descriptor(digest, written.len)?)
    };
    options.report(Progress::LayerFinished { id: 0 });
    check_digest(desc, input.finish().map_err(read_err(input_path))?.digest)?;
    staged.commit()?;
    Ok(new)
}
