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
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CLUSTER: u128 = 77;
const ECHO: u8 = 128;
const LOOKUP: u8 = 129;

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_pinion")
}

fn format(path: &Path) {
    let status = Command::new(binary())
        .args([
            "format",
            "--preset",
            "small",
            "--cluster",
            &CLUSTER.to_string(),
        ])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

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
    format(&path);
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
    format(&path);
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

/// The real binary as a child process serving on `address`.
fn spawn_binary(path: &Path, address: SocketAddr) -> Child {
    let mut child = Command::new(binary())
        .args(["start", "--addresses", &address.to_string()])
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let line = String::from_utf8(line).unwrap();
    assert!(
        line.ends_with(&address.to_string()),
        "unexpected first line {line:?}"
    );
    child
}

/// A loopback address with a port that was free a moment ago.
fn free_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Each client thread's acknowledged echo requests: (body, timestamp of the reply, which names
/// the request's Thing).
type Acknowledged = Vec<(u128, Vec<u8>, u64)>;

#[test]
fn kill_9_under_load_loses_no_acknowledged_request_and_executes_none_twice() {
    let directory = tempfile::tempdir_in(".").unwrap();
    let path: PathBuf = directory.path().join("data.pinion");
    format(&path);
    let address = free_address();
    let mut child = spawn_binary(&path, address);
    let clients_count = 4u32;
    let requests_count = 300u32;
    let acknowledged_count = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let threads: Vec<_> = (0..clients_count)
        .map(|index| {
            let acknowledged_count = acknowledged_count.clone();
            std::thread::spawn(move || -> Acknowledged {
                // Retries (same request number, same bytes) carry each request across the
                // crash: the restarted server listens on the same address.
                let mut client = connect(address);
                (0..requests_count)
                    .map(|request| {
                        let body = format!("client {index} request {request}").into_bytes();
                        let reply = client.request(ECHO, &body).unwrap();
                        assert_eq!(reply.body, body);
                        acknowledged_count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        (client.id(), body, Reply::decode(&reply.header).timestamp)
                    })
                    .collect()
            })
        })
        .collect();
    // Let the load run, then kill the server without warning and start it again.
    let load = |count: u32| acknowledged_count.load(std::sync::atomic::Ordering::Relaxed) < count;
    while load(clients_count * requests_count / 4) {
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = acknowledged_count.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        at_kill < clients_count * requests_count / 2,
        "the load ended before the kill"
    );
    let mut child = spawn_binary(&path, address);
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
    assert_eq!(total, (clients_count * requests_count) as usize);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        total,
        "two requests acknowledged with one timestamp"
    );
    for (client, body, id) in acknowledged.iter().flatten() {
        let reply = checker
            .request(LOOKUP, &lookup_request(&[u128::from(*id)]))
            .unwrap();
        let things: Vec<_> = lookup_reply_things(&reply.body).collect();
        assert_eq!(
            things.len(),
            1,
            "acknowledged request {id} missing after kill -9"
        );
        let value = thing_value(*client, *id, *id, ECHO, body);
        assert_eq!(
            things[0].value, value,
            "request {id} stored another request's value"
        );
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
