//! What the superblock records, decoded: the header of a copy, the VSR state, the checkpoint
//! state and the data file's geometry. The byte layout is in [`super::copy`].

use super::copy::{self, CopyError};
use crate::checksum::{checksum, Checksum};
use crate::config::{Config, ConfigError};
use crate::header::{self, prepare, Command, Header};
use crate::layout::Layout;

/// The superblock format this build writes and reads.
pub const SUPERBLOCK_VERSION: u16 = 1;
/// Slots in `VsrState::members` (ref: replicas_max + standbys_max).
pub const MEMBERS_MAX: usize = 12;
/// Most replicas a cluster may have (pinion runs one; the field keeps TigerBeetle's room).
pub const REPLICAS_MAX: u8 = 6;
/// The replica id a single-node data file is formatted with (0 means "no member").
pub const REPLICA_ID_SINGLE: u128 = 1;

/// One superblock: every copy holds the same one, differing only in its `copy` field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuperblockHeader {
    pub version: u16,
    /// The release that formatted the data file.
    pub release_format: u32,
    /// 1 at format; every update adds 1.
    pub sequence: u64,
    pub cluster: u128,
    /// The checksum of the superblock this one replaced (0 at format): the hash chain.
    pub parent: Checksum,
    pub vsr_state: VsrState,
    /// Reserved for future minor features; must be 0.
    pub flags: u64,
    /// The data file's geometry: authoritative over any configuration.
    pub geometry: Geometry,
    /// Prepare headers for a view change, ordered from high op to low op.
    pub view_headers: Vec<Header>,
}

/// State the replication protocol keeps durable (ref §1.4 VSRState).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VsrState {
    pub checkpoint: CheckpointState,
    pub replica_id: u128,
    /// Replica ids of the cluster's members, in replica-index order; 0 = no member.
    pub members: [u128; MEMBERS_MAX],
    /// The highest op up to which this replica may commit.
    pub commit_max: u64,
    pub sync_op_min: u64,
    pub sync_op_max: u64,
    /// The last view in which the replica's status was normal.
    pub log_view: u32,
    pub view: u32,
    pub replica_count: u8,
}

/// What a checkpoint refers to (ref §1.4 CheckpointState): the prepare header of the checkpoint
/// op, and the references to the grid trailers that hold the rest. Its checksum is the
/// checkpoint id that every prepare carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointState {
    /// The prepare of the checkpoint op ("commit_min"); replay starts after it.
    pub header: Header,
    pub free_set_acquired_last_block_checksum: Checksum,
    pub free_set_released_last_block_checksum: Checksum,
    pub client_sessions_last_block_checksum: Checksum,
    pub manifest_oldest_checksum: Checksum,
    pub manifest_newest_checksum: Checksum,
    pub snapshots_block_checksum: Checksum,
    pub free_set_acquired_checksum: Checksum,
    pub free_set_released_checksum: Checksum,
    pub client_sessions_checksum: Checksum,
    pub parent_checkpoint_id: Checksum,
    pub grandparent_checkpoint_id: Checksum,
    pub free_set_acquired_last_block_address: u64,
    pub free_set_released_last_block_address: u64,
    pub client_sessions_last_block_address: u64,
    pub manifest_oldest_address: u64,
    pub manifest_newest_address: u64,
    pub snapshots_block_address: u64,
    /// Logical size of the data file: `data_file_size_min + highest address · block_size`.
    pub storage_size_bytes: u64,
    pub free_set_acquired_size_bytes: u64,
    pub free_set_released_size_bytes: u64,
    pub client_sessions_size_bytes: u64,
    pub manifest_block_count: u32,
    pub release: u32,
}

/// The fields of [`Config`] that fix the data file's layout, recorded at format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub message_size_max: u64,
    pub journal_slot_count: u64,
    pub clients_max: u64,
    pub block_size: u64,
    pub pipeline_prepare_queue_max: u64,
    pub lsm_compaction_ops: u64,
    pub lsm_levels: u64,
    pub lsm_growth_factor: u64,
}

impl Geometry {
    pub fn from_config(config: &Config) -> Geometry {
        Geometry {
            message_size_max: config.message_size_max,
            journal_slot_count: config.journal_slot_count,
            clients_max: config.clients_max,
            block_size: config.block_size,
            pipeline_prepare_queue_max: config.pipeline_prepare_queue_max,
            lsm_compaction_ops: config.lsm_compaction_ops,
            lsm_levels: config.lsm_levels,
            lsm_growth_factor: config.lsm_growth_factor,
        }
    }

    /// View headers a superblock of this geometry carries at most (see `Config`).
    pub fn view_headers_max(&self) -> u64 {
        self.apply(&Config::small()).view_headers_max()
    }

    /// `base` with this geometry in place of its own: the per-process limits (cache size, I/O
    /// depths, storage limit) come from `base`, the layout from the data file. Not validated:
    /// see [`SuperblockHeader::config`].
    pub fn apply(&self, base: &Config) -> Config {
        Config {
            message_size_max: self.message_size_max,
            journal_slot_count: self.journal_slot_count,
            clients_max: self.clients_max,
            block_size: self.block_size,
            pipeline_prepare_queue_max: self.pipeline_prepare_queue_max,
            lsm_compaction_ops: self.lsm_compaction_ops,
            lsm_levels: self.lsm_levels,
            lsm_growth_factor: self.lsm_growth_factor,
            ..base.clone()
        }
    }

    /// The fields in their on-disk order.
    pub(super) fn fields(&self) -> [u64; 8] {
        [
            self.message_size_max,
            self.journal_slot_count,
            self.clients_max,
            self.block_size,
            self.pipeline_prepare_queue_max,
            self.lsm_compaction_ops,
            self.lsm_levels,
            self.lsm_growth_factor,
        ]
    }

    /// The inverse of [`Geometry::fields`].
    pub(super) fn from_fields(fields: [u64; 8]) -> Geometry {
        let geometry = Geometry {
            message_size_max: fields[0],
            journal_slot_count: fields[1],
            clients_max: fields[2],
            block_size: fields[3],
            pipeline_prepare_queue_max: fields[4],
            lsm_compaction_ops: fields[5],
            lsm_levels: fields[6],
            lsm_growth_factor: fields[7],
        };
        assert_eq!(geometry.fields(), fields);
        geometry
    }

    /// Checks the relations between the geometry's own fields (those of [`Config::validate`]
    /// that do not involve per-process limits). Safe on any values read from disk: nothing
    /// overflows.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.fields().iter().any(|field| *field > u32::MAX as u64) {
            return Err(ConfigError::Relation {
                relation: "every geometry field < 2^32",
            });
        }
        // The smallest per-process limits that any valid geometry satisfies, so that only the
        // geometry's relations can fail.
        let limits = Config {
            grid_cache_size_bytes: 64 * self.block_size,
            storage_size_limit_bytes: 64 * self.block_size,
            journal_iops_read_max: 3,
            journal_iops_write_max: 1,
            client_replies_iops_read_max: 1,
            client_replies_iops_write_max: 1,
            grid_iops_read_max: 1,
            grid_iops_write_max: 1,
            ..Config::small()
        };
        self.apply(&limits).validate()
    }
}

impl SuperblockHeader {
    /// The superblock of a freshly formatted data file (ref §1.5): sequence 1, the root VSR
    /// state (checkpoint = the root prepare), storage size = everything before the grid, and the
    /// root prepare as the only view header.
    pub fn format(config: &Config, cluster: u128) -> SuperblockHeader {
        config
            .validate()
            .expect("format with an invalid configuration");
        let root = prepare::root(cluster);
        let storage_size_bytes = Layout::new(config).data_file_size_min();
        let mut members = [0; MEMBERS_MAX];
        members[0] = REPLICA_ID_SINGLE;
        let header = SuperblockHeader {
            version: SUPERBLOCK_VERSION,
            release_format: header::RELEASE,
            sequence: 1,
            cluster,
            parent: 0,
            vsr_state: VsrState {
                checkpoint: CheckpointState::root(root, storage_size_bytes),
                replica_id: REPLICA_ID_SINGLE,
                members,
                commit_max: 0,
                sync_op_min: 0,
                sync_op_max: 0,
                log_view: 0,
                view: 0,
                replica_count: 1,
            },
            flags: 0,
            geometry: Geometry::from_config(config),
            view_headers: vec![root],
        };
        header.validate().expect("formatted superblock is valid");
        header
    }

    /// The checksum every copy carries (over bytes 34.. of a copy; see [`super::copy`]).
    pub fn checksum(&self) -> Checksum {
        let mut bytes = vec![0u8; copy::COPY_BYTES];
        copy::encode(self, 0, &mut bytes);
        copy::stored_checksum(&bytes)
    }

    pub fn checkpoint_id(&self) -> Checksum {
        self.vsr_state.checkpoint.checkpoint_id()
    }

    /// The op of the latest checkpoint.
    pub fn op_checkpoint(&self) -> u64 {
        self.vsr_state.checkpoint.op()
    }

    /// The configuration to run this data file with: its geometry over `base`'s per-process
    /// limits, validated as a whole.
    pub fn config(&self, base: &Config) -> Result<Config, ConfigError> {
        let config = self.geometry.apply(base);
        config.validate()?;
        Ok(config)
    }

    /// Everything a decoded copy must satisfy beyond its checksum. Decoding refuses a copy that
    /// fails it (corrupt input is an error, never a crash); encoding asserts it (a bug).
    pub fn validate(&self) -> Result<(), CopyError> {
        let invalid = |reason| Err(CopyError::Invalid { reason });
        if self.version != SUPERBLOCK_VERSION {
            return Err(CopyError::Version {
                version: self.version,
            });
        }
        if self.sequence == 0 {
            return invalid("sequence is 0");
        }
        if self.flags != 0 {
            return invalid("unknown flags are set");
        }
        self.geometry.validate().map_err(|error| match error {
            ConfigError::Relation { relation } => CopyError::Geometry { relation },
            ConfigError::UnknownPreset { .. } => CopyError::Geometry {
                relation: "a preset",
            },
        })?;
        let count = self.view_headers.len() as u64;
        if count == 0 || count > self.geometry.view_headers_max() {
            return invalid("view header count is 0 or above pipeline_prepare_queue_max + 3");
        }
        self.validate_view_headers()?;
        self.vsr_state.validate(self.cluster)?;
        let layout = Layout::new(&self.geometry.apply(&Config::small()));
        let grid_size = self
            .vsr_state
            .checkpoint
            .storage_size_bytes
            .checked_sub(layout.data_file_size_min());
        if grid_size.is_none_or(|size| size % self.geometry.block_size != 0) {
            return invalid("storage size is not data_file_size_min plus whole blocks");
        }
        Ok(())
    }

    fn validate_view_headers(&self) -> Result<(), CopyError> {
        for header in &self.view_headers {
            if !prepare_of_cluster(header, self.cluster) {
                return Err(CopyError::Invalid {
                    reason: "a view header is not a valid prepare header of this cluster",
                });
            }
        }
        let descending = self
            .view_headers
            .windows(2)
            .all(|pair| prepare::op(&pair[0]) > prepare::op(&pair[1]));
        if !descending {
            return Err(CopyError::Invalid {
                reason: "view headers are not ordered from high op to low op",
            });
        }
        Ok(())
    }
}

fn prepare_of_cluster(header: &Header, cluster: u128) -> bool {
    header.valid_checksum()
        && header.command() == Some(Command::Prepare)
        && header.cluster() == cluster
}

impl VsrState {
    fn validate(&self, cluster: u128) -> Result<(), CopyError> {
        let invalid = |reason| Err(CopyError::Invalid { reason });
        if !prepare_of_cluster(&self.checkpoint.header, cluster) {
            return invalid("the checkpoint header is not a valid prepare header of this cluster");
        }
        if self.replica_count == 0 || self.replica_count > REPLICAS_MAX {
            return invalid("replica_count is not in 1..=6");
        }
        if self.replica_id == 0 || !self.members.contains(&self.replica_id) {
            return invalid("replica_id is 0 or not a member");
        }
        if self.view < self.log_view {
            return invalid("view is below log_view");
        }
        if self.commit_max < self.checkpoint.op() {
            return invalid("commit_max is below the checkpoint op");
        }
        if self.sync_op_max < self.sync_op_min {
            return invalid("sync_op_max is below sync_op_min");
        }
        Ok(())
    }

    /// Checks that `new` may follow `self` (ref §1.4 Monotonicity): view, log_view and
    /// commit_max never decrease; the checkpoint op never decreases, and a checkpoint with the
    /// same op is the same checkpoint; the replica's identity never changes. Returns the first
    /// field that breaks it.
    pub fn regression(&self, new: &VsrState) -> Option<Regression> {
        let fields = [
            ("view", self.view as u64, new.view as u64),
            ("log_view", self.log_view as u64, new.log_view as u64),
            ("commit_max", self.commit_max, new.commit_max),
            ("checkpoint op", self.checkpoint.op(), new.checkpoint.op()),
        ];
        let regression = |(field, old, new)| Regression { field, old, new };
        if let Some(field) = fields.into_iter().find(|(_, old, new)| new < old) {
            return Some(regression(field));
        }
        if self.checkpoint.op() == new.checkpoint.op() && self.checkpoint != new.checkpoint {
            let id = |state: &VsrState| state.checkpoint.checkpoint_id() as u64;
            return Some(regression((
                "checkpoint id at the same op",
                id(self),
                id(new),
            )));
        }
        if self.replica_id != new.replica_id {
            let low = |id: u128| id as u64;
            return Some(regression((
                "replica_id",
                low(self.replica_id),
                low(new.replica_id),
            )));
        }
        if (self.replica_count, self.members) != (new.replica_count, new.members) {
            let count = |state: &VsrState| state.replica_count as u64;
            return Some(regression(("membership", count(self), count(new))));
        }
        None
    }
}

/// A field that a superblock update would move backwards (or change when it must not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Regression {
    pub field: &'static str,
    pub old: u64,
    pub new: u64,
}

impl CheckpointState {
    /// The checkpoint of a freshly formatted data file: the root prepare, no trailers.
    pub fn root(root: Header, storage_size_bytes: u64) -> CheckpointState {
        assert_eq!(prepare::operation(&root), Some(header::Operation::Root));
        CheckpointState {
            header: root,
            free_set_acquired_last_block_checksum: 0,
            free_set_released_last_block_checksum: 0,
            client_sessions_last_block_checksum: 0,
            manifest_oldest_checksum: 0,
            manifest_newest_checksum: 0,
            snapshots_block_checksum: 0,
            free_set_acquired_checksum: 0,
            free_set_released_checksum: 0,
            client_sessions_checksum: 0,
            parent_checkpoint_id: 0,
            grandparent_checkpoint_id: 0,
            free_set_acquired_last_block_address: 0,
            free_set_released_last_block_address: 0,
            client_sessions_last_block_address: 0,
            manifest_oldest_address: 0,
            manifest_newest_address: 0,
            snapshots_block_address: 0,
            storage_size_bytes,
            free_set_acquired_size_bytes: 0,
            free_set_released_size_bytes: 0,
            client_sessions_size_bytes: 0,
            manifest_block_count: 0,
            release: header::RELEASE,
        }
    }

    /// The op of the checkpoint.
    pub fn op(&self) -> u64 {
        prepare::op(&self.header)
    }

    /// The checksum of the 1024 encoded bytes: what prepares carry as `checkpoint_id`.
    pub fn checkpoint_id(&self) -> Checksum {
        let mut bytes = [0u8; copy::CHECKPOINT_STATE_BYTES];
        copy::encode_checkpoint(self, &mut bytes);
        checksum(&bytes)
    }
}
