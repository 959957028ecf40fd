//! What the writer was told, and what must therefore still be true: the checker's model.
//!
//! Every prepare reported durable (or found whole by recovery and adopted, see
//! [`Model::on_recovered_head`]) is kept, with its body, while it is above the latest
//! checkpoint; the checks compare the journal and the disk with it.

use crate::header::{prepare, Header};
use std::collections::BTreeMap;

/// A prepare the writer made: its header and body.
#[derive(Clone, Debug)]
pub(super) struct Prepared {
    pub header: Header,
    pub body: Vec<u8>,
}

impl Prepared {
    pub fn op(&self) -> u64 {
        prepare::op(&self.header)
    }
}

#[derive(Debug)]
pub(super) struct Model {
    slot_count: u64,
    /// The checkpoint the superblock records, as far as the writer knows it.
    pub op_checkpoint: u64,
    /// A checkpoint being recorded (a crash may leave either it or the previous one).
    pub checkpoint_staging: Option<u64>,
    /// Acknowledged prepares above the checkpoint, by op.
    acknowledged: BTreeMap<u64, Prepared>,
    /// The latest acknowledged prepare's header (the root after format): the chain's head.
    pub head: Header,
    /// The append under way; a crash leaves it here, for recovery to keep whole or truncate.
    pub in_flight: Option<Prepared>,
}

impl Model {
    pub fn formatted(slot_count: u64, root: Header) -> Model {
        Model {
            slot_count,
            op_checkpoint: 0,
            checkpoint_staging: None,
            acknowledged: BTreeMap::new(),
            head: root,
            in_flight: None,
        }
    }

    pub fn op_head(&self) -> u64 {
        prepare::op(&self.head)
    }

    pub fn acknowledge(&mut self, prepared: Prepared) {
        assert_eq!(prepared.op(), self.op_head() + 1, "appends are contiguous");
        assert_eq!(
            prepare::Prepare::decode(&prepared.header).parent,
            self.head.checksum()
        );
        self.head = prepared.header;
        self.acknowledged.insert(prepared.op(), prepared);
    }

    /// The acknowledged prepare of `op`, if it is above the checkpoint.
    pub fn acknowledged(&self, op: u64) -> Option<&Prepared> {
        self.acknowledged.get(&op)
    }

    /// Acknowledged prepares above the checkpoint, ascending.
    pub fn acknowledged_all(&self) -> impl Iterator<Item = &Prepared> {
        self.acknowledged.values()
    }

    /// The latest acknowledged prepare above the checkpoint that lives in `slot`.
    pub fn expected_in_slot(&self, slot: u64) -> Option<&Prepared> {
        self.acknowledged
            .values()
            .rev()
            .find(|prepared| prepared.op() % self.slot_count == slot)
    }

    pub fn set_checkpoint(&mut self, op_checkpoint: u64) {
        assert!(op_checkpoint >= self.op_checkpoint);
        assert!(op_checkpoint <= self.op_head());
        self.op_checkpoint = op_checkpoint;
        self.checkpoint_staging = None;
        self.acknowledged = self.acknowledged.split_off(&(op_checkpoint + 1));
    }

    /// The superblock opened with `op_checkpoint`: it must be the recorded checkpoint or the
    /// one being recorded when the machine crashed.
    pub fn on_superblock_open(&mut self, op_checkpoint: u64) -> Result<(), String> {
        if op_checkpoint == self.op_checkpoint {
            self.checkpoint_staging = None;
            return Ok(());
        }
        if Some(op_checkpoint) == self.checkpoint_staging {
            self.set_checkpoint(op_checkpoint);
            return Ok(());
        }
        Err(format!(
            "the superblock opened with checkpoint op {op_checkpoint}, expected {} (or {:?} being \
             recorded)",
            self.op_checkpoint, self.checkpoint_staging
        ))
    }

    /// Recovery ended with `head` (op and header) as the head, if any slot holds a prepare: the
    /// latest acknowledged op, or the append that was in flight at the crash, found whole —
    /// which a replica would now commit, so it is adopted as acknowledged. No head at all is
    /// allowed only while the head is the checkpoint itself (just formatted), whose slot may be
    /// left faulty because it is not needed.
    pub fn on_recovered_head(&mut self, head: Option<(u64, Header)>) -> Result<(), String> {
        let in_flight = self.in_flight.take();
        let in_flight_op = in_flight.as_ref().map(Prepared::op);
        match head {
            None if self.op_head() == self.op_checkpoint => Ok(()),
            Some((op, header)) if op == self.op_head() => {
                if header != self.head {
                    return Err(format!("the head op {op} changed after a restart"));
                }
                Ok(())
            }
            Some((op, header)) if Some(op) == in_flight_op => {
                let prepared = in_flight.expect("in flight");
                if prepared.header != header {
                    return Err(format!("the append in flight (op {op}) came back changed"));
                }
                self.acknowledge(prepared);
                Ok(())
            }
            _ => Err(format!(
                "recovery ended with head op {:?}, but the latest acknowledged op is {} and the \
                 append in flight was {:?}",
                head.map(|(op, _)| op),
                self.op_head(),
                in_flight_op
            )),
        }
    }
}
