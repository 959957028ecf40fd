//! Format writes a WAL that recovery can read and a superblock that opens, in that order.

use pinion::config::{Config, HEADER_SIZE, SECTOR_SIZE};
use pinion::format;
use pinion::header::{prepare, Header};
use pinion::layout::{Layout, Zone};
use pinion::storage::simulated::{Options, SimulatedStorage};
use pinion::superblock::{self, OpenOptions, SuperblockError};

const CLUSTER: u128 = 0xC0FFEE;

fn storage(config: &Config) -> SimulatedStorage {
    let options = Options {
        io_depth_max: config.io_depth_max() as usize,
        ..Options::default()
    };
    SimulatedStorage::new(Layout::new(config), options, 1)
}

#[test]
fn formatted_file_opens_with_its_geometry_and_an_empty_wal() {
    let config = Config::small();
    let mut storage = storage(&config);
    let formatted = format::format(&mut storage, &config, CLUSTER, 8).unwrap();
    assert_eq!(formatted.sequence, 1);
    let options = OpenOptions {
        repair: true,
        cluster_expected: Some(CLUSTER),
    };
    let opened = superblock::open(&mut storage, options).unwrap();
    assert_eq!(opened.superblock, formatted);
    assert!(opened.slots_repaired.is_empty());
    assert_eq!(opened.superblock.config(&Config::small()).unwrap(), config);

    for slot in 0..config.journal_slot_count {
        let redundant = storage.read_direct(Zone::WalHeaders, slot / 16 * SECTOR_SIZE, SECTOR_SIZE);
        let at = ((slot % 16) * HEADER_SIZE) as usize;
        let redundant = Header::from_bytes(&redundant[at..at + 256]);
        let sector = storage.read_direct(
            Zone::WalPrepares,
            slot * config.message_size_max,
            SECTOR_SIZE,
        );
        let in_prepare = Header::from_bytes(&sector[..256]);
        assert_eq!(redundant, in_prepare, "slot {slot}");
        redundant.validate(&[], config.message_size_max).unwrap();
        let expected = if slot == 0 {
            prepare::root(CLUSTER)
        } else {
            prepare::reserved(CLUSTER, slot)
        };
        assert_eq!(redundant, expected);
        assert!(
            sector[256..].iter().all(|byte| *byte == 0),
            "slot {slot} padding"
        );
    }
}

#[test]
fn a_format_cut_short_before_the_superblock_is_not_found() {
    let config = Config::small();
    let mut storage = storage(&config);
    format::write_wal(&mut storage, &config, CLUSTER, 4);
    let result = superblock::open(&mut storage, OpenOptions::default());
    assert_eq!(result.unwrap_err(), SuperblockError::NotFound);
}
