//! Test-only hooks of the local journal, compiled with the `testkit`
//! feature (the crate's own tests enable it).

use super::journal::LocalJournal;

impl LocalJournal {
    /// The next `compact` makes at most `steps` changes to the files (an
    /// unlink, creating or finishing the cleaning output, a rename) and then
    /// stops as if the process had crashed, leaving the journal poisoned.
    /// Drop it and reopen to see what a crash at that point leaves.
    pub fn simulate_crash_in_next_compact(&mut self, steps: u64) {
        self.crash_after_steps = Some(steps);
    }

    /// Forgets a crash asked for by `simulate_crash_in_next_compact`.
    pub fn cancel_simulated_crash(&mut self) {
        self.crash_after_steps = None;
    }

    /// Plants a bug: a cleaning forgets that the copies of keys superseded
    /// while it ran are on disk in the cleaned segment (their tombstones may
    /// then go first, and a reopen brings the keys back). For the test that
    /// shows the interleaving test catches it.
    pub fn plant_bug_cleaning_forgets_superseded_copies(&mut self) {
        self.liveness.planted_forget_superseded_copies = true;
    }

    /// Checks the compaction index's counters against its keys. O(keys).
    pub fn check_index(&self) -> Result<(), String> {
        self.liveness.check()
    }
}
