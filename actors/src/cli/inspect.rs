//! `pinion inspect`: what a data file holds — zones, superblock copies, geometry — read-only.
//!
//! Reads the superblock first with a provisional layout (the superblock zone is the same for
//! every geometry), learns the file's geometry from it, then checks the file against it.

use super::{io_config, Failure, InspectArguments};
use crate::io::{DataFile, IoActor, IoClient};
use pinion::buffer::AlignedBuf;
use pinion::checkpoint;
use pinion::config::{Config, Preset, SUPERBLOCK_COPIES, SUPERBLOCK_COPY_SIZE};
use pinion::exit::FatalReason;
use pinion::grid::checkpoint::release_client_sessions_blocks;
use pinion::grid::free_set::{FreeSet, FreeSetDecodeError};
use pinion::grid::trailer::{self, TrailerError, TrailerKind, TrailerReader, TrailerReference};
use pinion::grid::OpenError;
use pinion::journal::{self, inspect::WalInspection, recovery::Read, recovery_table::Decision};
use pinion::layout::{Layout, Zone};
use pinion::superblock::{self, CopyReport, CopyStatus, Geometry, Inspection, SuperblockHeader};

pub fn run(arguments: &InspectArguments) -> Result<(), Failure> {
    let superblock_zone_bytes = SUPERBLOCK_COPIES * SUPERBLOCK_COPY_SIZE;
    let file = DataFile::open_read_only(&arguments.path, superblock_zone_bytes)
        .map_err(Failure::data_file)?;
    let file_size_bytes = file.size_bytes();
    let provisional = Config::small();
    let actor =
        IoActor::spawn(file, io_config(&provisional, &arguments.io)).map_err(Failure::io)?;
    let mut client = actor.client().map_err(Failure::io)?;
    let inspection = superblock::inspect(&mut client).map_err(Failure::fatal_io)?;
    drop(client);
    actor.shutdown().map_err(Failure::io)?;

    println!(
        "data file: {} ({} bytes)",
        arguments.path.display(),
        file_size_bytes
    );
    print_copies(&inspection);
    let working = inspection.working.map_err(Failure::superblock)?;
    if let Some(expected) = arguments.cluster {
        if working.cluster != expected {
            return Err(Failure::cli(format!(
                "the data file belongs to cluster {}, not the expected cluster {expected}: \
                 check the path and the --cluster argument",
                working.cluster
            )));
        }
    }
    let config = file_config(&working.geometry)?;
    let layout = Layout::new(&config);
    print_superblock(&working, &config);
    print_zones(&layout);
    if file_size_bytes < layout.data_file_size_min() {
        return Err(Failure::cli(format!(
            "data file is {file_size_bytes} bytes, shorter than the {} bytes its geometry \
             requires: it was truncated; restore it from a backup",
            layout.data_file_size_min()
        )));
    }
    let wal = inspect_wal(arguments, &config, &working);
    let grid = inspect_grid(arguments, &config, &working, file_size_bytes);
    wal.and(grid)
}

/// Reads both WAL rings (with the file's real layout) and prints what recovery would do.
fn inspect_wal(
    arguments: &InspectArguments,
    config: &Config,
    working: &SuperblockHeader,
) -> Result<(), Failure> {
    let file = DataFile::open_read_only(&arguments.path, Layout::new(config).data_file_size_min())
        .map_err(Failure::data_file)?;
    let actor = IoActor::spawn(file, io_config(config, &arguments.io)).map_err(Failure::io)?;
    let mut client = actor.client().map_err(Failure::io)?;
    let depth = config.journal_iops_read_max as usize;
    let rings =
        journal::inspect::read_rings(&mut client, config, depth).map_err(Failure::fatal_io)?;
    drop(client);
    actor.shutdown().map_err(Failure::io)?;

    let op_checkpoint = working.op_checkpoint();
    let read = Read {
        cluster: working.cluster,
        op_checkpoint,
        op_prepare_max: checkpoint::op_prepare_max(
            op_checkpoint,
            config.vsr_checkpoint_ops(),
            config.lsm_compaction_ops,
            config.pipeline_prepare_queue_max,
        ),
        solo: true,
        journal_iops_write_max: config.journal_iops_write_max,
        headers_redundant: &rings.headers_redundant,
        prepares: &rings.prepares,
    };
    let wal = journal::inspect::inspect(&read).map_err(|impossible| Failure {
        reason: FatalReason::Corrupt,
        message: format!("the WAL is corrupt: {impossible}"),
    })?;
    print_wal(&wal, op_checkpoint, arguments.slots);
    if wal.faulty_needed.is_empty() {
        return Ok(());
    }
    let slots: Vec<String> = wal.faulty_needed.iter().map(ToString::to_string).collect();
    Err(Failure {
        reason: FatalReason::Corrupt,
        message: format!(
            "the WAL has lost prepares that no local copy can restore and the checkpoint does not \
             cover: {}; start-up would refuse this data file: restore it from a backup",
            slots.join(", ")
        ),
    })
}

fn print_wal(wal: &WalInspection, op_checkpoint: u64, all_slots: bool) {
    let head = wal.op_max.map_or("none".to_string(), |op| op.to_string());
    println!(
        "\nWAL ({} slots; checkpoint op {op_checkpoint}, op_prepare_max {}):",
        wal.slots.len(),
        wal.op_prepare_max
    );
    println!(
        "  head op {head}  clean {}  repairable {}  truncated {}  faulty below checkpoint {}  faulty needed {}",
        wal.clean_count(),
        wal.repairable_count(),
        wal.truncated_count(),
        wal.faulty_not_needed.len(),
        wal.faulty_needed.len()
    );
    let listed: Vec<usize> = (0..wal.slots.len())
        .filter(|slot| {
            all_slots || !matches!(wal.slots[*slot].decision, Decision::Eql | Decision::Nil)
        })
        .collect();
    if listed.is_empty() {
        return;
    }
    println!(
        "  {}:",
        if all_slots {
            "slots"
        } else {
            "slots recovery would not leave clean"
        }
    );
    println!("    slot  op          case  decision");
    for slot in listed {
        let op = wal.ops[slot].map_or("-".to_string(), |op| op.to_string());
        let decision = &wal.slots[slot];
        println!(
            "    {slot:<4}  {op:<10}  @{}    {}",
            decision.case.label(),
            decision_name(decision.decision)
        );
    }
}

fn decision_name(decision: Decision) -> &'static str {
    match decision {
        Decision::Eql => "eql (clean)",
        Decision::Nil => "nil (empty)",
        Decision::Fix => "fix (rewrite the redundant header from the prepare)",
        Decision::Vsr => "vsr (prepare lost)",
        Decision::Cut => "cut (beyond prepare_max: truncate)",
        Decision::CutTorn => "cut_torn (torn append: truncate)",
        Decision::Unreachable => "unreachable",
    }
}

/// One checkpoint trailer as inspect read it.
struct TrailerInspection {
    kind: TrailerKind,
    reference: TrailerReference,
    /// The trailer's bytes and its blocks in chain order, or why it was refused.
    result: Result<(Vec<u8>, Vec<u64>), TrailerError>,
}

/// The checkpoint's free set, as the grid would open it, or why it could not be.
enum FreeSetInspection {
    /// A free-set trailer was refused: nothing to decode.
    Unread,
    Invalid(FreeSetDecodeError),
    /// A client-sessions trailer block the decoded free set does not hold acquired.
    ClientSessionsUnheld(OpenError),
    Decoded {
        free_set: FreeSet,
        /// The free-set trailers' own blocks (acquired and released since the checkpoint).
        trailer_block_count: u64,
        /// The client-sessions trailer's blocks (in the encoding, released since the
        /// checkpoint).
        client_sessions_block_count: u64,
    },
}

/// Reads the working checkpoint's trailers (read-only: no repair) and prints what the grid would
/// open: the free set's counts and each trailer chain's state. A trailer or free set the grid
/// would refuse is corruption (exit 10).
fn inspect_grid(
    arguments: &InspectArguments,
    config: &Config,
    working: &SuperblockHeader,
    file_size_bytes: u64,
) -> Result<(), Failure> {
    let data_file_size_min = Layout::new(config).data_file_size_min();
    let file = DataFile::open_read_only(&arguments.path, data_file_size_min)
        .map_err(Failure::data_file)?;
    let actor = IoActor::spawn(file, io_config(config, &arguments.io)).map_err(Failure::io)?;
    let mut client = actor.client().map_err(Failure::io)?;
    let checkpoint = &working.vsr_state.checkpoint;
    let trailers = TrailerKind::ALL.map(|kind| {
        let reference = kind.reference(checkpoint);
        let result = read_trailer(&mut client, config, kind, reference);
        TrailerInspection {
            kind,
            reference,
            result,
        }
    });
    let manifest = read_manifest(&mut client, config, checkpoint);
    drop(client);
    actor.shutdown().map_err(Failure::io)?;

    let free_set = decode_free_set(config, &trailers);
    let storage_size = &checkpoint.storage_size_bytes;
    let storage_size_error = match &free_set {
        FreeSetInspection::Decoded { free_set, .. } => {
            let blocks = free_set.highest_address_acquired().unwrap_or(0);
            let computed = data_file_size_min + blocks * config.block_size;
            (computed != *storage_size).then_some(OpenError::StorageSize {
                recorded: *storage_size,
                computed,
            })
        }
        _ => None,
    };
    print_grid(config, working, file_size_bytes, &trailers, &free_set);
    let mut errors: Vec<String> = trailers
        .iter()
        .filter_map(|trailer| trailer.result.as_ref().err())
        .map(ToString::to_string)
        .collect();
    match &free_set {
        FreeSetInspection::Invalid(error) => errors.push(error.to_string()),
        FreeSetInspection::ClientSessionsUnheld(error) => errors.push(error.to_string()),
        _ => {}
    }
    errors.extend(storage_size_error.map(|error| error.to_string()));
    match &manifest {
        Ok(manifest) => println!(
            "  manifest: {} block(s), {} table(s): valid",
            checkpoint.manifest_block_count,
            manifest.table_count()
        ),
        Err(error) => {
            println!("  manifest: {error}");
            errors.push(format!("manifest: {error}"));
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(Failure {
        reason: FatalReason::Corrupt,
        message: format!(
            "the grid's checkpoint is corrupt: {}; start-up would refuse this data file: restore \
             it from a backup",
            errors.join("; ")
        ),
    })
}

/// Reads one trailer chain, backwards from the block the superblock names, validating every
/// block and the whole trailer's checksum.
fn read_trailer(
    client: &mut IoClient,
    config: &Config,
    kind: TrailerKind,
    reference: TrailerReference,
) -> Result<(Vec<u8>, Vec<u64>), TrailerError> {
    let size_bytes_max = kind.size_bytes_max(config);
    let mut reader = TrailerReader::new(kind, reference, config.block_size, size_bytes_max)?;
    // The reference is checked against the configuration's bound before this allocation.
    let mut bytes = vec![0; reference.size_bytes as usize];
    let buffer = AlignedBuf::new(config.block_size as usize);
    let (_, result) = trailer::read(client, &mut reader, buffer, &mut bytes);
    result?;
    Ok((bytes, reader.addresses().to_vec()))
}

/// Reads and validates the checkpoint's manifest chain, as the forest's open does (every block
/// against the checksum its successor or the superblock names). Table blocks are not read: a
/// damaged one is found when it is first read, and stops the service naming it.
fn read_manifest(
    client: &mut IoClient,
    config: &Config,
    checkpoint: &pinion::superblock::CheckpointState,
) -> Result<pinion::lsm::manifest::Manifest, String> {
    use pinion::lsm::manifest::{ManifestReader, ManifestReference};
    use pinion::storage::Storage;
    let reference = ManifestReference::from_checkpoint(checkpoint);
    let mut reader = ManifestReader::new(reference, config.lsm_levels, config.block_size)
        .map_err(|error| error.to_string())?;
    let mut buffer = AlignedBuf::new(config.block_size as usize);
    while let Some(next) = reader.next_block() {
        let request = pinion::grid::block::read_request(0, next.address, buffer, config.block_size);
        client.submit(request);
        let completion = client.next_completion();
        buffer = completion.buffer;
        if let Err(fatal) = completion.result {
            return Err(format!("block {}: {fatal}", next.address));
        }
        reader
            .on_block(&buffer)
            .map_err(|error| error.to_string())?;
    }
    Ok(reader.finish())
}

/// Decodes the free set from its two trailers and patches in their own blocks, then releases
/// the client-sessions trailer's blocks (when that trailer was read), as the grid's open does.
fn decode_free_set(config: &Config, trailers: &[TrailerInspection; 3]) -> FreeSetInspection {
    let [acquired, released, client_sessions] = trailers;
    let (Ok((acquired, acquired_blocks)), Ok((released, released_blocks))) =
        (&acquired.result, &released.result)
    else {
        return FreeSetInspection::Unread;
    };
    let blocks_count_limit = config.grid_blocks_limit(Layout::new(config).data_file_size_min());
    let trailer_blocks = [acquired_blocks.as_slice(), released_blocks.as_slice()];
    let mut free_set =
        match FreeSet::open(blocks_count_limit, &[acquired], &[released], trailer_blocks) {
            Ok(free_set) => free_set,
            Err(error) => return FreeSetInspection::Invalid(error),
        };
    let client_sessions_blocks = match &client_sessions.result {
        Ok((_, blocks)) => blocks.as_slice(),
        Err(_) => &[],
    };
    if let Err(error) = release_client_sessions_blocks(&mut free_set, client_sessions_blocks) {
        return FreeSetInspection::ClientSessionsUnheld(error);
    }
    FreeSetInspection::Decoded {
        free_set,
        trailer_block_count: (acquired_blocks.len() + released_blocks.len()) as u64,
        client_sessions_block_count: client_sessions_blocks.len() as u64,
    }
}

fn print_grid(
    config: &Config,
    working: &SuperblockHeader,
    file_size_bytes: u64,
    trailers: &[TrailerInspection; 3],
    free_set: &FreeSetInspection,
) {
    let storage_size_bytes = working.vsr_state.checkpoint.storage_size_bytes;
    println!(
        "\ngrid (checkpoint op {}; block size {}):",
        working.op_checkpoint(),
        config.block_size
    );
    match free_set {
        FreeSetInspection::Unread => {
            println!("  free set: not decoded (a free-set trailer was refused, below)")
        }
        FreeSetInspection::Invalid(error) => println!("  free set: invalid: {error}"),
        FreeSetInspection::ClientSessionsUnheld(error) => {
            println!("  free set: disagrees with the client-sessions trailer: {error}")
        }
        FreeSetInspection::Decoded {
            free_set,
            trailer_block_count,
            client_sessions_block_count,
        } => {
            let highest = free_set
                .highest_address_acquired()
                .map_or("none".to_string(), |address| address.to_string());
            println!(
                "  blocks acquired {}  released {} ({trailer_block_count} of them the free-set \
                 trailers' own)  highest acquired address {highest}",
                free_set.count_acquired(),
                free_set.count_released()
            );
            if *client_sessions_block_count > 0 {
                println!(
                    "  the client-sessions trailer's {client_sessions_block_count} blocks are                      among the released (freed once the next checkpoint is durable)"
                );
            }
        }
    }
    if file_size_bytes < storage_size_bytes {
        println!(
            "  the data file ({file_size_bytes} bytes) ends before the checkpoint's storage size: \
             blocks beyond its end read as zeros"
        );
    }
    if trailers
        .iter()
        .all(|trailer| trailer.reference == TrailerReference::EMPTY)
    {
        println!(
            "  every checkpoint trailer is empty: the checkpoint has no block acquired and no \
             client session (as a freshly formatted data file)"
        );
    }
    println!("  trailer            size (bytes)  blocks  last block  status");
    for trailer in trailers {
        let reference = &trailer.reference;
        let last_block = match reference.last_block_address {
            0 => "-".to_string(),
            address => address.to_string(),
        };
        let status = match &trailer.result {
            Err(error) => format!("corrupt: {}", error.fault),
            Ok(_) if reference.size_bytes == 0 => "empty".to_string(),
            Ok(_) => "ok".to_string(),
        };
        println!(
            "  {:<17}  {:>12}  {:>6}  {last_block:>10}  {status}",
            trailer.kind.name(),
            reference.size_bytes,
            reference.block_count(config.block_size),
        );
    }
}

/// The file's geometry over the per-process limits of the preset with that geometry (or the
/// small preset's limits, which fit any valid geometry that is not a preset's).
fn file_config(geometry: &Geometry) -> Result<Config, Failure> {
    let base = preset_of(geometry).map_or_else(Config::small, Preset::config);
    let config = geometry.apply(&base);
    config.validate().map_err(|error| Failure {
        reason: FatalReason::Corrupt,
        message: format!("the superblock records an unusable geometry: {error}"),
    })?;
    Ok(config)
}

/// The preset whose geometry this is, if any.
fn preset_of(geometry: &Geometry) -> Option<Preset> {
    Preset::ALL
        .into_iter()
        .find(|preset| Geometry::from_config(&preset.config()) == *geometry)
}

fn print_copies(inspection: &Inspection) {
    println!("\nsuperblock copies:");
    println!("  copy  status                      sequence  checksum  cluster  working");
    for report in &inspection.copies {
        println!("  {}", copy_line(report));
    }
}

fn copy_line(report: &CopyReport) -> String {
    let fields = &report.fields;
    let status = match &report.status {
        CopyStatus::Valid => "valid".to_string(),
        CopyStatus::CopyIndexMismatch { found } => format!("misplaced copy {found}"),
        CopyStatus::Corrupt(error) => format!("corrupt: {error}"),
    };
    if matches!(report.status, CopyStatus::Corrupt(_)) {
        return format!("{:<4}  {status}", report.slot);
    }
    let working = if report.in_working_quorum {
        "yes"
    } else {
        "no"
    };
    format!(
        "{:<4}  {status:<26}  {:>8}  {:08x}  {:>7}  {working}",
        report.slot, fields.sequence, fields.checksum, fields.cluster
    )
}

fn print_superblock(working: &SuperblockHeader, config: &Config) {
    let vsr = &working.vsr_state;
    let preset = preset_of(&working.geometry).map_or("custom", Preset::name);
    println!("\nworking superblock:");
    println!(
        "  sequence {}  checksum {:08x}  cluster {}",
        working.sequence,
        working.checksum(),
        working.cluster
    );
    println!(
        "  checkpoint op {}  checkpoint id {:08x}  commit_max {}  view {}  log_view {}",
        working.op_checkpoint(),
        working.checkpoint_id(),
        vsr.commit_max,
        vsr.view,
        vsr.log_view
    );
    println!("  storage size {} bytes", vsr.checkpoint.storage_size_bytes);
    println!(
        "  geometry ({preset}): message_size_max {}  journal_slot_count {}  clients_max {}  \
         block_size {}  pipeline {}  lsm_compaction_ops {}  checkpoint every {} ops",
        config.message_size_max,
        config.journal_slot_count,
        config.clients_max,
        config.block_size,
        config.pipeline_prepare_queue_max,
        config.lsm_compaction_ops,
        config.vsr_checkpoint_ops()
    );
}

fn print_zones(layout: &Layout) {
    println!("\nzones:");
    println!("  zone            start (hex)   start (bytes)    size (bytes)");
    for zone in Zone::ALL {
        let extent = layout.extent(zone);
        let size = extent
            .size
            .map_or("grows".to_string(), |size| size.to_string());
        println!(
            "  {:<14}  {:>#11x}  {:>14}  {:>14}",
            zone.name(),
            extent.start,
            extent.start,
            size
        );
    }
}
