//! `pinion inspect`: what a data file holds — zones, superblock copies, geometry — read-only.
//!
//! Reads the superblock first with a provisional layout (the superblock zone is the same for
//! every geometry), learns the file's geometry from it, then checks the file against it.

use super::{io_config, Failure, InspectArguments};
use crate::io::{DataFile, IoActor};
use pinion::config::{Config, Preset, SUPERBLOCK_COPIES, SUPERBLOCK_COPY_SIZE};
use pinion::exit::FatalReason;
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
    Ok(())
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
