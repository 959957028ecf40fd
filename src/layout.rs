//! The data file's zones (ref §1.3), their offsets computed from the configuration.
//!
//! Zones in order, contiguous and sector-aligned: superblock, wal_headers, wal_prepares,
//! client_replies, grid_padding, grid. `docs/data_file.md` draws them byte by byte.

use crate::config::{
    round_up, Config, HEADER_SIZE, SECTOR_SIZE, SUPERBLOCK_COPIES, SUPERBLOCK_COPY_SIZE,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Zone {
    Superblock,
    WalHeaders,
    WalPrepares,
    ClientReplies,
    GridPadding,
    Grid,
}

impl Zone {
    pub const ALL: [Zone; 6] = [
        Zone::Superblock,
        Zone::WalHeaders,
        Zone::WalPrepares,
        Zone::ClientReplies,
        Zone::GridPadding,
        Zone::Grid,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Zone::Superblock => "superblock",
            Zone::WalHeaders => "wal_headers",
            Zone::WalPrepares => "wal_prepares",
            Zone::ClientReplies => "client_replies",
            Zone::GridPadding => "grid_padding",
            Zone::Grid => "grid",
        }
    }
}

/// Start and size of one zone, in bytes from the start of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZoneExtent {
    pub start: u64,
    /// `None` for the grid, which grows.
    pub size: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    extents: [ZoneExtent; 6],
    block_size: u64,
}

impl Layout {
    pub fn new(config: &Config) -> Layout {
        let superblock = SUPERBLOCK_COPIES * SUPERBLOCK_COPY_SIZE;
        let wal_headers = config.journal_slot_count * HEADER_SIZE;
        let wal_prepares = config.journal_slot_count * config.message_size_max;
        let client_replies = config.clients_max * config.message_size_max;
        let sizes = [superblock, wal_headers, wal_prepares, client_replies];
        let mut extents = [ZoneExtent {
            start: 0,
            size: Some(0),
        }; 6];
        let mut start = 0;
        for (index, size) in sizes.into_iter().enumerate() {
            assert_eq!(
                size % SECTOR_SIZE,
                0,
                "zone {} not sector-sized",
                Zone::ALL[index].name()
            );
            extents[index] = ZoneExtent {
                start,
                size: Some(size),
            };
            start += size;
        }
        let grid_start = round_up(start, config.block_size);
        extents[4] = ZoneExtent {
            start,
            size: Some(grid_start - start),
        };
        extents[5] = ZoneExtent {
            start: grid_start,
            size: None,
        };
        let layout = Layout {
            extents,
            block_size: config.block_size,
        };
        layout.assert_invariants();
        layout
    }

    fn assert_invariants(&self) {
        let mut end = 0;
        for zone in Zone::ALL {
            let extent = self.extent(zone);
            assert_eq!(extent.start, end, "zones are contiguous");
            assert_eq!(extent.start % SECTOR_SIZE, 0, "zones are sector-aligned");
            end = extent.start + extent.size.unwrap_or(0);
        }
        assert_eq!(
            self.grid_start() % self.block_size,
            0,
            "grid is block-aligned"
        );
    }

    pub fn extent(&self, zone: Zone) -> ZoneExtent {
        self.extents[zone as usize]
    }

    pub fn zone_start(&self, zone: Zone) -> u64 {
        self.extent(zone).start
    }

    /// Size of a bounded zone; panics for the grid.
    pub fn zone_size(&self, zone: Zone) -> u64 {
        self.extent(zone).size.expect("the grid zone is unbounded")
    }

    pub fn grid_start(&self) -> u64 {
        self.zone_start(Zone::Grid)
    }

    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// Everything before the grid: the size `format` preallocates.
    pub fn data_file_size_min(&self) -> u64 {
        self.grid_start()
    }

    /// File offset of grid block `address` (1-based; 0 is the null address).
    pub fn block_offset(&self, address: u64) -> u64 {
        assert!(address >= 1, "block address 0 is the null address");
        self.grid_start() + (address - 1) * self.block_size
    }

    /// Checks a sector I/O against its zone (ref §2.1) and returns its absolute file offset.
    /// Violations are programming errors in the caller, so they panic.
    pub fn io_offset(&self, zone: Zone, offset_in_zone: u64, size: u64) -> u64 {
        assert!(size > 0, "zero-length I/O");
        assert_eq!(size % SECTOR_SIZE, 0, "I/O size not sector-aligned");
        assert_eq!(
            offset_in_zone % SECTOR_SIZE,
            0,
            "I/O offset not sector-aligned"
        );
        assert_ne!(
            zone,
            Zone::GridPadding,
            "the grid padding is never read or written"
        );
        let extent = self.extent(zone);
        if let Some(zone_size) = extent.size {
            assert!(
                offset_in_zone + size <= zone_size,
                "I/O beyond zone {}",
                zone.name()
            );
        } else {
            assert_eq!(
                offset_in_zone % self.block_size,
                0,
                "grid I/O not block-aligned"
            );
        }
        extent.start + offset_in_zone
    }

    /// The zone holding absolute file offset `offset`, and the offset within it.
    pub fn locate(&self, offset: u64) -> (Zone, u64) {
        let zone = Zone::ALL
            .into_iter()
            .rev()
            .find(|zone| self.zone_start(*zone) <= offset && !self.is_empty(*zone))
            .unwrap_or(Zone::Superblock);
        (zone, offset - self.zone_start(zone))
    }

    fn is_empty(&self, zone: Zone) -> bool {
        self.extent(zone).size == Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_zones_match_reference() {
        let layout = Layout::new(&Config::production());
        assert_eq!(layout.zone_start(Zone::Superblock), 0);
        assert_eq!(layout.zone_size(Zone::Superblock), 96 * 1024);
        assert_eq!(layout.zone_start(Zone::WalHeaders), 0x18000);
        assert_eq!(layout.zone_size(Zone::WalHeaders), 256 * 1024);
        assert_eq!(layout.zone_start(Zone::WalPrepares), 0x58000);
        assert_eq!(layout.zone_size(Zone::WalPrepares), 1024 * 1024 * 1024);
        assert_eq!(layout.zone_start(Zone::ClientReplies), 0x4005_8000);
        assert_eq!(layout.zone_size(Zone::ClientReplies), 64 * 1024 * 1024);
        assert_eq!(layout.zone_start(Zone::GridPadding), 1_141_211_136);
        assert_eq!(layout.zone_size(Zone::GridPadding), 160 * 1024);
        assert_eq!(layout.grid_start(), 0x4408_0000);
        assert_eq!(layout.data_file_size_min(), 1_141_374_976);
    }

    #[test]
    fn small_zones_are_contiguous_and_block_aligned() {
        let config = Config::small();
        let layout = Layout::new(&config);
        assert_eq!(layout.zone_start(Zone::WalHeaders), 96 * 1024);
        assert_eq!(layout.zone_size(Zone::WalPrepares), 64 * 4096);
        assert_eq!(layout.grid_start() % config.block_size, 0);
        assert_eq!(layout.block_offset(1), layout.grid_start());
        assert_eq!(layout.block_offset(3), layout.grid_start() + 2 * 4096);
    }

    #[test]
    fn locate_inverts_zone_offsets() {
        let layout = Layout::new(&Config::production());
        for zone in [
            Zone::Superblock,
            Zone::WalHeaders,
            Zone::WalPrepares,
            Zone::Grid,
        ] {
            let start = layout.zone_start(zone);
            assert_eq!(layout.locate(start), (zone, 0));
            assert_eq!(layout.locate(start + 4096), (zone, 4096));
        }
    }

    #[test]
    #[should_panic(expected = "beyond zone wal_headers")]
    fn io_past_the_end_of_a_zone_is_refused() {
        let layout = Layout::new(&Config::small());
        layout.io_offset(Zone::WalHeaders, layout.zone_size(Zone::WalHeaders), 4096);
    }

    #[test]
    #[should_panic(expected = "grid padding")]
    fn io_into_grid_padding_is_refused() {
        let layout = Layout::new(&Config::production());
        layout.io_offset(Zone::GridPadding, 0, 4096);
    }
}
