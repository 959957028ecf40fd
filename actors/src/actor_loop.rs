//! The event loop every component actor that does I/O runs: wait until a request from its caller
//! or a completion from the io actor is ready, feed it to the component, then hand the
//! component's new I/O requests to the io actor in one batch. Stops once the caller hung up and
//! nothing the component started is still pending.

use crate::io::IoClient;
use crossbeam_channel::{Receiver, Select, TryRecvError};

/// A component actor's state, as the loop sees it.
pub(crate) trait ActorState {
    type Request;

    fn io(&mut self) -> &mut IoClient;
    fn on_request(&mut self, request: Self::Request);
    /// Takes every completion that is ready on the io client.
    fn on_completions(&mut self);
    /// After each step: start what waited, then submit new I/O.
    fn after_step(&mut self);
    /// Work is still pending (I/O in flight, requests waiting): keep running after hang-up.
    fn busy(&self) -> bool;
}

pub(crate) fn run<S: ActorState>(state: &mut S, requests: Receiver<S::Request>) {
    // Readiness only (`Select::ready` consumes nothing): completions are taken through the io
    // client so its outstanding count stays exact.
    let completions = state.io().completion_receiver().clone();
    let mut open = true;
    while open || state.busy() {
        let mut select = Select::new();
        let request_index = open.then(|| select.recv(&requests));
        select.recv(&completions);
        let ready = select.ready();
        if Some(ready) == request_index {
            match requests.try_recv() {
                Ok(request) => state.on_request(request),
                Err(TryRecvError::Disconnected) => open = false,
                Err(TryRecvError::Empty) => {}
            }
        } else {
            state.on_completions();
        }
        state.after_step();
    }
}

/// Pins the calling actor thread to `core`, if one is configured. A refusal is logged, naming
/// the actor, and the actor runs unpinned: placement is a performance setting, not correctness.
pub(crate) fn pin_current_thread(actor: &str, core: Option<usize>) {
    let Some(core) = core else {
        return;
    };
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        tracing::warn!("could not pin the {actor} actor to core {core}; running unpinned");
    }
}
