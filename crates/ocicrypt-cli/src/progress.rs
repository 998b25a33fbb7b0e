//! Progress bars on a terminal (nothing when stderr is not one), fed by the library's
//! progress reports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ocicrypt_image::Progress;

/// A byte-count progress bar drawn on stderr if it is a terminal.
fn bar(total: u64, what: String) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what);
    bar
}

/// A progress callback that draws one bar per layer in progress; `label` names a layer
/// from its number and the number of layers.
pub(crate) fn bars(
    label: impl Fn(usize, usize) -> String + Send + Sync + 'static,
) -> impl Fn(&Progress) + Send + Sync + 'static {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let live: Arc<Mutex<HashMap<usize, ProgressBar>>> = Arc::default();
    move |p| {
        let mut live = live.lock().unwrap_or_else(PoisonError::into_inner);
        match *p {
            Progress::LayerStarted { id, total, size } => {
                live.insert(id, multi.add(bar(size, label(id, total))));
            }
            Progress::LayerRead { id, bytes } => {
                if let Some(b) = live.get(&id) {
                    b.inc(bytes);
                }
            }
            Progress::LayerFinished { id } => {
                if let Some(b) = live.remove(&id) {
                    b.finish_and_clear();
                }
            }
            _ => {}
        }
    }
}
