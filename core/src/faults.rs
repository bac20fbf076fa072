//! When a harness's faults fire, decided here and only executed by the tools.
//!
//! A fault (cut the link, kill a QEMU, call the API from another thread) is planned at a
//! [`Trigger`]: a moment of the migration that the driver reports as a domain event, or a time
//! after the migrate call started. [`FaultSchedule`] takes the driver's domain events and the
//! elapsed time as inputs and answers which planned faults fire now, each exactly once. It never
//! reads a clock: the caller says how much time has passed, so a schedule is replayable and its
//! tests take microseconds.

use crate::driver::vocab::event;
use crate::driver::{DomainEvent, Side};

/// When a fault happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The source reported post-copy (SUSPENDED_POSTCOPY on the source).
    Postcopy,
    /// MIGRATION_ITERATION `n` on the source.
    Iteration(u64),
    /// Milliseconds after the migrate call started.
    AfterMs(u64),
    /// The destination's vCPUs started in post-copy (RESUMED_POSTCOPY on the destination).
    DestinationRunning,
}

impl Trigger {
    /// Whether the domain event `ev` of `side` is this trigger's moment.
    pub fn matches(self, side: Side, ev: &DomainEvent) -> bool {
        match (self, side, ev) {
            (Trigger::Postcopy, Side::Src, DomainEvent::Lifecycle { event: e, detail }) => {
                *e == event::SUSPENDED && *detail == event::SUSPENDED_POSTCOPY
            }
            (
                Trigger::DestinationRunning,
                Side::Dst,
                DomainEvent::Lifecycle { event: e, detail },
            ) => *e == event::RESUMED && *detail == event::RESUMED_POSTCOPY,
            (Trigger::Iteration(n), Side::Src, DomainEvent::MigrationIteration { iteration }) => {
                *iteration == n
            }
            _ => false,
        }
    }
}

/// The planned faults of one migrate call and which of them already fired.
#[derive(Debug, Clone)]
pub struct FaultSchedule {
    triggers: Vec<Trigger>,
    fired: Vec<bool>,
}

impl FaultSchedule {
    /// A schedule of faults planned at `triggers`; a fault is named by its index in that list.
    pub fn new(triggers: Vec<Trigger>) -> Self {
        let fired = vec![false; triggers.len()];
        FaultSchedule { triggers, fired }
    }

    /// A domain event of `side` arrived: the faults to fire now, in plan order.
    pub fn on_event(&mut self, side: Side, ev: &DomainEvent) -> Vec<usize> {
        self.take(|t| t.matches(side, ev))
    }

    /// `elapsed_ms` passed since the migrate call started: the timed faults now due.
    pub fn on_elapsed(&mut self, elapsed_ms: u64) -> Vec<usize> {
        self.take(|t| matches!(t, Trigger::AfterMs(ms) if ms <= elapsed_ms))
    }

    /// When the next timed fault is due (milliseconds after the start), if one is left.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.triggers
            .iter()
            .zip(&self.fired)
            .filter_map(|(t, fired)| match t {
                Trigger::AfterMs(ms) if !fired => Some(*ms),
                _ => None,
            })
            .min()
    }

    /// Whether every planned fault fired.
    pub fn all_fired(&self) -> bool {
        self.fired.iter().all(|f| *f)
    }

    fn take(&mut self, due: impl Fn(Trigger) -> bool) -> Vec<usize> {
        let mut now = Vec::new();
        for (i, (t, fired)) in self.triggers.iter().zip(self.fired.iter_mut()).enumerate() {
            if !*fired && due(*t) {
                *fired = true;
                now.push(i);
            }
        }
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifecycle(e: i32, detail: i32) -> DomainEvent {
        DomainEvent::Lifecycle { event: e, detail }
    }

    #[test]
    fn each_fault_fires_once_at_its_own_side_and_moment() {
        let mut s = FaultSchedule::new(vec![
            Trigger::DestinationRunning,
            Trigger::Iteration(2),
            Trigger::Postcopy,
        ]);
        // RESUMED_POSTCOPY on the source is not the destination running.
        let resumed = lifecycle(event::RESUMED, event::RESUMED_POSTCOPY);
        assert_eq!(s.on_event(Side::Src, &resumed), Vec::<usize>::new());
        assert_eq!(
            s.on_event(Side::Src, &DomainEvent::MigrationIteration { iteration: 1 }),
            Vec::<usize>::new()
        );
        assert_eq!(
            s.on_event(Side::Src, &DomainEvent::MigrationIteration { iteration: 2 }),
            vec![1]
        );
        let suspended = lifecycle(event::SUSPENDED, event::SUSPENDED_POSTCOPY);
        assert_eq!(s.on_event(Side::Src, &suspended), vec![2]);
        assert_eq!(s.on_event(Side::Dst, &resumed), vec![0]);
        assert!(s.all_fired());
        // Never twice.
        assert_eq!(s.on_event(Side::Dst, &resumed), Vec::<usize>::new());
    }

    #[test]
    fn timed_faults_fire_when_due_and_say_when_the_next_is() {
        let mut s = FaultSchedule::new(vec![Trigger::AfterMs(500), Trigger::AfterMs(100)]);
        assert_eq!(s.next_due_ms(), Some(100));
        assert_eq!(s.on_elapsed(99), Vec::<usize>::new());
        assert_eq!(s.on_elapsed(100), vec![1]);
        assert_eq!(s.next_due_ms(), Some(500));
        // A late look fires what is overdue, once.
        assert_eq!(s.on_elapsed(2000), vec![0]);
        assert_eq!(s.on_elapsed(3000), Vec::<usize>::new());
        assert_eq!(s.next_due_ms(), None);
    }

    #[test]
    fn a_schedule_without_faults_has_fired_them_all() {
        let mut s = FaultSchedule::new(Vec::new());
        assert!(s.all_fired());
        assert_eq!(s.on_elapsed(10), Vec::<usize>::new());
    }
}
