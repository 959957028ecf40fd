//! ref §8.3 JournalChecker, shared by both simulators: when the journal is idle, every clean
//! slot's redundant header equals its header in memory, and for a non-reserved one, on disk the
//! redundant header and the prepare's header (with zero padding) equal it too.

use crate::config::{round_up_sector, Config, HEADERS_PER_SECTOR, HEADER_SIZE, SECTOR_SIZE};
use crate::journal::{prepare_intact, Journal};
use crate::layout::Zone;
use crate::storage::simulated::SimulatedStorage;

/// Checks every clean slot of an idle `journal` against memory and `storage`. The disk
/// comparison skips sectors the storage marked corrupt, and is off (`compare_disk`) after a
/// misdirected write into the WAL, whose stale target the journal cannot know of.
pub(crate) fn clean_slots(
    journal: &Journal,
    storage: &SimulatedStorage,
    config: &Config,
    compare_disk: bool,
) -> Result<(), String> {
    assert_eq!(journal.writes_in_flight() + journal.reads_in_flight(), 0);
    let slot_count = config.journal_slot_count;
    let message_size_max = config.message_size_max;
    let headers = storage.read_direct(Zone::WalHeaders, 0, slot_count * HEADER_SIZE);
    for slot in (0..slot_count).filter(|slot| !journal.is_dirty(*slot)) {
        let header = journal.header(slot);
        if journal.header_redundant(slot) != header {
            return Err(format!(
                "clean slot {slot}: redundant header differs in memory"
            ));
        }
        if crate::journal::recovery::is_reserved(header) || !compare_disk {
            continue;
        }
        let sector_offset = slot / HEADERS_PER_SECTOR * SECTOR_SIZE;
        let at = (slot * HEADER_SIZE) as usize;
        if !storage.is_corrupt(Zone::WalHeaders, sector_offset)
            && headers[at..at + HEADER_SIZE as usize] != header.as_bytes()[..]
        {
            return Err(format!(
                "clean slot {slot}: redundant header on disk differs"
            ));
        }
        let prepare_offset = slot * message_size_max;
        let size = round_up_sector(header.size() as u64);
        let corrupt = (0..size / SECTOR_SIZE).any(|sector| {
            storage.is_corrupt(Zone::WalPrepares, prepare_offset + sector * SECTOR_SIZE)
        });
        let bytes = storage.read_direct(Zone::WalPrepares, prepare_offset, size);
        if !corrupt && prepare_intact(&bytes, message_size_max) != Some(*header) {
            return Err(format!("clean slot {slot}: prepare on disk differs"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::AlignedBuf;
    use crate::header::prepare::Prepare;
    use crate::journal::{driver, fill_message};
    use crate::layout::Layout;
    use crate::storage::simulated::Options;

    const CLUSTER: u128 = 0xC4EC;

    /// A journal recovered over a formatted WAL with ops 1..=`ops` written.
    fn written(config: &Config, ops: u64) -> (SimulatedStorage, Journal) {
        let options = Options {
            io_depth_max: config.io_depth_max() as usize,
            ..Options::default()
        };
        let mut storage = SimulatedStorage::new(Layout::new(config), options, 1);
        crate::format::write_wal(&mut storage, config, CLUSTER, 4);
        let mut journal = Journal::new(config, CLUSTER);
        driver::recover(&mut storage, &mut journal, 0).expect("a formatted WAL recovers");
        for op in 1..=ops {
            let body = vec![op as u8; 100 * op as usize];
            let header = Prepare {
                client: 7,
                request: op as u32,
                op,
                commit: op - 1,
                timestamp: op,
                operation: 128,
                ..Prepare::default()
            }
            .header(CLUSTER, &body);
            let mut message = AlignedBuf::new(config.message_size_max as usize);
            fill_message(&mut message, &header, &body);
            driver::write_prepare(&mut storage, &mut journal, message);
        }
        (storage, journal)
    }

    #[test]
    fn a_clean_journal_passes_and_each_disagreement_on_disk_fails() {
        let config = Config::small();
        let (mut storage, journal) = written(&config, 5);
        assert_eq!(clean_slots(&journal, &storage, &config, true), Ok(()));

        // Slot 3's prepare overwritten on disk behind the journal's back (with op 4's: a valid
        // prepare, but not the one the slot's header names).
        let slot_3 = 3 * config.message_size_max;
        let original = storage.read_direct(Zone::WalPrepares, slot_3, SECTOR_SIZE);
        let op_4 = storage.read_direct(Zone::WalPrepares, 4 * config.message_size_max, SECTOR_SIZE);
        storage.write_direct(Zone::WalPrepares, slot_3, &op_4);
        let error = clean_slots(&journal, &storage, &config, true).unwrap_err();
        assert_eq!(error, "clean slot 3: prepare on disk differs");
        // Not compared when the disk comparison is off (after a misdirected write), nor when
        // the storage itself marked the sector corrupt.
        assert_eq!(clean_slots(&journal, &storage, &config, false), Ok(()));
        storage.corrupt_sector(Zone::WalPrepares, slot_3);
        assert_eq!(clean_slots(&journal, &storage, &config, true), Ok(()));
        storage.write_direct(Zone::WalPrepares, slot_3, &original);

        // Slot 2's redundant header on disk changed.
        let mut sector = storage.read_direct(Zone::WalHeaders, 0, SECTOR_SIZE);
        sector[2 * HEADER_SIZE as usize + 40] ^= 1;
        storage.write_direct(Zone::WalHeaders, 0, &sector);
        let error = clean_slots(&journal, &storage, &config, true).unwrap_err();
        assert_eq!(error, "clean slot 2: redundant header on disk differs");
    }
}
