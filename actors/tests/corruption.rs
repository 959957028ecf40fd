//! The corruption campaign (issue 7): "corruption is detected by checksums and either repaired
//! from local redundancy or refused with a precise error, never served", end to end.
//!
//! Each test builds one loaded data file (small preset): raw clients with fixed ids send echo
//! requests past several checkpoints, and the model records every acknowledged request — its
//! body and frame, the reply frame, the reply's op and timestamp, hence the Thing the echo
//! state machine must hold. The file is then stopped cleanly, or (second test) the real binary
//! is killed with `kill -9` under load. Then seeded trials run, each on a fresh copy of the file:
//! damage one region (bit flips, a zeroed sector, or a sector copied from elsewhere: misdirected),
//! run `pinion inspect`, start the service in-process, and classify:
//!
//! - **served**: it starts, every acknowledged Thing looks up with the exact value, and each
//!   client's retried last request gets the byte-identical reply — or, for a damaged client-reply
//!   slot that replay does not rewrite, no reply at all (the client times out);
//! - **refused**: start-up fails with `FatalReason::Corrupt` (exit 10) and a message naming the
//!   place (the op, the grid block address, the superblock); `pinion inspect` exits 10 too where
//!   the region is one it reads (superblock, WAL, checkpoint trailers);
//! - **fail-stop**: it starts (the damaged block is not read before serving) and the replica
//!   stops with `Corrupt`, naming the block, when a lookup reads it; nothing wrong was answered
//!   before.
//!
//! Anything else — a value different from the model, an acknowledged Thing missing, a reply
//! that differs, a panic — is a violation. Every trial's region, damage and positions come from
//! its seed; a failure prints the seed and `PINION_CORRUPTION_SEED=<seed>` runs that trial alone
//! (on a freshly loaded file: timestamps differ, the positions relative to the model do not).

use pinion::checksum::Checksum;
use pinion::config::{Config, SECTOR_SIZE, SUPERBLOCK_COPIES, SUPERBLOCK_COPY_SIZE};
use pinion::exit::FatalReason;
use pinion::header::reply::{eviction_fields, EvictionReason, Reply};
use pinion::header::request::Request;
use pinion::header::{prepare, Command, Header, HEADER_BYTES};
use pinion::layout::{Layout, Zone};
use pinion::prng::Prng;
use pinion::state_machine::echo::{lookup_reply_things, lookup_request, thing_value};
use pinion::superblock::{copy, SuperblockHeader};
use pinion_actors::client::{Client, ClientOptions};
use pinion_actors::service::{Service, ServiceOptions};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use support::{binary, format_small, spawn_binary};

const CLUSTER: u128 = 0xc0ff_ee07;
const REGISTER: u8 = 2;
const ECHO: u8 = 128;
const LOOKUP: u8 = 129;
const SECTOR: usize = SECTOR_SIZE as usize;
const COPY_BYTES: usize = SUPERBLOCK_COPY_SIZE as usize;
/// How long a retried request waits for its stored reply (or, where its slot is damaged, the
/// eviction that says the reply is lost), per attempt, and how many attempts it makes.
const RETRY_TIMEOUT: Duration = Duration::from_secs(2);
const RETRY_ATTEMPTS: u32 = 2;

fn config() -> Config {
    Config::small()
}

// ---------------------------------------------------------------------------------------------
// The model: what was acknowledged.

/// One acknowledged echo request.
#[derive(Clone, Debug)]
struct Acked {
    body: Vec<u8>,
    request_frame: Vec<u8>,
    reply_frame: Vec<u8>,
    op: u64,
    timestamp: u64,
}

/// A request sent but not acknowledged (the server died): it may or may not have executed.
#[derive(Clone, Debug)]
struct Pending {
    body: Vec<u8>,
    request_frame: Vec<u8>,
    request_number: u32,
    request_checksum: Checksum,
}

#[derive(Clone, Debug)]
struct ClientModel {
    id: u128,
    acked: Vec<Acked>,
    pending: Option<Pending>,
}

/// The Thing an acknowledged echo stored: (id, timestamp, value). The service names a
/// request's Thing by the request's timestamp (a prepare may carry several requests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ExpectedThing {
    id: u64,
    timestamp: u64,
    value: u64,
}

impl ExpectedThing {
    fn of(client: u128, _op: u64, timestamp: u64, body: &[u8]) -> ExpectedThing {
        ExpectedThing {
            id: timestamp,
            timestamp,
            value: thing_value(client, timestamp, timestamp, ECHO, body),
        }
    }
}

fn body_for(client_index: usize, request: u32) -> Vec<u8> {
    // Never empty: an empty reply is answered from the client table, not from its slot.
    let size = 1 + (client_index * 977 + request as usize * 131) % 3200;
    (0..size)
        .map(|i| (i as u32).wrapping_mul(31) as u8 ^ client_index as u8 ^ request as u8)
        .collect()
}

fn frame_of(header: &Header, body: &[u8]) -> Vec<u8> {
    let mut frame = header.as_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

/// Reads one whole message and validates it (checksums first).
fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let limit = config().message_size_max;
    let invalid = |error: String| std::io::Error::new(std::io::ErrorKind::InvalidData, error);
    let mut frame = vec![0; HEADER_BYTES];
    stream.read_exact(&mut frame)?;
    let header = Header::from_bytes(&frame);
    header
        .validate_header_only(limit)
        .map_err(|error| invalid(format!("{error}")))?;
    frame.resize(header.size() as usize, 0);
    stream.read_exact(&mut frame[HEADER_BYTES..])?;
    header
        .validate(&frame[HEADER_BYTES..], limit)
        .map_err(|error| invalid(format!("{error}")))?;
    Ok(frame)
}

/// A client that builds its own frames, so a request can be resent byte for byte later.
struct RawClient {
    index: usize,
    session: u64,
    parent: Checksum,
    request_number: u32,
    stream: TcpStream,
    model: ClientModel,
}

impl RawClient {
    fn register(address: SocketAddr, index: usize) -> RawClient {
        let id = 0x5eed_0000_0000 + index as u128 + 1;
        let mut stream = connect_retrying(address);
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let register = Request {
            client: id,
            operation: REGISTER,
            ..Request::default()
        }
        .header(CLUSTER, &[]);
        stream.write_all(register.as_bytes()).unwrap();
        let reply = Reply::decode(&Header::from_bytes(&read_frame(&mut stream).unwrap()));
        RawClient {
            index,
            session: reply.commit,
            parent: reply.context,
            request_number: 0,
            stream,
            model: ClientModel {
                id,
                acked: Vec::new(),
                pending: None,
            },
        }
    }

    /// Sends the next echo; `false` (and the request recorded as pending) if the server died.
    fn echo(&mut self) -> bool {
        assert!(self.model.pending.is_none());
        let request_number = self.request_number + 1;
        let body = body_for(self.index, request_number);
        let header = Request {
            parent: self.parent,
            client: self.model.id,
            session: self.session,
            request: request_number,
            operation: ECHO,
            ..Request::default()
        }
        .header(CLUSTER, &body);
        let request_frame = frame_of(&header, &body);
        let reply_frame = self
            .stream
            .write_all(&request_frame)
            .and_then(|()| read_frame(&mut self.stream));
        let Ok(reply_frame) = reply_frame else {
            self.model.pending = Some(Pending {
                body,
                request_frame,
                request_number,
                request_checksum: header.checksum(),
            });
            return false;
        };
        let reply = Reply::decode(&Header::from_bytes(&reply_frame));
        assert_eq!(reply.request, request_number);
        assert_eq!(&reply_frame[HEADER_BYTES..], body.as_slice());
        self.request_number = request_number;
        self.parent = reply.context;
        self.model.acked.push(Acked {
            body,
            request_frame,
            reply_frame,
            op: reply.op,
            timestamp: reply.timestamp,
        });
        true
    }
}

fn connect_retrying(address: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(address) {
            Ok(stream) => return stream,
            Err(error) if Instant::now() > deadline => panic!("connect to {address}: {error}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The loaded data file and what it holds where.

/// Grid blocks the checkpoint references, by kind.
#[derive(Debug, Default)]
struct GridBlocks {
    free_set: Vec<u64>,
    client_sessions: Vec<u64>,
    manifest: Vec<u64>,
    index: Vec<u64>,
    value: Vec<u64>,
}

impl GridBlocks {
    fn all(&self) -> Vec<u64> {
        let mut all: Vec<u64> = [
            &self.free_set,
            &self.client_sessions,
            &self.manifest,
            &self.index,
            &self.value,
        ]
        .into_iter()
        .flatten()
        .copied()
        .collect();
        all.sort_unstable();
        all
    }
}

struct Loaded {
    /// Holds the pristine file; every trial copies it.
    directory: tempfile::TempDir,
    path: PathBuf,
    clients: Vec<ClientModel>,
    layout: Layout,
    /// Whether all four superblock copies hold the same state (they do unless a kill landed
    /// in the middle of a superblock update).
    superblock_copies_equal: bool,
    op_checkpoint: u64,
    /// The op of each WAL slot's intact prepare.
    wal_ops: Vec<Option<u64>>,
    op_head: u64,
    /// The client-replies slot of each client that has one, by client index.
    reply_slots: Vec<(usize, u64)>,
    blocks: GridBlocks,
}

impl Loaded {
    fn client_last_op(&self, index: usize) -> Option<u64> {
        self.clients[index].acked.last().map(|acked| acked.op)
    }

    fn describe(&self) -> String {
        format!(
            "checkpoint op {}, WAL head op {}, {} clients ({} acknowledged echoes), reply slots \
             {:?}, grid blocks {:?}",
            self.op_checkpoint,
            self.op_head,
            self.clients.len(),
            self.clients.iter().map(|c| c.acked.len()).sum::<usize>(),
            self.reply_slots,
            self.blocks
        )
    }
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
}

/// Reads what the file holds where (docs/data_file.md), decoding independently of the service.
fn survey(directory: tempfile::TempDir, path: PathBuf, clients: Vec<ClientModel>) -> Loaded {
    let config = config();
    let layout = Layout::new(&config);
    let bytes = std::fs::read(&path).unwrap();
    let copies: Vec<_> = (0..SUPERBLOCK_COPIES as usize)
        .map(|index| copy::decode(&bytes[index * COPY_BYTES..(index + 1) * COPY_BYTES]))
        .collect();
    let superblock = copies
        .iter()
        .filter_map(|copy| copy.as_ref().ok())
        .max_by_key(|copy| copy.header.sequence)
        .expect("a valid superblock copy")
        .header
        .clone();
    let superblock_copies_equal = copies
        .iter()
        .all(|copy| matches!(copy, Ok(copy) if copy.header == superblock));
    let op_checkpoint = superblock.op_checkpoint();

    let wal_start = layout.zone_start(Zone::WalPrepares) as usize;
    let message_size_max = config.message_size_max as usize;
    let wal_ops: Vec<Option<u64>> = (0..config.journal_slot_count as usize)
        .map(|slot| {
            let at = wal_start + slot * message_size_max;
            let header = Header::from_bytes(&bytes[at..at + HEADER_BYTES]);
            let body_end = at + (header.size() as usize).min(message_size_max);
            let intact = header.valid_checksum()
                && header.command() == Some(Command::Prepare)
                && header
                    .validate(&bytes[at + HEADER_BYTES..body_end], config.message_size_max)
                    .is_ok();
            intact.then(|| prepare::op(&header))
        })
        .collect();
    let op_head = wal_ops.iter().flatten().copied().max().unwrap();

    let replies_start = layout.zone_start(Zone::ClientReplies) as usize;
    let reply_slots = (0..config.clients_max)
        .filter_map(|slot| {
            let at = replies_start + slot as usize * message_size_max;
            let header = Header::from_bytes(&bytes[at..at + HEADER_BYTES]);
            if !header.valid_checksum() || header.command() != Some(Command::Reply) {
                return None;
            }
            let client = Reply::decode(&header).client;
            let index = clients.iter().position(|model| model.id == client)?;
            Some((index, slot))
        })
        .collect();

    let blocks = grid_blocks(&bytes, &layout, &superblock);
    Loaded {
        directory,
        path,
        clients,
        layout,
        superblock_copies_equal,
        op_checkpoint,
        wal_ops,
        op_head,
        reply_slots,
        blocks,
    }
}

const BLOCK_FREE_SET: u8 = 1;
const BLOCK_CLIENT_SESSIONS: u8 = 2;
const BLOCK_MANIFEST: u8 = 3;
const BLOCK_INDEX: u8 = 4;
const BLOCK_VALUE: u8 = 5;

/// Walks the checkpoint's trailers, its manifest chain, the manifest's index blocks and their
/// value blocks.
fn grid_blocks(bytes: &[u8], layout: &Layout, superblock: &SuperblockHeader) -> GridBlocks {
    let block_size = layout.block_size() as usize;
    let block = |address: u64, block_type: u8| -> &[u8] {
        let at = layout.block_offset(address) as usize;
        let block = &bytes[at..at + block_size];
        let header = Header::from_bytes(&block[..HEADER_BYTES]);
        assert!(header.valid_checksum(), "block {address}");
        assert_eq!(u64_at(block, 224), address, "block {address}'s address");
        assert_eq!(block[240], block_type, "block {address}'s type");
        block
    };
    // Trailer and manifest chains link backwards: previous address at 160.
    let chain = |last: u64, block_type: u8| -> Vec<u64> {
        let mut addresses = Vec::new();
        let mut address = last;
        while address != 0 {
            addresses.push(address);
            address = u64_at(block(address, block_type), 160);
        }
        addresses
    };
    let checkpoint = &superblock.vsr_state.checkpoint;
    let mut blocks = GridBlocks::default();
    for last in [
        checkpoint.free_set_acquired_last_block_address,
        checkpoint.free_set_released_last_block_address,
    ] {
        blocks.free_set.extend(chain(last, BLOCK_FREE_SET));
    }
    blocks.client_sessions = chain(
        checkpoint.client_sessions_last_block_address,
        BLOCK_CLIENT_SESSIONS,
    );
    blocks.manifest = chain(checkpoint.manifest_newest_address, BLOCK_MANIFEST);
    for manifest in &blocks.manifest {
        let manifest = block(*manifest, BLOCK_MANIFEST);
        for entry in 0..u32_at(manifest, 168) as usize {
            let at = HEADER_BYTES + entry * 104;
            blocks.index.push(u64_at(manifest, at));
        }
    }
    for index in &blocks.index {
        let index = block(*index, BLOCK_INDEX);
        let key_size = u32_at(index, 136) as usize;
        for record in 0..u32_at(index, 128) as usize {
            let at = HEADER_BYTES + record * (12 + 2 * key_size);
            let address = u64_at(index, at + 4);
            block(address, BLOCK_VALUE);
            blocks.value.push(address);
        }
    }
    blocks
}

/// Clients × requests against the in-process service, past several checkpoints, then a clean
/// stop. Clients 0 and 1 stop early, so their latest replies end up below the checkpoint (read
/// back from the client-replies zone, not replayed); clients 2–4 go on.
fn load_and_stop() -> Loaded {
    let directory = tempfile::tempdir_in(".").unwrap();
    let path = directory.path().join("loaded.pinion");
    format_small(&path, CLUSTER);
    let service = Service::start(ServiceOptions::new(
        path.clone(),
        "127.0.0.1:0".parse().unwrap(),
    ))
    .unwrap();
    let address = service.local_addr();
    let mut clients: Vec<RawClient> = (0..5).map(|i| RawClient::register(address, i)).collect();
    for round in 0..55 {
        for client in clients.iter_mut().filter(|c| round < 8 || c.index >= 2) {
            assert!(client.echo());
        }
    }
    let models = clients.into_iter().map(|client| client.model).collect();
    let stats = service.stop().unwrap();
    let loaded = survey(directory, path, models);
    assert_eq!(loaded.op_head, stats.replica.op);
    assert_eq!(loaded.op_checkpoint, stats.replica.op_checkpoint);
    loaded
}

/// Four clients load the real binary, which is killed with `kill -9` mid-load: each client's
/// request in flight at the kill stays pending in the model.
fn load_and_kill() -> Loaded {
    let directory = tempfile::tempdir_in(".").unwrap();
    let path = directory.path().join("loaded.pinion");
    format_small(&path, CLUSTER);
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = spawn_binary(&path, address);
    let requests_count = 400;
    let acknowledged = Arc::new(AtomicU32::new(0));
    let threads: Vec<_> = (0..4)
        .map(|index| {
            let acknowledged = acknowledged.clone();
            std::thread::spawn(move || {
                let mut client = RawClient::register(address, index);
                for _ in 0..requests_count {
                    if !client.echo() {
                        break;
                    }
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                }
                client.model
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.load(Ordering::Relaxed) < 170 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let models: Vec<ClientModel> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        models.iter().all(|model| model.pending.is_some()),
        "the load ended before the kill"
    );
    survey(directory, path, models)
}

// ---------------------------------------------------------------------------------------------
// Trials: one region damaged one way.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Region {
    /// No damage: the file as loaded.
    Control,
    /// This many of the four superblock copies.
    SuperblockCopies(usize),
    /// One redundant-header sector (16 WAL slots).
    WalHeaderSector,
    /// The prepare of the head op.
    WalPrepareHead,
    /// The prepare of an op above the checkpoint and below the head.
    WalPrepareAboveCheckpoint,
    /// The prepare of an op at or below the checkpoint (still in the WAL).
    WalPrepareAtOrBelowCheckpoint,
    /// The reply slot of a client whose latest reply is at or below the checkpoint.
    ReplySlotCheckpointed,
    /// The reply slot of a client whose latest reply is above the checkpoint (replayed).
    ReplySlotReplayed,
    FreeSetTrailerBlock,
    ClientSessionsTrailerBlock,
    ManifestBlock,
    IndexBlock,
    ValueBlock,
    /// One to three grid blocks the checkpoint references, of any kind.
    GridBlocksInUse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Damage {
    BitFlips,
    ZeroedSector,
    /// A sector (a whole superblock copy) copied from another place of the same zone.
    Misdirected,
}

const DAMAGES: [Damage; 3] = [Damage::BitFlips, Damage::ZeroedSector, Damage::Misdirected];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Served,
    Refused,
    FailStop,
}

/// What a trial may end as.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Served, and the damaged place rewritten (superblock copies) or not needed.
    Served,
    /// Served, with the damaged reply slot's client getting no reply to its retry.
    ServedReplyWithheld,
    Refused,
    /// Refused at start-up, or (blocks read only when serving) fail-stop.
    RefusedOrFailStop,
    /// Determined by what the kill left behind: served or refused, never wrong.
    ServedOrRefused,
}

impl Expect {
    fn allows(self, class: Class) -> bool {
        match self {
            Expect::Served | Expect::ServedReplyWithheld => class == Class::Served,
            Expect::Refused => class == Class::Refused,
            Expect::RefusedOrFailStop => class != Class::Served,
            Expect::ServedOrRefused => class != Class::FailStop,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Trial {
    seed: u64,
    region: Region,
    damage: Damage,
    expect: Expect,
}

/// Where the damage went, and what a refusal must name.
#[derive(Debug, Default)]
struct Damaged {
    place: String,
    /// A refusal or fail-stop message must contain one of these (e.g. `op 170`, `block 37`).
    names: Vec<String>,
    /// The client whose reply slot was damaged and is not rewritten by replay: its retry must
    /// get no reply (the slot fails validation), never a wrong one.
    reply_withheld_client: Option<usize>,
    /// Superblock copies damaged: after a served trial all four must hold the same state.
    superblock_copies: Vec<usize>,
    /// Whether `pinion inspect` reads the damaged region (and so must agree with start-up).
    inspect_reads_it: bool,
}

fn sector_nonzero(bytes: &[u8], at: usize) -> bool {
    bytes[at..at + SECTOR].iter().any(|byte| *byte != 0)
}

/// Damages `[at, at + meaningful)` (inside a region of `region_bytes` from `at`); `source` is
/// the offset of the bytes a misdirected write would have carried here.
fn damage_range(
    bytes: &mut [u8],
    rng: &mut Prng,
    damage: Damage,
    at: usize,
    meaningful: usize,
    region_bytes: usize,
    source: usize,
) -> String {
    match damage {
        Damage::BitFlips => {
            let count = 1 + rng.below(8) as usize;
            let mut bits = BTreeSet::new();
            while bits.len() < count {
                bits.insert(rng.below(meaningful as u64 * 8) as usize);
            }
            for bit in &bits {
                bytes[at + bit / 8] ^= 1 << (bit % 8);
            }
            format!(
                "{count} bit flips at bytes {:?}",
                bits.iter().map(|b| b / 8).collect::<Vec<_>>()
            )
        }
        Damage::ZeroedSector => {
            let sectors: Vec<usize> = (0..region_bytes / SECTOR)
                .map(|sector| at + sector * SECTOR)
                .filter(|sector_at| sector_nonzero(bytes, *sector_at))
                .collect();
            let sector_at = sectors[rng.below(sectors.len() as u64) as usize];
            bytes[sector_at..sector_at + SECTOR].fill(0);
            format!("zeroed sector at +{}", sector_at - at)
        }
        Damage::Misdirected => {
            bytes.copy_within(source..source + region_bytes, at);
            format!("overwritten by the bytes at file offset {source}")
        }
    }
}

fn pick<T: Copy>(rng: &mut Prng, items: &[T]) -> T {
    assert!(!items.is_empty());
    items[rng.below(items.len() as u64) as usize]
}

/// Applies the trial's damage to `bytes` (a copy of the loaded file).
fn apply(loaded: &Loaded, trial: &Trial, bytes: &mut [u8]) -> Damaged {
    let mut at = Damaging {
        loaded,
        bytes,
        rng: Prng::new(trial.seed),
        damage: trial.damage,
        damaged: Damaged {
            inspect_reads_it: true,
            ..Damaged::default()
        },
    };
    let ops_in_wal: Vec<u64> = loaded.wal_ops.iter().flatten().copied().collect();
    at.damaged.place = match trial.region {
        Region::Control => "nothing".to_string(),
        Region::SuperblockCopies(count) => at.superblock_copies(count),
        Region::WalHeaderSector => at.wal_header_sector(),
        Region::WalPrepareHead => at.prepare(loaded.op_head),
        Region::WalPrepareAboveCheckpoint => {
            let ops: Vec<u64> = ops_in_wal
                .into_iter()
                .filter(|op| *op > loaded.op_checkpoint && *op < loaded.op_head)
                .collect();
            let op = pick(&mut at.rng, &ops);
            at.prepare(op)
        }
        Region::WalPrepareAtOrBelowCheckpoint => {
            let ops: Vec<u64> = ops_in_wal
                .into_iter()
                .filter(|op| *op <= loaded.op_checkpoint)
                .collect();
            let op = pick(&mut at.rng, &ops);
            at.prepare(op)
        }
        Region::ReplySlotCheckpointed => at.reply_slot(true),
        Region::ReplySlotReplayed => at.reply_slot(false),
        region => {
            let blocks = &loaded.blocks;
            let (candidates, count) = match region {
                Region::FreeSetTrailerBlock => (blocks.free_set.clone(), 1),
                Region::ClientSessionsTrailerBlock => (blocks.client_sessions.clone(), 1),
                Region::ManifestBlock => (blocks.manifest.clone(), 1),
                Region::IndexBlock => (blocks.index.clone(), 1),
                Region::ValueBlock => (blocks.value.clone(), 1),
                Region::GridBlocksInUse => (blocks.all(), 1 + at.rng.below(3) as usize),
                _ => unreachable!("{region:?}"),
            };
            // inspect reads the checkpoint trailers and the manifest, not the tables.
            at.damaged.inspect_reads_it = matches!(
                region,
                Region::FreeSetTrailerBlock
                    | Region::ClientSessionsTrailerBlock
                    | Region::ManifestBlock
            );
            at.blocks(&candidates, count)
        }
    };
    at.damaged
}

/// One trial's damage being applied: the file's bytes, the seed's choices, and the record.
struct Damaging<'a> {
    loaded: &'a Loaded,
    bytes: &'a mut [u8],
    rng: Prng,
    damage: Damage,
    damaged: Damaged,
}

impl Damaging<'_> {
    fn range(
        &mut self,
        at: usize,
        meaningful: usize,
        region_bytes: usize,
        source: usize,
    ) -> String {
        damage_range(
            self.bytes,
            &mut self.rng,
            self.damage,
            at,
            meaningful,
            region_bytes,
            source,
        )
    }

    /// `count` random copies; a misdirected one gets a whole other, undamaged copy.
    fn superblock_copies(&mut self, count: usize) -> String {
        let mut copies: Vec<usize> = (0..SUPERBLOCK_COPIES as usize).collect();
        for index in (1..copies.len()).rev() {
            copies.swap(index, self.rng.below(index as u64 + 1) as usize);
        }
        let (chosen, kept) = copies.split_at(count);
        let source = pick(&mut self.rng, kept) * COPY_BYTES;
        let mut chosen = chosen.to_vec();
        chosen.sort_unstable();
        let what: Vec<String> = chosen
            .iter()
            .map(|copy| {
                let what = self.range(copy * COPY_BYTES, COPY_BYTES, COPY_BYTES, source);
                format!("copy {copy}: {what}")
            })
            .collect();
        self.damaged.superblock_copies = chosen;
        self.damaged.names.push("superblock".to_string());
        format!("superblock {}", what.join("; "))
    }

    /// One redundant-header sector; a misdirected one gets another header sector.
    fn wal_header_sector(&mut self) -> String {
        let sectors = config().journal_header_sector_count() as usize;
        let sector = self.rng.below(sectors as u64) as usize;
        let other = (sector + 1 + self.rng.below(sectors as u64 - 1) as usize) % sectors;
        let start = self.loaded.layout.zone_start(Zone::WalHeaders) as usize;
        let what = self.range(
            start + sector * SECTOR,
            SECTOR,
            SECTOR,
            start + other * SECTOR,
        );
        format!(
            "WAL header sector {sector} (slots {}..={}): {what}",
            sector * 16,
            sector * 16 + 15
        )
    }

    /// The prepare of `op` (bits flipped within its size); a misdirected one gets another
    /// slot's prepare.
    fn prepare(&mut self, op: u64) -> String {
        let config = config();
        let message_size_max = config.message_size_max as usize;
        let wal_start = self.loaded.layout.zone_start(Zone::WalPrepares) as usize;
        let slot = (op % config.journal_slot_count) as usize;
        let at = wal_start + slot * message_size_max;
        let size = Header::from_bytes(&self.bytes[at..at + HEADER_BYTES]).size() as usize;
        let others: Vec<usize> = (0..self.loaded.wal_ops.len())
            .filter(|other| *other != slot && self.loaded.wal_ops[*other].is_some())
            .collect();
        let source = wal_start + pick(&mut self.rng, &others) * message_size_max;
        let what = self.range(at, size, SECTOR, source);
        self.damaged.names.push(format!("op {op}"));
        format!("WAL slot {slot} (op {op}): {what}")
    }

    /// The reply slot of a client whose latest reply is at or below the checkpoint (or above
    /// it); a misdirected one gets another client's reply.
    fn reply_slot(&mut self, checkpointed: bool) -> String {
        let loaded = self.loaded;
        let candidates: Vec<(usize, u64)> = loaded
            .reply_slots
            .iter()
            .copied()
            .filter(|(client, _)| {
                let op = loaded.client_last_op(*client).unwrap_or(0);
                (op <= loaded.op_checkpoint) == checkpointed
                    && loaded.clients[*client].pending.is_none()
            })
            .collect();
        let (client, slot) = pick(&mut self.rng, &candidates);
        let message_size_max = config().message_size_max as usize;
        let start = loaded.layout.zone_start(Zone::ClientReplies) as usize;
        let at = start + slot as usize * message_size_max;
        let size = Header::from_bytes(&self.bytes[at..at + HEADER_BYTES]).size() as usize;
        let others: Vec<u64> = loaded
            .reply_slots
            .iter()
            .map(|(_, other)| *other)
            .filter(|other| *other != slot)
            .collect();
        let source = start + pick(&mut self.rng, &others) as usize * message_size_max;
        let what = self.range(at, size, SECTOR, source);
        if checkpointed {
            self.damaged.reply_withheld_client = Some(client);
        }
        self.damaged.inspect_reads_it = false;
        format!(
            "client {client}'s reply slot {slot} (op {}): {what}",
            loaded.client_last_op(client).unwrap()
        )
    }

    /// `count` distinct blocks of `candidates` (bits flipped within each block's size); a
    /// misdirected one gets another block the checkpoint references.
    fn blocks(&mut self, candidates: &[u64], count: usize) -> String {
        let loaded = self.loaded;
        let layout = &loaded.layout;
        let all = loaded.blocks.all();
        let mut chosen = BTreeSet::new();
        while chosen.len() < count.min(candidates.len()) {
            chosen.insert(pick(&mut self.rng, candidates));
        }
        let mut what = Vec::new();
        for address in chosen {
            let at = layout.block_offset(address) as usize;
            let size = Header::from_bytes(&self.bytes[at..at + HEADER_BYTES]).size() as usize;
            let others: Vec<u64> = all.iter().copied().filter(|a| *a != address).collect();
            let source = layout.block_offset(pick(&mut self.rng, &others)) as usize;
            let block_what = self.range(at, size, layout.block_size() as usize, source);
            let kind = block_kind(&loaded.blocks, address);
            self.damaged.names.push(format!("block {address}"));
            what.push(format!("grid block {address} ({kind}): {block_what}"));
        }
        what.join("; ")
    }
}

fn block_kind(blocks: &GridBlocks, address: u64) -> &'static str {
    [
        (&blocks.free_set, "free-set trailer"),
        (&blocks.client_sessions, "client-sessions trailer"),
        (&blocks.manifest, "manifest"),
        (&blocks.index, "index"),
        (&blocks.value, "value"),
    ]
    .into_iter()
    .find(|(addresses, _)| addresses.contains(&address))
    .map_or("?", |(_, kind)| kind)
}

/// Whether `message` contains `name` not followed by another digit (`op 17` is not `op 170`).
fn names(message: &str, name: &str) -> bool {
    message.match_indices(name).any(|(at, _)| {
        !message[at + name.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

struct Report {
    class: Class,
    inspect_exit: i32,
    detail: String,
    violations: Vec<String>,
}

fn inspect(path: &Path) -> (i32, String) {
    let output = Process::new(binary())
        .arg("inspect")
        .arg(path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

/// Runs the real binary's `start` on a file start-up refused: its exit code (it is killed, and
/// `None` returned, if it is still running after a few seconds).
fn start_binary(path: &Path) -> Option<i32> {
    let mut child = Process::new(binary())
        .args(["start", "--addresses", "127.0.0.1:0"])
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    None
}

/// Runs the real binary on a file the in-process service fail-stopped on, looks every Thing
/// up, and returns its exit code (`None` if it still runs a few seconds later: then killed).
fn serve_binary_until_exit(path: &Path, loaded: &Loaded) -> (bool, Option<i32>) {
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = Process::new(binary())
        .args(["start", "--addresses", &address.to_string()])
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The first line names the address once serving; none if start-up failed.
    // Kept open until the child exits, so a later line never meets a closed pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    let started = stdout.read(&mut byte).unwrap() == 1;
    if !started {
        return (false, child.wait().unwrap().code());
    }
    let things: Vec<ExpectedThing> = loaded
        .clients
        .iter()
        .flat_map(|model| {
            model
                .acked
                .iter()
                .map(|acked| ExpectedThing::of(model.id, acked.op, acked.timestamp, &acked.body))
        })
        .collect();
    // The lookups only make the service read the damaged block; the thread ends on its own.
    std::thread::spawn(move || lookup_all(address, &things, &mut Vec::new()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return (true, status.code());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    (true, None)
}

/// Runs one trial on a fresh copy of the loaded file.
fn run_trial(loaded: &Loaded, trial: &Trial) -> (Damaged, Report) {
    let directory = tempfile::tempdir_in(loaded.directory.path()).unwrap();
    let path = directory.path().join("trial.pinion");
    let mut bytes = std::fs::read(&loaded.path).unwrap();
    let damaged = apply(loaded, trial, &mut bytes);
    std::fs::write(&path, &bytes).unwrap();
    let (inspect_exit, inspect_text) = inspect(&path);
    let mut violations = Vec::new();
    if !matches!(inspect_exit, 0 | 10) {
        violations.push(format!("inspect exited {inspect_exit}:\n{inspect_text}"));
    }
    let options = ServiceOptions::new(path.clone(), "127.0.0.1:0".parse().unwrap());
    let (class, detail) = match Service::start(options) {
        Err(error) => {
            if error.reason != FatalReason::Corrupt {
                violations.push(format!("start-up refused with {:?}: {error}", error.reason));
            }
            (Class::Refused, error.message)
        }
        Ok(service) => serve_and_check(service, loaded, &damaged, &mut violations),
    };
    if class != Class::Served
        && !damaged.names.is_empty()
        && !damaged.names.iter().any(|name| names(&detail, name))
    {
        violations.push(format!(
            "the error does not name the place ({:?}): {detail}",
            damaged.names
        ));
    }
    if damaged.inspect_reads_it && (inspect_exit == 10) != (class == Class::Refused) {
        violations.push(format!(
            "inspect exited {inspect_exit} but start-up was {class:?}:\n{inspect_text}"
        ));
    }
    if class == Class::Refused {
        let exit = start_binary(&path);
        if exit != Some(FatalReason::Corrupt.exit_code()) {
            violations.push(format!(
                "`pinion start` exited {exit:?} where start-up refused"
            ));
        }
    }
    if class == Class::FailStop {
        // On the damaged file as it was before the trial: the trial's own lookup that met the
        // damage is in the WAL now, and replaying it makes every later start refuse.
        let pristine = directory.path().join("binary.pinion");
        std::fs::write(&pristine, &bytes).unwrap();
        let exit = serve_binary_until_exit(&pristine, loaded);
        if exit != (true, Some(FatalReason::Corrupt.exit_code())) {
            violations.push(format!(
                "`pinion start` (started, exit code) was {exit:?} where the in-process service \
                 started and then stopped on corruption"
            ));
        }
    }
    if class == Class::Served && trial.region == Region::WalHeaderSector {
        // Recovery rewrote the damaged header sector from the prepares.
        let (exit, text) = inspect(&path);
        if exit != 0 || !text.contains("repairable 0") {
            violations.push(format!("the WAL header sector was not repaired:\n{text}"));
        }
    }
    if class == Class::Served && !damaged.superblock_copies.is_empty() {
        let after = std::fs::read(&path).unwrap();
        for index in 0..SUPERBLOCK_COPIES as usize {
            let copy = copy::decode(&after[index * COPY_BYTES..(index + 1) * COPY_BYTES]);
            if !matches!(&copy, Ok(copy) if copy.copy as usize == index) {
                violations.push(format!("superblock copy {index} not repaired: {copy:?}"));
            }
        }
    }
    let report = Report {
        class,
        inspect_exit,
        detail,
        violations,
    };
    (damaged, report)
}

/// Retries every client's last request, looks up every acknowledged Thing, and stops the
/// service: served if all answers match the model, fail-stop if the service stopped on
/// corruption it met while serving.
fn serve_and_check(
    service: Service,
    loaded: &Loaded,
    damaged: &Damaged,
    violations: &mut Vec<String>,
) -> (Class, String) {
    let address = service.local_addr();
    let mut things = Vec::new();
    let mut unanswered = Vec::new();
    let mut withheld = false;
    for (index, model) in loaded.clients.iter().enumerate() {
        things.extend(
            model
                .acked
                .iter()
                .map(|acked| ExpectedThing::of(model.id, acked.op, acked.timestamp, &acked.body)),
        );
        let withheld_expected = damaged.reply_withheld_client == Some(index);
        let mut reply_lost = false;
        let answer = retry(
            address,
            model,
            withheld_expected,
            &mut reply_lost,
            violations,
        );
        match answer {
            None if withheld_expected && reply_lost => withheld = true,
            None if withheld_expected => violations.push(format!(
                "client {index}'s reply slot is damaged, and its retry got no answer: expected \
                 an eviction saying the reply is lost"
            )),
            Some(_) if withheld_expected => violations.push(format!(
                "client {index}'s reply slot is damaged, yet its stored reply came back"
            )),
            Some(Some(thing)) => things.push(thing),
            Some(None) => {}
            None => unanswered.push(index),
        }
    }
    // Look up from another thread, so a service that stops on corruption is seen at once
    // rather than after the client's timeouts (the lookup thread then ends on its own).
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lookup_violations = Vec::new();
        let result = lookup_all(address, &things, &mut lookup_violations);
        let _ = sender.send((result, lookup_violations));
    });
    let lookups = loop {
        match receiver.recv_timeout(Duration::from_millis(5)) {
            Ok((result, lookup_violations)) => {
                violations.extend(lookup_violations);
                break Some(result);
            }
            Err(_) if service.failed() => break None,
            Err(_) => {}
        }
    };
    if !matches!(lookups, Some(Ok(()))) || !unanswered.is_empty() {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !service.failed() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    match service.stop() {
        Ok(_) => {
            if let Some(Err(error)) = lookups {
                violations.push(format!(
                    "a lookup got no answer from a running service: {error}"
                ));
            }
            if !unanswered.is_empty() {
                violations.push(format!(
                    "clients {unanswered:?} got no reply to their retry"
                ));
            }
            let detail = match damaged.reply_withheld_client {
                Some(client) if withheld => {
                    format!("(client {client}'s retry: evicted, its reply lost)")
                }
                _ => String::new(),
            };
            (Class::Served, detail)
        }
        Err(error) => {
            if error.reason != FatalReason::Corrupt {
                violations.push(format!(
                    "the service stopped with {:?}: {error}",
                    error.reason
                ));
            }
            (Class::FailStop, error.message)
        }
    }
}

/// Resends the client's pending request (it must now complete, exactly once) or its last
/// acknowledged one (the stored reply must come back byte for byte). `None`: no reply came;
/// `Some(Some(thing))`: the pending request completed and stored `thing`.
fn retry(
    address: SocketAddr,
    model: &ClientModel,
    withheld_expected: bool,
    reply_lost: &mut bool,
    violations: &mut Vec<String>,
) -> Option<Option<ExpectedThing>> {
    let (request_frame, expected) = match (&model.pending, model.acked.last()) {
        (Some(pending), _) => (&pending.request_frame, None),
        (None, Some(acked)) => (&acked.request_frame, Some(&acked.reply_frame)),
        (None, None) => return Some(None),
    };
    let (timeout, attempts) = (RETRY_TIMEOUT, RETRY_ATTEMPTS);
    for _ in 0..attempts {
        let Ok(mut stream) = TcpStream::connect(address) else {
            continue;
        };
        stream.set_read_timeout(Some(timeout)).unwrap();
        if stream.write_all(request_frame).is_err() {
            continue;
        }
        let Ok(frame) = read_frame(&mut stream) else {
            continue;
        };
        let header = Header::from_bytes(&frame);
        if header.command() == Some(Command::Eviction) {
            // The server says the stored reply is lost: allowed only where it was damaged.
            let (_, reason) = eviction_fields(&header);
            *reply_lost = reason == Some(EvictionReason::ReplyLost);
            if !withheld_expected || !*reply_lost {
                violations.push(format!(
                    "client {:#x}: evicted ({reason:?}) on its retry, its reply slot {}",
                    model.id,
                    if withheld_expected {
                        "damaged"
                    } else {
                        "intact"
                    }
                ));
            }
            return None;
        }
        if header.command() != Some(Command::Reply) {
            violations.push(format!(
                "client {:#x}: a {:?} answered its retry",
                model.id,
                header.command()
            ));
            return None;
        }
        if let Some(expected) = expected {
            if frame != *expected {
                violations.push(format!(
                    "client {:#x}: the retried request's reply differs from the acknowledged one \
                     (reply op {} timestamp {}, expected op {} timestamp {})",
                    model.id,
                    Reply::decode(&header).op,
                    Reply::decode(&header).timestamp,
                    Reply::decode(&Header::from_bytes(expected)).op,
                    Reply::decode(&Header::from_bytes(expected)).timestamp,
                ));
            }
            return Some(None);
        }
        let pending = model.pending.as_ref().unwrap();
        let reply = Reply::decode(&header);
        if reply.client != model.id
            || reply.request != pending.request_number
            || reply.request_checksum != pending.request_checksum
            || frame[HEADER_BYTES..] != pending.body[..]
        {
            violations.push(format!(
                "client {:#x}: the pending request's reply is not its echo ({reply:?})",
                model.id
            ));
            return None;
        }
        return Some(Some(ExpectedThing::of(
            model.id,
            reply.op,
            reply.timestamp,
            &pending.body,
        )));
    }
    None
}

/// Looks up every expected Thing through a fresh client; every one must come back exact.
fn lookup_all(
    address: SocketAddr,
    things: &[ExpectedThing],
    violations: &mut Vec<String>,
) -> Result<(), String> {
    let options = ClientOptions {
        cluster: CLUSTER,
        message_size_max: config().message_size_max,
        request_timeout: Duration::from_secs(2),
        attempts_max: 2,
    };
    let mut client = Client::connect(&[address], options).map_err(|e| e.to_string())?;
    for chunk in things.chunks(100) {
        let ids: Vec<u128> = chunk.iter().map(|thing| u128::from(thing.id)).collect();
        let reply = client
            .request(LOOKUP, &lookup_request(&ids))
            .map_err(|e| e.to_string())?;
        let found: Vec<ExpectedThing> = lookup_reply_things(&reply.body)
            .map(|thing| ExpectedThing {
                id: thing.id as u64,
                timestamp: thing.timestamp,
                value: thing.value,
            })
            .collect();
        if found != chunk {
            let wrong: Vec<String> = chunk
                .iter()
                .filter(|expected| !found.contains(expected))
                .map(|expected| {
                    let got = found.iter().find(|thing| thing.id == expected.id);
                    format!("id {}: expected {expected:?}, got {got:?}", expected.id)
                })
                .collect();
            violations.push(format!(
                "lookups served something other than the model ({} of {} wrong or missing): {}",
                wrong.len(),
                chunk.len(),
                wrong.join("; ")
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The campaign.

fn run_campaign(name: &str, loaded: &Loaded, trials: &[Trial]) {
    let only: Option<u64> = std::env::var("PINION_CORRUPTION_SEED")
        .ok()
        .map(|seed| seed.parse().expect("PINION_CORRUPTION_SEED is a number"));
    println!("{name}: {}", loaded.describe());
    println!(
        "seed  region                              damage        class     inspect  place / error"
    );
    let mut failures = Vec::new();
    for trial in trials
        .iter()
        .filter(|t| only.is_none_or(|seed| seed == t.seed))
    {
        let started = Instant::now();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_trial(loaded, trial)));
        let (damaged, mut report) = match outcome {
            Ok(done) => done,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!(
                    "seed {} ({:?}, {:?}) panicked: {message}",
                    trial.seed, trial.region, trial.damage
                ));
                continue;
            }
        };
        if !trial.expect.allows(report.class) {
            report.violations.push(format!(
                "expected {:?}, got {:?}: {}",
                trial.expect, report.class, report.detail
            ));
        }
        let detail: String = report.detail.chars().take(160).collect();
        println!(
            "{:<5} {:<35} {:<13} {:<9} {:<8} {} {}  ({} ms)",
            trial.seed,
            format!("{:?}", trial.region),
            format!("{:?}", trial.damage),
            format!("{:?}", report.class),
            report.inspect_exit,
            damaged.place,
            detail,
            started.elapsed().as_millis()
        );
        for violation in &report.violations {
            failures.push(format!(
                "seed {} ({:?}, {:?}; {}): {violation}\n  reproduce: PINION_CORRUPTION_SEED={} \
                 cargo test -p pinion-actors --test corruption -- --nocapture",
                trial.seed, trial.region, trial.damage, damaged.place, trial.seed
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} violation(s) (file: {}):\n{}",
        failures.len(),
        loaded.describe(),
        failures.join("\n")
    );
}

/// `rounds` trials per damage for each region, seeds from `first_seed` on.
fn plan(
    first_seed: u64,
    rounds: usize,
    regions: &[(Region, Expect)],
    damages: &[Damage],
) -> Vec<Trial> {
    let mut trials = Vec::new();
    for (region, expect) in regions
        .iter()
        .flat_map(|region| std::iter::repeat_n(region, rounds))
    {
        let damages: &[Damage] = if *region == Region::Control {
            &[Damage::BitFlips]
        } else {
            damages
        };
        for damage in damages {
            trials.push(Trial {
                seed: first_seed + trials.len() as u64,
                region: *region,
                damage: *damage,
                expect: *expect,
            });
        }
    }
    trials
}

#[test]
fn corruption_of_a_cleanly_stopped_file_is_repaired_or_refused_never_served() {
    let loaded = load_and_stop();
    assert!(loaded.superblock_copies_equal);
    assert!(loaded.op_checkpoint > 0, "{}", loaded.describe());
    assert!(
        loaded.op_head >= loaded.op_checkpoint + 3,
        "{}",
        loaded.describe()
    );
    assert!(loaded
        .wal_ops
        .iter()
        .flatten()
        .any(|op| *op <= loaded.op_checkpoint));
    assert!(loaded.client_last_op(0).unwrap() <= loaded.op_checkpoint);
    assert!(loaded.client_last_op(4).unwrap() > loaded.op_checkpoint);
    assert!(loaded.reply_slots.len() == loaded.clients.len());
    assert!(!loaded.blocks.index.is_empty() && !loaded.blocks.client_sessions.is_empty());
    let regions = [
        (Region::Control, Expect::Served),
        (Region::SuperblockCopies(1), Expect::Served),
        (Region::SuperblockCopies(2), Expect::Served),
        (Region::SuperblockCopies(3), Expect::Refused),
        (Region::WalHeaderSector, Expect::Served),
        (Region::WalPrepareHead, Expect::Refused),
        (Region::WalPrepareAboveCheckpoint, Expect::Refused),
        (Region::WalPrepareAtOrBelowCheckpoint, Expect::Served),
        (Region::ReplySlotCheckpointed, Expect::ServedReplyWithheld),
        (Region::ReplySlotReplayed, Expect::Served),
        (Region::FreeSetTrailerBlock, Expect::Refused),
        (Region::ClientSessionsTrailerBlock, Expect::Refused),
        (Region::ManifestBlock, Expect::Refused),
        (Region::IndexBlock, Expect::RefusedOrFailStop),
        (Region::ValueBlock, Expect::RefusedOrFailStop),
        (Region::GridBlocksInUse, Expect::RefusedOrFailStop),
    ];
    let trials = plan(1000, 2, &regions, &DAMAGES);
    run_campaign("cleanly stopped", &loaded, &trials);
}

#[test]
fn corruption_after_kill_9_under_load_is_repaired_or_refused_never_served() {
    let loaded = load_and_kill();
    let superblock_one = if loaded.superblock_copies_equal {
        Expect::Served
    } else {
        Expect::ServedOrRefused
    };
    // The head may be a request in flight at the kill, never acknowledged: then truncating it
    // is correct too (its client's retry executes it again).
    let head_acknowledged = loaded
        .clients
        .iter()
        .any(|model| model.acked.iter().any(|acked| acked.op == loaded.op_head));
    let head = if head_acknowledged {
        Expect::Refused
    } else {
        Expect::ServedOrRefused
    };
    let mut regions = vec![
        (Region::Control, Expect::Served),
        (Region::SuperblockCopies(1), superblock_one),
        (Region::WalHeaderSector, Expect::Served),
        (Region::WalPrepareHead, head),
        (Region::ManifestBlock, Expect::Refused),
        (Region::GridBlocksInUse, Expect::RefusedOrFailStop),
    ];
    if loaded
        .wal_ops
        .iter()
        .flatten()
        .any(|op| *op > loaded.op_checkpoint && *op < loaded.op_head)
    {
        regions.push((Region::WalPrepareAboveCheckpoint, Expect::Refused));
    }
    let trials = plan(2000, 2, &regions, &DAMAGES);
    run_campaign("killed under load", &loaded, &trials);
}
