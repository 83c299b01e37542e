//! Ctrl-C, and the SIGTERM or SIGHUP a scheduler or a closing terminal sends: each raises the
//! stop flag of what is running (checkpoints are written first), and the exit status then says
//! which signal it was, 128 + its number as shells report it (130, 143, 129).

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// The signals that stop a run, and which arrived last.
pub struct Stopper {
    last: Arc<AtomicUsize>,
}

/// Makes SIGINT, SIGTERM and SIGHUP raise `stop` (instead of ending the process).
pub fn stop_on_signals(stop: &Arc<AtomicBool>) -> Stopper {
    let last = Arc::new(AtomicUsize::new(0));
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        // Registration fails only for signals that cannot be caught, which these are not.
        let _ = signal_hook::flag::register(signal, stop.clone());
        let _ = signal_hook::flag::register_usize(signal, last.clone(), signal as usize);
    }
    Stopper { last }
}

impl Stopper {
    /// The exit status after a stop: 128 + the signal's number (130 for a stop raised some
    /// other way).
    pub fn exit_code(&self) -> u8 {
        let signal = match self.last.load(Ordering::SeqCst) {
            0 => SIGINT as usize,
            s => s,
        };
        128 + signal as u8
    }
}
