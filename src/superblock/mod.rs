//! Superblock: four copies of the root of all durable state (in progress).
