//! What to change in an image, how much work to do at once, and how to report progress.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;

use oci_spec::image::Platform;

use crate::registry::RegistryOptions;
use crate::{Error, Result};

/// Progress of an image operation, as reported to [`Options::progress`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress {
    /// A layer is about to be encrypted or decrypted.
    LayerStarted {
        /// Which layer of the operation (0-based, unique per operation).
        id: usize,
        /// How many layers the operation processes.
        total: usize,
        /// The layer blob's size in bytes.
        size: u64,
    },
    /// More of a layer was read.
    LayerRead {
        /// As in [`Progress::LayerStarted`].
        id: usize,
        /// Bytes read since the last report.
        bytes: u64,
    },
    /// A layer is done (or failed).
    LayerFinished {
        /// As in [`Progress::LayerStarted`].
        id: usize,
    },
}

/// A progress callback; called from the worker threads.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Options of [`encrypt`](crate::encrypt), [`decrypt`](crate::decrypt) and
/// [`inspect`](crate::inspect).
///
/// ```
/// use ocicrypt_image::Options;
/// let options = Options::default().layers([-1]).platforms(["linux/amd64"]).jobs(2);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct Options {
    pub(crate) layers: Vec<i64>,
    pub(crate) platforms: Vec<String>,
    pub(crate) jobs: NonZeroUsize,
    pub(crate) progress: Option<ProgressFn>,
    pub(crate) ocicrypt: ocicrypt::Ocicrypt,
    pub(crate) source_registry: RegistryOptions,
    pub(crate) destination_registry: RegistryOptions,
}

impl Default for Options {
    /// Every layer of every platform, one job (the library starts no thread unless asked:
    /// see [`jobs`](Options::jobs)), no progress reports, and every scheme compiled in
    /// ([`ocicrypt::Ocicrypt::default`]).
    fn default() -> Self {
        Self {
            layers: Vec::new(),
            platforms: Vec::new(),
            jobs: NonZeroUsize::MIN,
            progress: None,
            ocicrypt: ocicrypt::Ocicrypt::default(),
            source_registry: RegistryOptions::default(),
            destination_registry: RegistryOptions::default(),
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("layers", &self.layers)
            .field("platforms", &self.platforms)
            .field("jobs", &self.jobs)
            .field("progress", &self.progress.is_some())
            .field("ocicrypt", &self.ocicrypt)
            .field("source_registry", &self.source_registry)
            .field("destination_registry", &self.destination_registry)
            .finish()
    }
}

impl Options {
    /// Only these layers of each image: 0 is the bottom, negative numbers count from the
    /// top (-1 is the top layer). Default: all. The others are copied unchanged.
    #[must_use]
    pub fn layers(mut self, layers: impl IntoIterator<Item = i64>) -> Self {
        self.layers = layers.into_iter().collect();
        self
    }

    /// Only the images of these platforms (`OS/ARCH` or `OS/ARCH/VARIANT`) of a
    /// multi-platform index. Default: all. The others are copied unchanged. A malformed
    /// platform fails the operation before it reads anything.
    #[must_use]
    pub fn platforms(mut self, platforms: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        self.platforms = platforms
            .into_iter()
            .map(|p| p.as_ref().to_owned())
            .collect();
        self
    }

    /// How many CPUs to keep busy: that many layers at once, each on one thread; the last
    /// layers (fewer than `jobs` left) also read, write and hash on helper threads. With
    /// 1, everything runs on the calling thread. 0 is taken as 1. Default: 1 (the library
    /// starts no thread unless asked); `std::thread::available_parallelism()` is what a
    /// tool would usually ask for, as the `ocicrypt` command does.
    #[must_use]
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = NonZeroUsize::new(jobs).unwrap_or(NonZeroUsize::MIN);
        self
    }

    /// Calls `f` as layers start, progress and finish (from the worker threads).
    #[must_use]
    pub fn progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// The key-wrap schemes to use (for instance a registry with key providers, see
    /// [`ocicrypt::Registry::from_env`]). Default: every scheme compiled in.
    #[must_use]
    pub fn ocicrypt(mut self, ocicrypt: ocicrypt::Ocicrypt) -> Self {
        self.ocicrypt = ocicrypt;
        self
    }

    /// How to reach the source when it is a registry (and the image [`inspect`](crate::inspect)
    /// reads). Default: [`RegistryOptions::default`].
    #[must_use]
    pub fn source_registry(mut self, registry: RegistryOptions) -> Self {
        self.source_registry = registry;
        self
    }

    /// How to reach the destination when it is a registry. Default:
    /// [`RegistryOptions::default`].
    #[must_use]
    pub fn destination_registry(mut self, registry: RegistryOptions) -> Self {
        self.destination_registry = registry;
        self
    }

    pub(crate) fn report(&self, p: Progress) {
        if let Some(f) = &self.progress {
            f(&p);
        }
    }

    /// The platforms, parsed.
    pub(crate) fn platform_filter(&self) -> Result<Vec<PlatformSpec>> {
        self.platforms
            .iter()
            .map(|p| PlatformSpec::parse(p))
            .collect()
    }

    /// Which of `n` layers are selected.
    pub(crate) fn selected_layers(&self, n: usize) -> Result<Vec<bool>> {
        if self.layers.is_empty() {
            return Ok(vec![true; n]);
        }
        let mut out = vec![false; n];
        let count = i64::try_from(n).unwrap_or(i64::MAX);
        for &l in &self.layers {
            let i = if l < 0 { count + l } else { l };
            match usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
                Some(slot) => *slot = true,
                None => return Err(Error::LayerOutOfRange { layer: l, count: n }),
            }
        }
        Ok(out)
    }
}

/// Reports what passes through it as [`Progress::LayerRead`] of layer `id`.
pub(crate) struct Counting<R> {
    pub(crate) inner: R,
    pub(crate) id: usize,
    pub(crate) options: Options,
}

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.options.report(Progress::LayerRead {
                id: self.id,
                bytes: n as u64,
            });
        }
        Ok(n)
    }
}

/// `OS/ARCH[/VARIANT]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PlatformSpec {
    os: String,
    arch: String,
    variant: Option<String>,
}

impl PlatformSpec {
    fn parse(p: &str) -> Result<Self> {
        let parts: Vec<&str> = p.split('/').collect();
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] if !variant.is_empty() => (*os, *arch, Some(*variant)),
            _ => ("", "", None),
        };
        if os.is_empty() || arch.is_empty() {
            return Err(Error::InvalidPlatform { spec: p.to_owned() });
        }
        Ok(Self {
            os: os.to_owned(),
            arch: arch.to_owned(),
            variant: variant.map(str::to_owned),
        })
    }

    /// Whether an index entry's platform matches (no platform matches nothing).
    pub(crate) fn matches(&self, platform: Option<&Platform>) -> bool {
        let Some(p) = platform else {
            return false;
        };
        self.os == p.os().to_string()
            && self.arch == p.architecture().to_string()
            && self
                .variant
                .as_ref()
                .is_none_or(|v| Some(v) == p.variant().as_ref())
    }
}

/// Whether an index entry with `platform` is selected by `filter` (empty: all are).
pub(crate) fn platform_selected(filter: &[PlatformSpec], platform: Option<&Platform>) -> bool {
    filter.is_empty() || filter.iter().any(|f| f.matches(platform))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_selection() {
        let o = |l: &[i64]| Options::default().layers(l.to_vec());
        assert_eq!(o(&[]).selected_layers(3).unwrap(), vec![true; 3]);
        assert_eq!(
            o(&[-1]).selected_layers(3).unwrap(),
            vec![false, false, true]
        );
        assert_eq!(
            o(&[0, -1]).selected_layers(3).unwrap(),
            vec![true, false, true]
        );
        assert!(matches!(
            o(&[3]).selected_layers(3),
            Err(Error::LayerOutOfRange { layer: 3, count: 3 })
        ));
        assert!(o(&[-4]).selected_layers(3).is_err());
        assert!(o(&[i64::MIN]).selected_layers(3).is_err());
    }

    #[test]
    fn platforms() {
        let p: Platform = serde_json::from_value(
            serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"}),
        )
        .unwrap();
        let q: Platform =
            serde_json::from_value(serde_json::json!({"os": "linux", "architecture": "amd64"}))
                .unwrap();
        let f = Options::default()
            .platforms(["linux/arm64/v8"])
            .platform_filter()
            .unwrap();
        assert!(platform_selected(&f, Some(&p)));
        assert!(!platform_selected(&f, Some(&q)));
        assert!(!platform_selected(&f, None));
        let f = Options::default()
            .platforms(["linux/arm64"])
            .platform_filter()
            .unwrap();
        assert!(platform_selected(&f, Some(&p)));
        assert!(platform_selected(&[], None));
        for bad in ["linux", "linux/", "/amd64", "linux/amd64/", "a/b/c/d"] {
            assert!(
                Options::default()
                    .platforms([bad])
                    .platform_filter()
                    .is_err(),
                "{bad}"
            );
        }
    }
}
