//! What one part of the app hands to `App::build`: its children, the queue subscriptions readiness
//! waits for, its start-up log lines, and what a clean stop does for it.

use cpe_actors::pool::PoolMsg;
use cpe_actors::slot::Slot;
use cpe_actors::supervisor::{ChildId, ChildSpec};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Default)]
pub(super) struct Part {
    /// Started in this order, after the children of the parts before.
    pub children: Vec<Box<dyn ChildSpec>>,
    /// Set while a queue subscription of this part is live: Service B is ready only with all of them.
    pub queue_flags: Vec<Arc<AtomicBool>>,
    /// Logged once the app accepts work, so a reader of the log can act on them.
    pub announce: Vec<Box<dyn FnOnce()>>,
    pub stops: Vec<Stop>,
}

/// A child that a clean stop retires itself, before stopping the rest, kept by its id.
pub(super) enum Stop {
    /// A queue subscription: retired first, so no new task arrives.
    Consumer(ChildId),
    /// The worker pool: drained within the grace period (its running configurations finish),
    /// then retired.
    Pool { pool: Slot<PoolMsg>, child: ChildId },
}

impl Part {
    /// Adds a child and gives back its id, for a `Stop`.
    pub fn child(&mut self, spec: impl ChildSpec) -> ChildId {
        let id = spec.id();
        self.children.push(Box::new(spec));
        id
    }

    pub fn announce(&mut self, line: impl FnOnce() + 'static) {
        self.announce.push(Box::new(line));
    }

    /// The parts as one: children, lines and stops in the parts' order.
    pub fn assemble(parts: Vec<Part>) -> Part {
        parts.into_iter().fold(Part::default(), |mut all, part| {
            all.children.extend(part.children);
            all.queue_flags.extend(part.queue_flags);
            all.announce.extend(part.announce);
            all.stops.extend(part.stops);
            all
        })
    }
}
