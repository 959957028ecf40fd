//! The service end to end on loopback (issue 6): clients × requests with byte-identical
//! replies, a retried request answered with the identical stored reply (also after a restart
//! in between, read back from the client-replies zone), the real binary killed with `kill -9`
//! under load and restarted with every acknowledged request present exactly once, and a
//! SIGTERM that drains and exits 0.

use pinion::config::Config;
use pinion::header::reply::Reply;
use pinion::header::request::Request;
use pinion::header::{Header, HEADER_BYTES};
use pinion::state_machine::echo::{lookup_reply_things, lookup_request, thing_value};
use pinion_actors::client::{Client, ClientOptions};
use pinion_actors::service::{Service, ServiceOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

mod support;

use support::{format_small, free_address, spawn_binary};

const CLUSTER: u128 = 77;
const ECHO: u8 = 128;
const LOOKUP: u8 = 129;

fn start(path: &Path) -> Service {
    let options = ServiceOptions::new(path.to_path_buf(), "127.0.0.1:0".parse().unwrap());
    Service::start(options).unwrap()
}

fn client_options() -> ClientOptions {
    ClientOptions {
        cluster: CLUSTER,
        message_size_max: Config::small().message_size_max,
        request_timeout: Duration::from_secs(2),
        attempts_max: 30,
    }
}

fn connect(address: SocketAddr) -> Client {
    Client::connect(&[address], client_options()).unwrap()
}

#[test]
fn clients_times_requests_get_their_own_bytes_back() {
    let directory = tempfile::tempdir_in(".").unwrap();
    let path = directory.path().join("data.pinion");
    format_small(&path, CLUSTER);
    let service = start(&path);
    let address = service.local_addr();
    let threads: Vec<_> = (0..6u32)
        .map(|index| {
            std::thread::spawn(move || {
                let mut client = connect(address);
                for request in 0..40u32 {
                    let size = ((index * 131 + request * 17) % 3000) as usize;
                    let body: Vec<u8> = (0..size)
                        .map(|i| (i as u32 ^ index ^ request) as u8)
                        .collect();
                    let reply = client.request(ECHO, &body).unwrap();
                    assert_eq!(reply.body, body, "client {index} request {request}");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let stats = service.stop().unwrap();
    // 6 registers and 240 echoes, fewer ops: requests that arrive while a prepare is written
    // share the next one.
    assert_eq!(stats.replica.requests_committed, 6 * 41);
    assert!(stats.replica.ops_committed < 6 * 41, "{stats:?}");
    assert!(stats.replica.checkpoints >= 1, "{stats:?}");
}

/// Sends one frame and reads one whole reply frame (header and body) back.
fn exchange(stream: &mut TcpStream, header: &Header, body: &[u8]) -> Vec<u8> {
    stream.write_all(header.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut frame = vec![0; HEADER_BYTES];
    stream.read_exact(&mut frame).unwrap();
    let size = Header::from_bytes(&frame).size() as usize;
    frame.resize(size, 0);
    stream.read_exact(&mut frame[HEADER_BYTES..]).unwrap();
    frame
}

fn stream(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

#[test]
fn a_retried_request_gets_the_identical_reply_also_after_a_restart() {
    let directory = tempfile::tempdir_in(".").unwrap();
    let path = directory.path().join("data.pinion");
    format_small(&path, CLUSTER);
    let service = start(&path);
    let mut socket = stream(service.local_addr());
    let client = 0xfeed_u128;
    let register = Request {
        client,
        operation: 2,
        ..Request::default()
    }
    .header(CLUSTER, &[]);
    let registered = exchange(&mut socket, &register, &[]);
    let registered = Reply::decode(&Header::from_bytes(&registered));
    let body = b"the reply to this is stored durably".to_vec();
    let request = Request {
        client,
        session: registered.op,
        request: 1,
        parent: registered.context,
        operation: ECHO,
        ..Request::default()
    }
    .header(CLUSTER, &body);
    let first = exchange(&mut socket, &request, &body);
    assert_eq!(&first[HEADER_BYTES..], body.as_slice());
    // The reply was "lost": the same request again gets the same bytes, not a new execution.
    let again = exchange(&mut socket, &request, &body);
    assert_eq!(again, first);
    // Other clients move the log past two checkpoints, so after the restart the reply is no
    // longer replayed but read from the client-replies zone.
    let mut other = connect(service.local_addr());
    for index in 0..120u32 {
        other.request(ECHO, &index.to_le_bytes()).unwrap();
    }
    drop(socket);
    let stats = service.stop().unwrap();
    assert!(stats.replica.op_checkpoint > Reply::decode(&Header::from_bytes(&first)).op);
    let service = start(&path);
    let mut socket = stream(service.local_addr());
    let after_restart = exchange(&mut socket, &request, &body);
    assert_eq!(after_restart, first, "the stored reply after a restart");
    let restarted = service.stop().unwrap();
    assert_eq!(
        restarted.replica.op, stats.replica.op,
        "nothing executed again"
    );
    assert_eq!(stats.replica.stored_replies_sent, 1);
}

/// Each client thread's acknowledged echo requests: (body, timestamp of the reply, which names
/// the request's Thing).
type Acknowledged = Vec<(u128, Vec<u8>, u64)>;

/// Kill cycles: `PINION_CRASH_CYCLES` (default 3 here; `docs/testing.md` records the 100-cycle
/// run), each a `kill -9` at a seeded moment under load, then a restart.
fn crash_cycles() -> u32 {
    std::env::var("PINION_CRASH_CYCLES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(3)
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_request_and_executes_none_twice() {
    let directory = tempfile::tempdir_in(".").unwrap();
    let path: PathBuf = directory.path().join("data.pinion");
    format_small(&path, CLUSTER);
    let address = free_address();
    let mut child = spawn_binary(&path, address);
    let clients_count = 4u32;
    let cycles = crash_cycles();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acknowledged_count = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let threads: Vec<_> = (0..clients_count)
        .map(|index| {
            let acknowledged_count = acknowledged_count.clone();
            let stop = stop.clone();
            std::thread::spawn(move || -> Acknowledged {
                // Retries (same request number, same bytes) carry each request across the
                // crashes: the restarted server listens on the same address.
                let mut client = connect(address);
                let mut acknowledged = Vec::new();
                let mut request = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let body = format!("client {index} request {request}").into_bytes();
                    let reply = client.request(ECHO, &body).unwrap();
                    assert_eq!(reply.body, body);
                    acknowledged_count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    acknowledged.push((client.id(), body, Reply::decode(&reply.header).timestamp));
                    request += 1;
                }
                acknowledged
            })
        })
        .collect();
    // Kill at seeded moments: after 20..=120 more acknowledgements each cycle.
    let mut random = 0x9E37_79B9_7F4A_7C15u64;
    for cycle in 0..cycles {
        random = random
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let more = 20 + (random >> 33) as u32 % 101;
        let target = acknowledged_count.load(std::sync::atomic::Ordering::Relaxed) + more;
        while acknowledged_count.load(std::sync::atomic::Ordering::Relaxed) < target {
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        println!("cycle {cycle}: killed after {target} acknowledged requests");
        child = spawn_binary(&path, address);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged: Vec<Acknowledged> = threads
        .into_iter()
        .map(|thread| thread.join().unwrap())
        .collect();
    // Every acknowledged request's Thing is there, under the timestamp its reply named, with
    // the value of exactly that request.
    let mut checker = connect(address);
    let mut ids: Vec<u64> = acknowledged
        .iter()
        .flatten()
        .map(|(_, _, id)| *id)
        .collect();
    let total = ids.len();
    assert_eq!(
        total as u32,
        acknowledged_count.load(std::sync::atomic::Ordering::Relaxed)
    );
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        total,
        "two requests acknowledged with one timestamp"
    );
    let all: Vec<&(u128, Vec<u8>, u64)> = acknowledged.iter().flatten().collect();
    for chunk in all.chunks(100) {
        let request: Vec<u128> = chunk.iter().map(|(_, _, id)| u128::from(*id)).collect();
        let reply = checker.request(LOOKUP, &lookup_request(&request)).unwrap();
        let things: Vec<_> = lookup_reply_things(&reply.body).collect();
        assert_eq!(
            things.len(),
            chunk.len(),
            "acknowledged requests missing after kill -9"
        );
        for ((client, body, id), thing) in chunk.iter().zip(things) {
            assert_eq!(thing.id, u128::from(*id));
            let value = thing_value(*client, *id, *id, ECHO, body);
            assert_eq!(
                thing.value, value,
                "request {id} stored another request's value"
            );
        }
    }
    // None executed twice: timestamps are logical (one per request, from 1), so every Thing
    // that exists has an id in 1..=the highest; they must be exactly the acknowledged ones.
    let id_max = *ids.last().unwrap();
    let every_id: Vec<u64> = (1..=id_max).collect();
    assert_eq!(
        lookup_count(&mut checker, &every_id),
        total,
        "an echo executed twice"
    );
    // SIGTERM drains and exits 0.
    let started = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc_kill(child.id() as i32, 15) }, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

/// How many of `ops` have a Thing.
fn lookup_count(client: &mut Client, ops: &[u64]) -> usize {
    let per_request = 100; // small preset: 4 KiB bodies of 16-byte ids, at most 128 per lookup
    ops.chunks(per_request)
        .map(|chunk| {
            let ids: Vec<u128> = chunk.iter().map(|op| u128::from(*op)).collect();
            let reply = client.request(LOOKUP, &lookup_request(&ids)).unwrap();
            lookup_reply_things(&reply.body).count()
        })
        .sum()
}

/// Reads until the server closes the connection; true when it did (EOF or reset) in time.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error) => {
                return !matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

#[test]
fn bad_input_closes_only_its_connection_while_a_client_keeps_being_served() {
    let directory = tempfile::tempdir_in(".").unwrap();
    let path = directory.path().join("data.pinion");
    format_small(&path, CLUSTER);
    let mut options = ServiceOptions::new(path.clone(), "127.0.0.1:0".parse().unwrap());
    options.register_timeout = Duration::from_millis(300);
    let service = Service::start(options).unwrap();
    let address = service.local_addr();
    let mut good = connect(address);
    let mut echo_round = |round: u32| {
        let body = format!("still served after case {round}").into_bytes();
        assert_eq!(good.request(ECHO, &body).unwrap().body, body);
    };
    echo_round(0);
    let message_size_max = Config::small().message_size_max as u32;
    let valid = Request {
        client: 0xbad,
        operation: 2,
        ..Request::default()
    }
    .header(CLUSTER, &[]);
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // Random bytes (a fixed pseudo-random stream).
    let mut random = 7u64;
    let noise: Vec<u8> = (0..1000)
        .map(|_| {
            random = random.wrapping_mul(6364136223846793005).wrapping_add(1);
            (random >> 56) as u8
        })
        .collect();
    cases.push(("random bytes", noise));
    let mut bad_checksum = *valid.as_bytes();
    bad_checksum[200] ^= 1;
    cases.push(("a bad header checksum", bad_checksum.to_vec()));
    // A header whose checksum is valid but whose size is over the limit.
    let mut too_big = *valid.as_bytes();
    too_big[96..100].copy_from_slice(&(message_size_max + 1).to_le_bytes());
    let header_checksum = pinion::checksum::checksum(&too_big[4..]);
    too_big[0..4].copy_from_slice(&header_checksum.to_le_bytes());
    assert!(Header::from_bytes(&too_big).valid_checksum());
    cases.push(("a size over the limit", too_big.to_vec()));
    let echo_body = vec![5u8; 100];
    let echo = Request {
        client: 0xbad,
        session: 1,
        request: 1,
        operation: ECHO,
        ..Request::default()
    }
    .header(CLUSTER, &echo_body);
    let mut truncated = echo.as_bytes().to_vec();
    truncated.extend_from_slice(&echo_body[..40]);
    cases.push(("a truncated frame", truncated));
    cases.push(("a connection that never sends anything", Vec::new()));
    for (round, (name, bytes)) in cases.into_iter().enumerate() {
        let mut stream = TcpStream::connect(address).unwrap();
        if !bytes.is_empty() {
            stream.write_all(&bytes).unwrap();
        }
        if name == "a truncated frame" {
            stream.shutdown(std::net::Shutdown::Write).unwrap();
        }
        assert!(
            closed_by_server(&mut stream),
            "{name}: the connection stayed open"
        );
        echo_round(round as u32 + 1);
    }
    let net = service.net_stats();
    assert_eq!(net.closed_bad_input, 4, "{net:?}");
    assert_eq!(net.closed_register_timeout, 1, "{net:?}");
    service.stop().unwrap();
}
