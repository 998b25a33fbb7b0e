//! Password-protected private keys, read with OpenSSL, which never prompts here: a key
//! that needs a password and has none fails with [`Error::MissingPassword`], a wrong one
//! with [`Error::WrongPassword`].

use std::cell::Cell;

use openssl::error::ErrorStack;
use openssl::pkey::{PKey, Private};
use secrecy::{ExposeSecret, SecretString};

use crate::Error;

/// A DER `EncryptedPrivateKeyInfo` (PKCS#8), decrypted with `password`. `Ok(None)` if
/// `data` is not one (OpenSSL asks for the password only after it has parsed the structure).
///
/// # Errors
/// [`Error::MissingPassword`] or [`Error::WrongPassword`] of `scheme` when `data` is an
/// encrypted key that `password` does not open.
pub(super) fn encrypted_pkcs8_der(
    scheme: &str,
    data: &[u8],
    password: Option<&SecretString>,
) -> Result<Option<PKey<Private>>, Error> {
    let asked = Cell::new(false);
    let result = PKey::private_key_from_pkcs8_callback(data, |buf| {
        asked.set(true);
        match password {
            Some(p) => give_password(p, buf),
            None => Err(ErrorStack::get()),
        }
    });
    match (result, asked.get(), password) {
        (Ok(key), _, _) => Ok(Some(key)),
        (Err(_), false, _) => Ok(None),
        (Err(_), true, None) => Err(Error::MissingPassword {
            scheme: scheme.to_owned(),
        }),
        (Err(_), true, Some(_)) => Err(Error::WrongPassword {
            scheme: scheme.to_owned(),
        }),
    }
}

/// An encrypted PEM private key (legacy `Proc-Type: 4,ENCRYPTED` or `ENCRYPTED PRIVATE
/// KEY`), decrypted with `password`.
///
/// # Errors
/// [`Error::MissingPassword`] without a password, [`Error::WrongPassword`] when it does not
/// open the key (or the PEM text is not a key at all).
pub(super) fn encrypted_pem(
    scheme: &str,
    pem: &[u8],
    password: Option<&SecretString>,
) -> Result<PKey<Private>, Error> {
    let Some(password) = password else {
        return Err(Error::MissingPassword {
            scheme: scheme.to_owned(),
        });
    };
    PKey::private_key_from_pem_callback(pem, |buf| give_password(password, buf)).map_err(|_| {
        Error::WrongPassword {
            scheme: scheme.to_owned(),
        }
    })
}

/// Copies the password into OpenSSL's buffer (a password longer than the buffer fails,
/// and so is a wrong password).
fn give_password(password: &SecretString, buf: &mut [u8]) -> Result<usize, ErrorStack> {
    let pw = password.expose_secret().as_bytes();
    let dst = buf.get_mut(..pw.len()).ok_or_else(ErrorStack::get)?;
    dst.copy_from_slice(pw);
    Ok(pw.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords() {
        let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let pem = key
            .private_key_to_pem_pkcs8_passphrase(openssl::symm::Cipher::aes_256_cbc(), b"pw")
            .unwrap();
        let der = key
            .private_key_to_pkcs8_passphrase(openssl::symm::Cipher::aes_256_cbc(), b"pw")
            .unwrap();
        let right = SecretString::from("pw");
        let wrong = SecretString::from("nope");
        let same = |k: PKey<Private>| k.public_eq(&key);
        assert!(same(encrypted_pem("t", &pem, Some(&right)).unwrap()));
        assert!(same(
            encrypted_pkcs8_der("t", &der, Some(&right))
                .unwrap()
                .unwrap()
        ));
        for e in [
            encrypted_pem("t", &pem, None).unwrap_err(),
            encrypted_pkcs8_der("t", &der, None).unwrap_err(),
        ] {
            assert!(
                matches!(e, Error::MissingPassword { ref scheme } if scheme == "t"),
                "{e}"
            );
        }
        for e in [
            encrypted_pem("t", &pem, Some(&wrong)).unwrap_err(),
            encrypted_pkcs8_der("t", &der, Some(&wrong)).unwrap_err(),
        ] {
            assert!(matches!(e, Error::WrongPassword { .. }), "{e}");
        }
        // A key that is not encrypted is not this function's business.
        let plain = key.private_key_to_der().unwrap();
        assert!(encrypted_pkcs8_der("t", &plain, None).unwrap().is_none());
    }
}
