//! `tracer top -p PID` and `tracer top -- CMD`: the session runs the usual
//! pipeline into a [`TopSink`], which hands batches of events to the view's
//! thread over a channel. The pipeline never waits for the view: the ring
//! buffer is drained while the view draws.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, Sender, TryRecvError},
    },
    thread,
};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use super::{
    app::{self, Feed},
    input::Action,
    state::{StateOptions, TopState},
    term::Screen,
    view::{Styles, Timeline},
};
use crate::{
    model::event::HookEvent,
    session::{self, Outcome, SessionOptions},
    sinks::output::{LiveStatus, SessionEnd, SessionInfo, Sink},
    target::launch::Launched,
};

/// What the pipeline tells the view.
enum Update {
    Begin(SessionInfo),
    Events(Vec<HookEvent>),
    Status(LiveStatus),
    End(SessionEnd),
}

/// The pipeline's end: buffers a ring-buffer batch of events and sends it at
/// the batch's flush. A view that went away is not an error here: the session
/// stops at its next housekeeping tick through [`Sink::stop_requested`].
struct TopSink {
    updates: Sender<Update>,
    batch: Vec<HookEvent>,
    view_done: Arc<AtomicBool>,
}

impl Sink for TopSink {
    fn begin(&mut self, info: &SessionInfo) -> std::io::Result<()> {
        let _ = self.updates.send(Update::Begin(info.clone()));
        Ok(())
    }

    fn event(&mut self, event: &HookEvent) -> std::io::Result<()> {
        self.batch.push(event.clone());
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.batch.is_empty() {
            let _ = self
                .updates
                .send(Update::Events(std::mem::take(&mut self.batch)));
        }
        Ok(())
    }

    fn status(&mut self, status: &LiveStatus) -> std::io::Result<()> {
        let _ = self.updates.send(Update::Status(status.clone()));
        Ok(())
    }

    fn end(&mut self, end: &SessionEnd) -> std::io::Result<()> {
        let _ = self.updates.send(Update::End(end.clone()));
        Ok(())
    }

    fn stop_requested(&self) -> bool {
        self.view_done.load(Ordering::Relaxed)
    }
}

/// Longest the view spends taking events in one turn of its loop.
const PUMP_BUDGET: std::time::Duration = std::time::Duration::from_millis(100);

/// The view's side of the channel.
struct LiveFeed {
    updates: Receiver<Update>,
    ended_ns: Option<u64>,
}

impl Feed for LiveFeed {
    fn pump(&mut self, state: &mut TopState) -> anyhow::Result<bool> {
        // Bounded, so keys and refreshes are served even while events pour in;
        // what is left waits in the channel for the next turn.
        let started = std::time::Instant::now();
        while started.elapsed() < PUMP_BUDGET {
            match self.updates.try_recv() {
                Ok(Update::Events(events)) => events.iter().for_each(|event| state.apply(event)),
                Ok(Update::Status(status)) => state.set_status(status),
                Ok(Update::End(end)) => {
                    self.ended_ns = Some(end.end_ns);
                    state.set_end(Some(end));
                }
                Ok(Update::Begin(_)) => {}
                Err(TryRecvError::Empty) => return Ok(false),
                Err(TryRecvError::Disconnected) => {
                    if state.end().is_none() {
                        self.ended_ns = Some(session::monotonic_ns());
                        state.set_end(Some(SessionEnd {
                            ending: "tracing stopped with an error (shown when you quit)"
                                .to_owned(),
                            ..SessionEnd::default()
                        }));
                    }
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    fn now_ns(&self, _: &TopState) -> u64 {
        self.ended_ns.unwrap_or_else(session::monotonic_ns)
    }

    fn timeline(&self) -> Option<Timeline> {
        None
    }

    fn handle(&mut self, _: Action, _: &mut TopState) -> anyhow::Result<bool> {
        Ok(false)
    }
}

/// Sets its flag when dropped: the view is done, however its thread ends.
struct DoneOnDrop(Arc<AtomicBool>);

impl Drop for DoneOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The view's thread: waits for the session to begin (a session that fails
/// before then never takes the terminal, so its error prints plainly), then
/// runs the view until the user quits.
fn view_thread(
    updates: Receiver<Update>,
    options: StateOptions,
    terminate: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let _done = DoneOnDrop(done);
    let info = loop {
        match updates.recv() {
            Ok(Update::Begin(info)) => break info,
            Ok(_) => continue,
            Err(_) => return Ok(()),
        }
    };
    let state = TopState::new(info, options);
    let mut feed = LiveFeed {
        updates,
        ended_ns: None,
    };
    let mut screen = Screen::enter()?;
    let result = app::run(
        &mut screen,
        state,
        &mut feed,
        &terminate,
        Styles::from_env(),
    );
    // The terminal is restored before the session is told to stop, so its
    // summary prints on the real stderr.
    drop(screen);
    result
}

/// Traces `pid` (or the `launched` command) with the view up; returns how the
/// session ended.
pub async fn run(
    pid: u32,
    launched: Option<Launched>,
    session_options: SessionOptions,
    options: StateOptions,
) -> anyhow::Result<Outcome> {
    let (updates, received) = mpsc::channel();
    let terminate = Arc::new(AtomicBool::new(false));
    let view_done = Arc::new(AtomicBool::new(false));
    let view = {
        let terminate = terminate.clone();
        let view_done = view_done.clone();
        thread::Builder::new()
            .name("tracer-top-view".to_owned())
            .spawn(move || view_thread(received, options, terminate, view_done))
            .context("cannot start the view's thread")?
    };
    let mut sink = TopSink {
        updates,
        batch: Vec::new(),
        view_done,
    };
    let mut sigterm = signal(SignalKind::terminate())?;
    let outcome = tokio::select! {
        // The session stops on SIGTERM by itself; the view is told here. Both see
        // the same signal in the same turn, and this branch is polled first, so
        // the flag is set before the session's end can drop it.
        biased;
        () = async {
            sigterm.recv().await;
            terminate.store(true, Ordering::Relaxed);
            std::future::pending::<()>().await
        } => unreachable!("pending never completes"),
        outcome = session::trace(pid, launched, session_options, &mut sink) => outcome,
    };
    drop(sink);
    let viewed = view
        .join()
        .map_err(|_| anyhow::anyhow!("the view's thread panicked"))?;
    viewed?;
    outcome
}
