//! `pinion format`: create a data file, preallocate it, write the WAL, then the superblock.

use super::{io_config, validated, Failure, FormatArguments};
use crate::io::{DataFile, IoActor};
use pinion::layout::Layout;

pub fn run(arguments: &FormatArguments) -> Result<(), Failure> {
    let config = validated(arguments.preset)?;
    let layout = Layout::new(&config);
    let io = io_config(&config, &arguments.io);
    let size_bytes = layout.data_file_size_min();
    let file = DataFile::create(&arguments.path, size_bytes, io.durability, arguments.force)
        .map_err(Failure::data_file)?;
    let actor = IoActor::spawn(file, io).map_err(Failure::io)?;
    let mut client = actor.client().map_err(Failure::io)?;
    let depth = client.depth();
    let formatted = pinion::format::format(&mut client, &config, arguments.cluster, depth)
        .map_err(Failure::superblock)?;
    drop(client);
    actor.shutdown().map_err(Failure::io)?;
    println!(
        "formatted {}: cluster {}, {} geometry, {} bytes, superblock sequence {}",
        arguments.path.display(),
        arguments.cluster,
        arguments.preset.name(),
        size_bytes,
        formatted.sequence,
    );
    Ok(())
}
