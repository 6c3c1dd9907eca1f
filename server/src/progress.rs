//! A progress bar for recovery, shown only when it takes more than a second
//! (and only on a terminal: indicatif draws nothing otherwise).

use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use stockd_engine::RecoveryProgress;

/// Runs `work`, drawing `progress` if it is still running after a second.
pub fn with_recovery_bar<T>(progress: &Arc<RecoveryProgress>, work: impl FnOnce() -> T) -> T {
    let (done_tx, done) = std::sync::mpsc::channel::<()>();
    let watcher = {
        let progress = Arc::clone(progress);
        std::thread::spawn(move || {
            if done.recv_timeout(Duration::from_secs(1)).is_ok() {
                return;
            }
            let bar = ProgressBar::new(progress.bytes_total.load(Ordering::Relaxed).max(1));
            bar.set_style(
                ProgressStyle::with_template("replaying the WAL {bar:40} {bytes}/{total_bytes} {msg} eta {eta}")
                    .expect("a valid template"),
            );
            loop {
                bar.set_position(progress.bytes_read.load(Ordering::Relaxed));
                bar.set_message(format!("{} records", progress.records.load(Ordering::Relaxed)));
                if done.recv_timeout(Duration::from_millis(100)).is_ok() {
                    bar.finish_and_clear();
                    return;
                }
            }
        })
    };
    let result = work();
    let _ = done_tx.send(());
    watcher.join().expect("the progress thread does not panic");
    result
}
