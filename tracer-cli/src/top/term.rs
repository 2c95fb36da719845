//! The terminal while `tracer top` runs: raw mode, the alternate screen, no
//! cursor, and stderr set aside — and all of it put back on every way out (a
//! normal quit, an error, a panic on any thread, SIGTERM through the normal
//! quit), so the shell is left as it was.
//!
//! Anything written to stderr while the view is up (the session's status lines,
//! a warning, a panic message) would land in the middle of the drawing: it is
//! captured in a memory file instead and printed once the terminal is restored.

use std::{
    fs::File,
    io::{self, Read as _, Seek as _, Write as _},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{Mutex, Once},
};

use anyhow::Context as _;
use ratatui::{
    Terminal,
    backend::CrosstermBackend,
    crossterm::{
        cursor::{Hide, Show},
        execute,
        terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
    },
};

/// What has to be put back: the real stderr, and the capture to replay on it.
struct Saved {
    stderr: OwnedFd,
    capture: File,
}

/// Set while the terminal is taken; taken back (once) by [`restore`].
static SAVED: Mutex<Option<Saved>> = Mutex::new(None);

/// The terminal, taken: drawing goes through it; dropping it restores.
pub struct Screen {
    /// The ratatui terminal on stdout.
    pub terminal: Terminal<CrosstermBackend<io::Stdout>>,
}

impl Screen {
    /// Takes the terminal: stderr into a capture, raw mode, alternate screen.
    pub fn enter() -> anyhow::Result<Self> {
        install_panic_hook();
        capture_stderr().context("cannot set stderr aside while the view is up")?;
        let entered = enable_raw_mode()
            .and_then(|()| execute!(io::stdout(), EnterAlternateScreen, Hide))
            .and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())));
        match entered {
            Ok(terminal) => Ok(Self { terminal }),
            Err(error) => {
                restore();
                Err(error).context("cannot set the terminal up for the view")
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the terminal and stderr back and prints what stderr received meanwhile.
/// Safe to call more than once, and from the panic hook.
pub fn restore() {
    let saved = match SAVED.lock() {
        Ok(mut saved) => saved.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    let Some(Saved {
        stderr,
        mut capture,
    }) = saved
    else {
        return;
    };
    let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
    let _ = disable_raw_mode();
    // SAFETY: both descriptors are open; dup2 replaces fd 2 atomically.
    unsafe { libc::dup2(stderr.as_raw_fd(), libc::STDERR_FILENO) };
    let mut text = Vec::new();
    if capture.rewind().is_ok() && capture.read_to_end(&mut text).is_ok() {
        let _ = io::stderr().write_all(&text);
    }
}

/// Points fd 2 at a fresh memory file, keeping the real one to put back.
fn capture_stderr() -> io::Result<()> {
    // SAFETY: the name is a valid C string; the result is checked.
    let memfd = unsafe { libc::memfd_create(c"tracer-top-stderr".as_ptr(), libc::MFD_CLOEXEC) };
    if memfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd was just created and is owned here.
    let capture = unsafe { File::from_raw_fd(memfd) };
    // SAFETY: fd 2 is open for the life of the process.
    let real = unsafe { libc::fcntl(libc::STDERR_FILENO, libc::F_DUPFD_CLOEXEC, 3) };
    if real < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `real` was just duplicated and is owned here.
    let stderr = unsafe { OwnedFd::from_raw_fd(real) };
    // SAFETY: both descriptors are open.
    if unsafe { libc::dup2(capture.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut saved = SAVED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *saved = Some(Saved { stderr, capture });
    Ok(())
}

/// On a panic, restore the terminal before the message is printed, so the
/// message is readable and the shell usable.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}
