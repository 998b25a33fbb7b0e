//! Image references: where an image is read from or written to.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::registry::RegistryRef;

/// Where an image lives: an OCI image layout, `oci:PATH[:TAG]` (as skopeo writes it; the tag
/// defaults to `latest`), or an image in a registry,
/// `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]` (see [`RegistryRef`]).
///
/// ```
/// use ocicrypt_image::ImageRef;
/// let r: ImageRef = "oci:/tmp/image:v1".parse()?;
/// assert_eq!(r.to_string(), "oci:/tmp/image:v1");
/// assert!("bogus:/x".parse::<ImageRef>().is_err());
/// # Ok::<(), ocicrypt_image::ParseRefError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ImageRef {
    /// An OCI image layout directory and a tag in its `index.json`.
    Oci {
        /// The layout's directory.
        path: PathBuf,
        /// The tag (`org.opencontainers.image.ref.name`).
        tag: String,
    },
    /// An image in a registry.
    Docker(RegistryRef),
}

impl ImageRef {
    /// `oci:PATH:TAG`.
    ///
    /// # Errors
    /// The tag is not a valid tag.
    pub fn oci(path: impl Into<PathBuf>, tag: &str) -> Result<Self, ParseRefError> {
        check_tag(tag, tag)?;
        Ok(Self::Oci {
            path: path.into(),
            tag: tag.to_owned(),
        })
    }

    /// The layout directory of an `oci:` reference.
    pub fn layout_path(&self) -> Option<&Path> {
        match self {
            Self::Oci { path, .. } => Some(path),
            Self::Docker(_) => None,
        }
    }
}

/// Why a string is not an [`ImageRef`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseRefError {
    /// Not a transport we know.
    #[error(
        "{reference:?}: not an image reference; write oci:PATH[:TAG] or docker://HOST[:PORT]/REPO[:TAG|@DIGEST]"
    )]
    UnknownTransport {
        /// The reference as given.
        reference: String,
    },
    /// `oci:` with nothing after it.
    #[error("{reference:?}: the layout path is empty")]
    EmptyPath {
        /// The reference as given.
        reference: String,
    },
    /// A `docker://` reference that does not parse.
    #[error("{reference:?} is not a valid registry reference: {reason}")]
    InvalidRegistryRef {
        /// The reference as given.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// The tag has characters or a length that tags may not have.
    #[error("{reference:?}: {tag:?} is not a valid tag")]
    InvalidTag {
        /// The reference as given.
        reference: String,
        /// The tag.
        tag: String,
    },
}

fn check_tag(reference: &str, tag: &str) -> Result<(), ParseRefError> {
    let valid = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if valid {
        Ok(())
    } else {
        Err(ParseRefError::InvalidTag {
            reference: reference.to_owned(),
            tag: tag.to_owned(),
        })
    }
}

impl FromStr for ImageRef {
    type Err = ParseRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.starts_with("docker:") {
            return s.parse().map(Self::Docker);
        }
        let Some(rest) = s.strip_prefix("oci:") else {
            return Err(ParseRefError::UnknownTransport {
                reference: s.to_owned(),
            });
        };
        let (path, tag) = match rest.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') && !p.is_empty() => (p, t),
            _ => (rest, "latest"),
        };
        if path.is_empty() {
            return Err(ParseRefError::EmptyPath {
                reference: s.to_owned(),
            });
        }
        check_tag(s, tag)?;
        Ok(Self::Oci {
            path: PathBuf::from(path),
            tag: tag.to_owned(),
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Oci { path, tag } => write!(f, "oci:{}:{tag}", path.display()),
            Self::Docker(r) => r.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oci(s: &str) -> (String, String) {
        match s.parse::<ImageRef>().unwrap() {
            ImageRef::Oci { path, tag } => (path.to_string_lossy().into_owned(), tag),
            ImageRef::Docker(r) => panic!("{r} is not a layout"),
        }
    }

    fn parse_err(s: &str) -> ParseRefError {
        s.parse::<ImageRef>().unwrap_err()
    }

    #[test]
    fn image_refs() {
        assert_eq!(oci("oci:/tmp/x"), ("/tmp/x".into(), "latest".into()));
        assert_eq!(oci("oci:/tmp/a:b:v1.2"), ("/tmp/a:b".into(), "v1.2".into()));
        assert_eq!(oci("oci:rel/dir:tag"), ("rel/dir".into(), "tag".into()));
        assert!(matches!(
            "docker://localhost:5000/x".parse::<ImageRef>(),
            Ok(ImageRef::Docker(_))
        ));
        assert!(matches!(
            parse_err("docker:x"),
            ParseRefError::InvalidRegistryRef { .. }
        ));
        assert!(matches!(
            parse_err("dir:/x"),
            ParseRefError::UnknownTransport { .. }
        ));
        assert!(matches!(parse_err("oci:"), ParseRefError::EmptyPath { .. }));
        assert!(matches!(
            parse_err("oci:/x:bad tag"),
            ParseRefError::InvalidTag { .. }
        ));
        assert!(ImageRef::oci("/x", "v1").is_ok());
        assert!(ImageRef::oci("/x", "").is_err());
    }
}
