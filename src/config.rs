//! The one configuration struct from which every size, queue bound and buffer pool is derived.
//!
//! Constants that never vary (sector and header size) are `const`s with compile-time relations;
//! everything else lives in [`Config`], is chosen from a preset (or a data file's superblock),
//! and is checked once by [`Config::validate`] before anything is allocated.

use thiserror::Error;

/// Logical sector: every I/O buffer pointer, length and offset is a multiple of it.
pub const SECTOR_SIZE: u64 = 4096;
/// The header shared by network messages, WAL prepares and grid blocks.
pub const HEADER_SIZE: u64 = 256;
/// Redundant WAL headers per sector.
pub const HEADERS_PER_SECTOR: u64 = SECTOR_SIZE / HEADER_SIZE;
/// Superblock copies: 4, so a verify quorum of 3 and an open quorum of 2 overlap by one.
pub const SUPERBLOCK_COPIES: u64 = 4;
/// Each superblock copy has a fixed size, independent of the configuration, so that a data file
/// of any geometry can be opened (and inspected) before its geometry is known.
pub const SUPERBLOCK_COPY_SIZE: u64 = 24 * 1024;
/// The fixed part of a superblock copy; view headers follow it.
pub const SUPERBLOCK_HEADER_SIZE: u64 = 4096;
/// View headers that fit behind the fixed part of a copy.
pub const SUPERBLOCK_VIEW_HEADERS_LIMIT: u64 =
    (SUPERBLOCK_COPY_SIZE - SUPERBLOCK_HEADER_SIZE) / HEADER_SIZE;
/// Operations below this number belong to the replication protocol; the state machine's are ≥.
pub const VSR_OPERATIONS_RESERVED: u8 = 128;
/// A free-set shard in bits: 8 cache lines of 64 bytes.
pub const FREE_SET_SHARD_BITS: u64 = 4096;
/// Grid cache capacity (in blocks) must be a multiple of this (16 ways × 2-bit counts packing).
pub const GRID_CACHE_BLOCKS_MULTIPLE: u64 = 64;

const _: () = assert!(SECTOR_SIZE.is_power_of_two());
const _: () = assert!(SECTOR_SIZE % HEADER_SIZE == 0);
const _: () = assert!(HEADERS_PER_SECTOR == 16);
const _: () = assert!(SUPERBLOCK_COPIES == 4 || SUPERBLOCK_COPIES == 6 || SUPERBLOCK_COPIES == 8);
const _: () = assert!(SUPERBLOCK_COPY_SIZE % SECTOR_SIZE == 0);
const _: () = assert!(SUPERBLOCK_HEADER_SIZE % SECTOR_SIZE == 0);
const _: () = assert!(SUPERBLOCK_COPY_SIZE > SUPERBLOCK_HEADER_SIZE);

/// Which preset a configuration came from (recorded for `inspect`; never used for decisions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    Production,
    Small,
}

impl Preset {
    pub const ALL: [Preset; 2] = [Preset::Production, Preset::Small];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Production => "production",
            Preset::Small => "small",
        }
    }

    pub fn parse(name: &str) -> Result<Preset, ConfigError> {
        Preset::ALL
            .into_iter()
            .find(|preset| preset.name() == name)
            .ok_or_else(|| ConfigError::UnknownPreset {
                name: name.to_string(),
            })
    }

    pub fn config(self) -> Config {
        match self {
            Preset::Production => Config::production(),
            Preset::Small => Config::small(),
        }
    }
}

/// Every tunable size and bound. Fields that are recorded in the superblock (the geometry) must
/// match the data file; the others (cache size, I/O depth) are per-process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    // Geometry: recorded in the superblock, fixed at format.
    pub message_size_max: u64,
    pub journal_slot_count: u64,
    pub clients_max: u64,
    pub block_size: u64,
    pub pipeline_prepare_queue_max: u64,
    pub lsm_compaction_ops: u64,
    pub lsm_levels: u64,
    pub lsm_growth_factor: u64,
    // Per-process limits.
    pub grid_cache_size_bytes: u64,
    pub storage_size_limit_bytes: u64,
    pub journal_iops_read_max: u64,
    pub journal_iops_write_max: u64,
    pub client_replies_iops_read_max: u64,
    pub client_replies_iops_write_max: u64,
    pub grid_iops_read_max: u64,
    pub grid_iops_write_max: u64,
}

impl Config {
    /// TigerBeetle's production sizes.
    pub fn production() -> Config {
        Config {
            message_size_max: 1024 * 1024,
            journal_slot_count: 1024,
            clients_max: 64,
            block_size: 512 * 1024,
            pipeline_prepare_queue_max: 8,
            lsm_compaction_ops: 32,
            lsm_levels: 7,
            lsm_growth_factor: 8,
            grid_cache_size_bytes: 1024 * 1024 * 1024,
            storage_size_limit_bytes: 16 * 1024 * 1024 * 1024 * 1024,
            journal_iops_read_max: 8,
            journal_iops_write_max: 32,
            client_replies_iops_read_max: 1,
            client_replies_iops_write_max: 2,
            grid_iops_read_max: 32,
            grid_iops_write_max: 32,
        }
    }

    /// A small geometry for tests: WAL wraps and checkpoints come every few dozen ops, so rare
    /// paths become common. 64 slots (not TigerBeetle's 32) so that, as in production, there are
    /// more redundant-header sectors (4) than concurrent journal writes (3): one crash can never
    /// tear every header sector.
    pub fn small() -> Config {
        Config {
            message_size_max: 4096,
            journal_slot_count: 64,
            clients_max: 7,
            block_size: 4096,
            pipeline_prepare_queue_max: 4,
            lsm_compaction_ops: 4,
            lsm_levels: 7,
            lsm_growth_factor: 4,
            grid_cache_size_bytes: 256 * 4096,
            storage_size_limit_bytes: 1024 * 1024 * 1024,
            journal_iops_read_max: 3,
            journal_iops_write_max: 3,
            client_replies_iops_read_max: 1,
            client_replies_iops_write_max: 2,
            grid_iops_read_max: 8,
            grid_iops_write_max: 8,
        }
    }

    pub fn message_body_size_max(&self) -> u64 {
        self.message_size_max - HEADER_SIZE
    }

    /// View headers carried by the superblock: pipeline + 1 (suffix) + 2.
    pub fn view_headers_max(&self) -> u64 {
        self.pipeline_prepare_queue_max + 3
    }

    pub fn journal_header_sector_count(&self) -> u64 {
        self.journal_slot_count / HEADERS_PER_SECTOR
    }

    /// Ops between two checkpoints (ref §1.2).
    pub fn vsr_checkpoint_ops(&self) -> u64 {
        crate::checkpoint::checkpoint_ops(
            self.journal_slot_count,
            self.lsm_compaction_ops,
            self.pipeline_prepare_queue_max,
        )
    }

    pub fn grid_cache_blocks_count(&self) -> u64 {
        self.grid_cache_size_bytes / self.block_size
    }

    /// The most grid blocks the storage limit allows, rounded down to whole blocks.
    pub fn grid_blocks_limit(&self, data_file_size_min: u64) -> u64 {
        self.storage_size_limit_bytes
            .saturating_sub(data_file_size_min)
            / self.block_size
    }

    /// Requests the io actor can have outstanding at once: every component's IOP budget plus one
    /// superblock I/O. Ring sizes and channel capacities derive from it.
    pub fn io_depth_max(&self) -> u64 {
        self.journal_iops_read_max
            + self.journal_iops_write_max
            + self.client_replies_iops_read_max
            + self.client_replies_iops_write_max
            + self.grid_iops_read_max
            + self.grid_iops_write_max
            + 1
    }

    /// Checks every relation between the sizes (ref §1.1). Called once at start-up and at format,
    /// before anything is allocated or written.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_sizes()?;
        self.validate_journal()?;
        self.validate_limits()
    }

    fn validate_sizes(&self) -> Result<(), ConfigError> {
        let message_size_min = round_up(HEADER_SIZE + 4 * HEADER_SIZE, SECTOR_SIZE);
        check(
            self.message_size_max % SECTOR_SIZE == 0,
            "message_size_max is a multiple of 4096",
        )?;
        check(
            self.message_size_max >= message_size_min,
            "message_size_max >= 4096",
        )?;
        check(
            self.message_size_max <= 64 * 1024 * 1024,
            "message_size_max <= 64 MiB",
        )?;
        check(
            self.block_size % SECTOR_SIZE == 0,
            "block_size is a multiple of 4096",
        )?;
        check(
            self.block_size > HEADER_SIZE,
            "block_size > 256 (a block always has a body)",
        )?;
        check(
            self.block_size <= self.message_size_max,
            "block_size <= message_size_max",
        )?;
        check(self.clients_max >= 1, "clients_max >= 1")?;
        check(self.clients_max <= 1024 * 1024, "clients_max <= 1048576")?;
        check(
            self.lsm_levels >= 1 && self.lsm_levels <= 16,
            "1 <= lsm_levels <= 16",
        )?;
        check(self.lsm_growth_factor >= 2, "lsm_growth_factor >= 2")?;
        let cache_blocks = self.grid_cache_blocks_count();
        check(
            self.grid_cache_size_bytes % self.block_size == 0,
            "grid cache size is a whole number of blocks",
        )?;
        check(
            cache_blocks % GRID_CACHE_BLOCKS_MULTIPLE == 0,
            "grid cache size is a multiple of 64 blocks",
        )
    }

    fn validate_journal(&self) -> Result<(), ConfigError> {
        let slots = self.journal_slot_count;
        let bar = self.lsm_compaction_ops;
        let pipeline = self.pipeline_prepare_queue_max;
        check(pipeline >= 1, "pipeline_prepare_queue_max >= 1")?;
        check(
            self.view_headers_max() <= SUPERBLOCK_VIEW_HEADERS_LIMIT,
            "pipeline_prepare_queue_max + 3 view headers fit in a superblock copy (pipeline <= 77)",
        )?;
        check(
            bar >= 2 && bar % 2 == 0,
            "lsm_compaction_ops is even and >= 2",
        )?;
        check(
            slots >= 2 * HEADERS_PER_SECTOR,
            "journal_slot_count >= 32 (two header sectors)",
        )?;
        check(
            slots % HEADERS_PER_SECTOR == 0,
            "journal_slot_count is a multiple of 16",
        )?;
        check(
            slots % bar == 0,
            "journal_slot_count is a multiple of lsm_compaction_ops",
        )?;
        check(
            slots >= 2 * bar,
            "journal_slot_count >= 2 * lsm_compaction_ops",
        )?;
        check(
            slots >= 2 * pipeline,
            "journal_slot_count >= 2 * pipeline_prepare_queue_max",
        )?;
        check(
            slots > bar + bar * div_ceil(2 * pipeline, bar),
            "journal_slot_count leaves room for a checkpoint interval",
        )?;
        let checkpoint_ops = self.vsr_checkpoint_ops();
        check(
            checkpoint_ops % bar == 0,
            "checkpoint interval is a multiple of the bar",
        )?;
        check(
            checkpoint_ops >= pipeline,
            "checkpoint interval >= pipeline",
        )?;
        check(checkpoint_ops >= bar, "checkpoint interval >= bar")?;
        check(
            checkpoint_ops + bar + 2 * pipeline <= slots,
            "checkpoint ops + bar + 2 * pipeline <= journal_slot_count",
        )?;
        check(
            self.journal_header_sector_count() > self.journal_iops_write_max,
            "more redundant-header sectors than journal_iops_write_max (a crash cannot tear all)",
        )
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        check(
            self.journal_iops_read_max >= 3,
            "journal_iops_read_max >= 3 (2 for commits)",
        )?;
        check(
            self.journal_iops_write_max >= 1,
            "journal_iops_write_max >= 1",
        )?;
        check(
            self.client_replies_iops_read_max >= 1,
            "client_replies_iops_read_max >= 1",
        )?;
        check(
            self.client_replies_iops_write_max >= 1,
            "client_replies_iops_write_max >= 1",
        )?;
        check(self.grid_iops_read_max >= 1, "grid_iops_read_max >= 1")?;
        check(self.grid_iops_write_max >= 1, "grid_iops_write_max >= 1")?;
        check(self.io_depth_max() <= 4096, "total I/O depth <= 4096")?;
        check(
            self.storage_size_limit_bytes % self.block_size == 0,
            "storage_size_limit is a multiple of block_size",
        )
    }
}

/// A configuration that breaks one of the relations between sizes.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid configuration: requires {relation}")]
    Relation { relation: &'static str },
    #[error("unknown preset '{name}': use 'production' or 'small'")]
    UnknownPreset { name: String },
}

fn check(holds: bool, relation: &'static str) -> Result<(), ConfigError> {
    if holds {
        Ok(())
    } else {
        Err(ConfigError::Relation { relation })
    }
}

pub const fn div_ceil(numerator: u64, denominator: u64) -> u64 {
    assert!(denominator > 0);
    numerator.div_ceil(denominator)
}

pub const fn round_up(value: u64, multiple: u64) -> u64 {
    assert!(multiple > 0);
    value.div_ceil(multiple) * multiple
}

pub const fn round_up_sector(value: u64) -> u64 {
    round_up(value, SECTOR_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for preset in Preset::ALL {
            preset.config().validate().unwrap();
        }
    }

    #[test]
    fn production_derived_sizes_match_reference() {
        let config = Config::production();
        assert_eq!(config.vsr_checkpoint_ops(), 960);
        assert_eq!(config.view_headers_max(), 11);
        assert_eq!(config.journal_header_sector_count(), 64);
        assert_eq!(config.grid_cache_blocks_count(), 2048);
        assert_eq!(config.message_body_size_max(), 1024 * 1024 - 256);
    }

    #[test]
    fn broken_relations_are_named() {
        let mut config = Config::small();
        config.message_size_max = 5000;
        assert_eq!(
            config.validate(),
            Err(ConfigError::Relation {
                relation: "message_size_max is a multiple of 4096"
            })
        );
        let mut config = Config::small();
        config.block_size = 2 * config.message_size_max;
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("block_size <="));
        let mut config = Config::small();
        config.lsm_compaction_ops = 3;
        assert!(config.validate().unwrap_err().to_string().contains("even"));
        let mut config = Config::small();
        config.journal_iops_write_max = 4;
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("tear all"));
        let mut config = Config::small();
        config.grid_cache_size_bytes = 63 * config.block_size;
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("64 blocks"));
    }

    #[test]
    fn preset_names_round_trip_and_unknown_is_refused() {
        for preset in Preset::ALL {
            assert_eq!(Preset::parse(preset.name()), Ok(preset));
        }
        assert!(Preset::parse("huge")
            .unwrap_err()
            .to_string()
            .contains("'production' or 'small'"));
    }
}
