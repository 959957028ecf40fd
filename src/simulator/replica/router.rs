//! One simulated storage, several components: each component submits through its own
//! [`Port`], which marks its requests' tags with the component and hands it only its own
//! completions. A completion that belongs to another component (a journal write that finishes
//! while the blocking grid drivers wait for a block read) is stashed, in completion order, until
//! that component asks. This is what the io actor's per-client completion channels do in the
//! service.
//!
//! Every component's tags are `purpose << 32 | index` with a small purpose (the journal, the
//! client replies, the grid, the superblock's tag 0), so the top byte is free: the port puts
//! its component there on submit and clears it on completion.

use crate::storage::simulated::{CrashReport, SimulatedStorage};
use crate::storage::{IoCompletion, IoRequest, Storage};
use std::collections::VecDeque;

/// Who submitted an I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Component {
    Journal = 1,
    Replies = 2,
    /// The grid drivers, and the superblock (opened, and updated at the end of a checkpoint,
    /// through the state machine's grid access).
    Grid = 3,
}

const COMPONENT_SHIFT: u32 = 56;

impl Component {
    fn from_tag(tag: u64) -> Component {
        match tag >> COMPONENT_SHIFT {
            1 => Component::Journal,
            2 => Component::Replies,
            3 => Component::Grid,
            other => panic!("completion tag {tag:#x} names no component ({other})"),
        }
    }
}

#[derive(Debug)]
pub(super) struct Router {
    pub storage: SimulatedStorage,
    /// Completions taken from the storage for another component than the one that waited,
    /// oldest first (tags already restored).
    stash: VecDeque<(Component, IoCompletion)>,
}

impl Router {
    pub fn new(storage: SimulatedStorage) -> Router {
        Router {
            storage,
            stash: VecDeque::new(),
        }
    }

    pub fn port(&mut self, component: Component) -> Port<'_> {
        Port {
            router: self,
            component,
        }
    }

    /// I/Os submitted and not yet handed to their component.
    pub fn pending_count(&self) -> usize {
        self.storage.pending_count() + self.stash.len()
    }

    /// The machine crashed: pending I/O tears or is lost, and completions not yet handed over
    /// are forgotten with the components that waited for them.
    pub fn crash(&mut self) -> CrashReport {
        self.stash.clear();
        self.storage.crash()
    }

    /// The next completion for the event loop (the journal or the client replies): a stashed
    /// one first, else the storage's next. The grid has nothing in flight between its blocking
    /// calls, so no completion here is the grid's.
    pub fn next_completion(&mut self) -> Option<(Component, IoCompletion)> {
        if let Some(stashed) = self.stash.pop_front() {
            assert_ne!(
                stashed.0,
                Component::Grid,
                "a grid completion outside a call"
            );
            return Some(stashed);
        }
        if self.storage.pending_count() == 0 {
            return None;
        }
        let completion = untag(self.storage.next_completion());
        assert_ne!(
            completion.0,
            Component::Grid,
            "a grid completion outside a call"
        );
        Some(completion)
    }
}

fn untag(mut completion: IoCompletion) -> (Component, IoCompletion) {
    let component = Component::from_tag(completion.tag);
    completion.tag &= (1 << COMPONENT_SHIFT) - 1;
    (component, completion)
}

/// A component's view of the shared storage.
#[derive(Debug)]
pub(super) struct Port<'a> {
    router: &'a mut Router,
    component: Component,
}

impl Port<'_> {
    fn take_stashed(&mut self) -> Option<IoCompletion> {
        let index = self
            .router
            .stash
            .iter()
            .position(|(component, _)| *component == self.component)?;
        self.router
            .stash
            .remove(index)
            .map(|(_, completion)| completion)
    }
}

impl Storage for Port<'_> {
    fn submit(&mut self, mut request: IoRequest) {
        assert_eq!(
            request.tag >> COMPONENT_SHIFT,
            0,
            "tag {:#x} uses the router's byte",
            request.tag
        );
        request.tag |= (self.component as u64) << COMPONENT_SHIFT;
        self.router.storage.submit(request);
    }

    fn next_completion(&mut self) -> IoCompletion {
        if let Some(completion) = self.take_stashed() {
            return completion;
        }
        loop {
            let (component, completion) = untag(self.router.storage.next_completion());
            if component == self.component {
                return completion;
            }
            self.router.stash.push_back((component, completion));
        }
    }

    fn try_next_completion(&mut self) -> Option<IoCompletion> {
        if let Some(completion) = self.take_stashed() {
            return Some(completion);
        }
        while let Some(completion) = self.router.storage.poll_completion() {
            let (component, completion) = untag(completion);
            if component == self.component {
                return Some(completion);
            }
            self.router.stash.push_back((component, completion));
        }
        None
    }
}
