//! The net actor and the client library over loopback, with a fake replica thread standing in
//! for the real one: replies are routed to the right client, a lost reply is recovered by a
//! resend of the same request, every kind of bad input closes only its own connection and is
//! counted, and a replica that stops draining requests does not stall its replies.

use crossbeam_channel::{bounded, Receiver};
use pinion::header::reply::{eviction, EvictionReason, Reply};
use pinion::header::request::Request;
use pinion::header::{Command, Header, HEADER_BYTES};
use pinion_actors::client::{Client, ClientError, ClientOptions};
use pinion_actors::net::{self, Message, NetEvent, NetHandle, NetOptions, NetStats};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const CLUSTER: u128 = 77;
const ECHO: u8 = 128;
const REGISTER: u8 = 2;

fn net_options(message_size_max: u64, connections_max: usize) -> NetOptions {
    NetOptions {
        address: "127.0.0.1:0".parse().unwrap(),
        cluster: CLUSTER,
        message_size_max,
        connections_max,
        register_timeout: Duration::from_secs(5),
        core: None,
    }
}

fn client_options(message_size_max: u64, request_timeout: Duration) -> ClientOptions {
    ClientOptions {
        cluster: CLUSTER,
        message_size_max,
        request_timeout,
        attempts_max: 5,
    }
}

/// How the fake replica misbehaves on purpose.
#[derive(Clone, Copy, Default)]
struct Faults {
    /// Withhold the first reply to this request number (of every client).
    drop_first_reply_of: Option<u32>,
    /// Before each new reply, send the client's previous reply again (a stale one).
    stale_reply_first: bool,
    /// Answer this request number with an eviction.
    evict_at: Option<u32>,
}

#[derive(Default)]
struct FakeCounts {
    /// Echo requests executed (duplicates not included).
    executions: AtomicU64,
    /// Requests answered from the stored reply.
    duplicates: AtomicU64,
    /// Requests whose number, session or parent broke the client protocol.
    violations: AtomicU64,
}

#[derive(Default)]
struct Session {
    number: u64,
    request_last: u32,
    context_last: u32,
    reply_last: Option<Message>,
    dropped: bool,
}

/// A replica that answers register with op = a counter and echo with the body, keeps the last
/// reply of each client to answer a resent request, and checks the client's numbering.
struct FakeReplica {
    counts: Arc<FakeCounts>,
    thread: JoinHandle<()>,
}

impl FakeReplica {
    fn spawn(events: Receiver<NetEvent>, net: NetHandle, faults: Faults) -> FakeReplica {
        let counts = Arc::new(FakeCounts::default());
        let thread_counts = Arc::clone(&counts);
        let thread = std::thread::spawn(move || {
            let mut sessions: HashMap<u128, Session> = HashMap::new();
            let mut op = 0u64;
            for NetEvent::Request { message, .. } in events.iter() {
                answer(
                    &net,
                    &thread_counts,
                    faults,
                    &mut sessions,
                    &mut op,
                    &message,
                );
            }
        });
        FakeReplica { counts, thread }
    }

    fn join(self) -> Arc<FakeCounts> {
        self.thread.join().expect("fake replica panicked");
        self.counts
    }
}

fn answer(
    net: &NetHandle,
    counts: &FakeCounts,
    faults: Faults,
    sessions: &mut HashMap<u128, Session>,
    op: &mut u64,
    message: &Message,
) {
    let request = Request::decode(&message.header);
    let session = sessions.entry(request.client).or_default();
    let is_register = request.operation == REGISTER;
    let duplicate = session.reply_last.is_some() && request.request == session.request_last;
    if duplicate {
        counts.duplicates.fetch_add(1, Ordering::Relaxed);
        net.send(request.client, session.reply_last.clone().unwrap());
        return;
    }
    let in_order = if is_register {
        session.reply_last.is_none()
    } else {
        request.request == session.request_last + 1
            && request.session == session.number
            && request.parent == session.context_last
    };
    if !in_order {
        counts.violations.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if faults.evict_at == Some(request.request) {
        let header = eviction(CLUSTER, request.client, EvictionReason::SessionUnknown);
        net.send(
            request.client,
            Message {
                header,
                body: Vec::new(),
            },
        );
        return;
    }
    *op += 1;
    let header = Reply {
        request_checksum: message.header.checksum(),
        client: request.client,
        op: *op,
        commit: *op,
        timestamp: *op,
        request: request.request,
        operation: request.operation,
        ..Reply::default()
    }
    .header(CLUSTER, &message.body);
    let reply = Message {
        header,
        body: message.body.clone(),
    };
    if is_register {
        session.number = *op;
    } else {
        counts.executions.fetch_add(1, Ordering::Relaxed);
    }
    let stale = session.reply_last.replace(reply.clone());
    session.request_last = request.request;
    session.context_last = Reply::decode(&reply.header).context;
    if faults.stale_reply_first {
        if let Some(stale) = stale {
            net.send(request.client, stale);
        }
    }
    if faults.drop_first_reply_of == Some(request.request) && !session.dropped {
        session.dropped = true;
        return;
    }
    net.send(request.client, reply);
}

/// A net actor with a fake replica behind it.
fn serve(options: NetOptions, faults: Faults) -> (NetHandle, FakeReplica) {
    let (events_sender, events) = bounded(64);
    let net = net::spawn(options, events_sender).expect("spawn the net actor");
    let replica = FakeReplica::spawn(events, net.clone(), faults);
    (net, replica)
}

/// Counters are updated after the socket write, so a client can see a reply a moment before
/// the net actor has counted it: wait (boundedly) for `condition`.
fn wait_until(net: &NetHandle, condition: impl Fn(&NetStats) -> bool) -> NetStats {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let stats = net.stats();
        if condition(&stats) || Instant::now() > deadline {
            return stats;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn stop(net: NetHandle, replica: FakeReplica) -> (NetStats, Arc<FakeCounts>) {
    let stats = net.stats();
    net.shutdown();
    (stats, replica.join())
}

/// A body of `size` bytes that differs per client and request.
fn body(client_index: usize, request_index: usize, size: usize) -> Vec<u8> {
    (0..size)
        .map(|byte| (client_index * 31 + request_index * 7 + byte) as u8)
        .collect()
}

#[test]
fn many_clients_each_get_exactly_their_own_replies() {
    const CLIENTS: usize = 8;
    const REQUESTS: usize = 100;
    let message_size_max = 64 * 1024;
    let body_max = message_size_max as usize - HEADER_BYTES;
    let (net, replica) = serve(net_options(message_size_max, 16), Faults::default());
    let address = net.local_addr();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|client_index| {
            std::thread::spawn(move || {
                let options = client_options(message_size_max, Duration::from_secs(5));
                let mut client = Client::connect(&[address], options).expect("connect");
                for request_index in 0..REQUESTS {
                    // Sizes from empty to the largest body, full-size every tenth request.
                    let size = match request_index % 10 {
                        9 => body_max,
                        _ => (request_index * 997 + client_index * 131) % body_max,
                    };
                    let sent = body(client_index, request_index, size);
                    let reply = client.request(ECHO, &sent).expect("request");
                    let fields = Reply::decode(&reply.header);
                    assert_eq!(fields.client, client.id());
                    assert_eq!(fields.request as usize, request_index + 1);
                    assert_eq!(
                        reply.body, sent,
                        "client {client_index} request {request_index}"
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("client thread");
    }
    let messages = (CLIENTS * (REQUESTS + 1)) as u64;
    wait_until(&net, |stats| stats.replies_sent == messages);
    let (stats, counts) = stop(net, replica);
    assert_eq!(stats.requests, messages, "{stats:?}");
    assert_eq!(stats.replies_sent, messages, "{stats:?}");
    assert_eq!(stats.accepted, CLIENTS as u64);
    assert_eq!(stats.closed_bad_input, 0);
    assert_eq!(
        counts.executions.load(Ordering::Relaxed),
        (CLIENTS * REQUESTS) as u64
    );
    assert_eq!(counts.duplicates.load(Ordering::Relaxed), 0);
    assert_eq!(counts.violations.load(Ordering::Relaxed), 0);
}

#[test]
fn a_lost_reply_is_recovered_by_resending_the_same_request_once() {
    let faults = Faults {
        drop_first_reply_of: Some(3),
        ..Faults::default()
    };
    let (net, replica) = serve(net_options(4096, 4), faults);
    let options = client_options(4096, Duration::from_millis(200));
    let mut client = Client::connect(&[net.local_addr()], options).unwrap();
    for request in 1..=5u32 {
        let sent = body(0, request as usize, 40);
        let started = Instant::now();
        let reply = client.request(ECHO, &sent).unwrap();
        assert_eq!(Reply::decode(&reply.header).request, request);
        assert_eq!(reply.body, sent);
        if request == 3 {
            assert!(
                started.elapsed() >= Duration::from_millis(200),
                "no resend happened"
            );
        }
    }
    let (stats, counts) = stop(net, replica);
    // Executed once, answered twice: the resend got the stored reply on a new connection.
    assert_eq!(counts.executions.load(Ordering::Relaxed), 5);
    assert_eq!(counts.duplicates.load(Ordering::Relaxed), 1);
    assert_eq!(counts.violations.load(Ordering::Relaxed), 0);
    assert_eq!(stats.accepted, 2, "{stats:?}");
}

#[test]
fn stale_replies_of_earlier_requests_are_skipped() {
    let faults = Faults {
        stale_reply_first: true,
        ..Faults::default()
    };
    let (net, replica) = serve(net_options(4096, 4), faults);
    let options = client_options(4096, Duration::from_secs(5));
    let mut client = Client::connect(&[net.local_addr()], options).unwrap();
    for request in 1..=5u32 {
        let sent = body(1, request as usize, 10 + request as usize);
        let reply = client.request(ECHO, &sent).unwrap();
        assert_eq!(Reply::decode(&reply.header).request, request);
        assert_eq!(reply.body, sent);
    }
    wait_until(&net, |stats| stats.replies_sent == 2 * 6 - 1);
    let (stats, counts) = stop(net, replica);
    assert_eq!(counts.violations.load(Ordering::Relaxed), 0);
    assert_eq!(
        stats.replies_sent,
        2 * 6 - 1,
        "every reply but register's came twice"
    );
}

#[test]
fn an_eviction_is_a_typed_error_and_the_client_refuses_further_requests() {
    let faults = Faults {
        evict_at: Some(2),
        ..Faults::default()
    };
    let (net, replica) = serve(net_options(4096, 4), faults);
    let options = client_options(4096, Duration::from_secs(5));
    let mut client = Client::connect(&[net.local_addr()], options).unwrap();
    client.request(ECHO, b"one").unwrap();
    let error = client.request(ECHO, b"two").unwrap_err();
    assert!(
        matches!(error, ClientError::Evicted(EvictionReason::SessionUnknown)),
        "{error}"
    );
    assert!(matches!(
        client.request(ECHO, b"three"),
        Err(ClientError::Evicted(_))
    ));
    stop(net, replica);
}

#[test]
fn a_client_without_a_server_gives_up_with_an_error_that_says_what_to_do() {
    // Bind and drop a listener: its port is (almost certainly) closed now.
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut options = client_options(4096, Duration::from_millis(100));
    options.attempts_max = 2;
    let error = Client::connect(&[address], options)
        .err()
        .expect("no server");
    assert!(
        matches!(error, ClientError::Unavailable { attempts: 2, .. }),
        "{error}"
    );
    assert!(error
        .to_string()
        .contains("check that the server is running"));
}

/// A sealed echo request of `client` (session 1) as wire bytes.
fn request_bytes(cluster: u128, client: u128, request: u32, body: &[u8]) -> Vec<u8> {
    let header = Request {
        client,
        session: 1,
        request,
        operation: ECHO,
        ..Request::default()
    }
    .header(cluster, body);
    [header.as_bytes().as_slice(), body].concat()
}

fn register_bytes(client: u128) -> Vec<u8> {
    let header = Request {
        client,
        operation: REGISTER,
        ..Request::default()
    }
    .header(CLUSTER, &[]);
    header.as_bytes().to_vec()
}

/// Waits until the server closes `stream` (EOF or reset), ignoring any bytes before that.
fn assert_closed_by_server(stream: &mut TcpStream, case: &str) {
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if error.kind() == ErrorKind::ConnectionReset => return,
            Err(error) => panic!("{case}: connection not closed by the server: {error}"),
        }
    }
}

/// Byte sequences that must each close their connection as bad input.
fn bad_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let random: Vec<u8> = (0..600)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let mut bad_header_checksum = request_bytes(CLUSTER, 11, 1, b"payload");
    bad_header_checksum[200] ^= 1;
    // A size above the limit with a valid checksum: refused before any body is read.
    let oversized = request_bytes(CLUSTER, 12, 1, &[0u8; 8192 - HEADER_BYTES]);
    let mut bad_body_checksum = request_bytes(CLUSTER, 13, 1, &[7u8; 100]);
    bad_body_checksum[HEADER_BYTES + 5] ^= 1;
    let mut unknown_command = *request_bytes(CLUSTER, 14, 1, &[])
        .first_chunk::<256>()
        .unwrap();
    unknown_command[114] = 12;
    let mut unknown_command = Header::from_bytes(&unknown_command);
    unknown_command.seal(&[]);
    let mut ping = Header::new(Command::Ping, CLUSTER, 256);
    ping.seal(&[]);
    let mut second_client = register_bytes(16);
    second_client.extend(register_bytes(17));
    vec![
        ("random bytes", random),
        ("bad header checksum", bad_header_checksum),
        ("size over the limit", oversized[..HEADER_BYTES].to_vec()),
        ("bad body checksum", bad_body_checksum),
        ("unknown command", unknown_command.as_bytes().to_vec()),
        ("a valid ping, not a request", ping.as_bytes().to_vec()),
        ("another cluster", request_bytes(CLUSTER + 1, 15, 1, b"x")),
        ("a second client on one connection", second_client),
    ]
}

#[test]
fn bad_input_closes_only_its_connection_and_is_counted() {
    let mut options = net_options(4096, 3);
    options.register_timeout = Duration::from_millis(300);
    let (net, replica) = serve(options, Faults::default());
    let address = net.local_addr();
    let mut good =
        Client::connect(&[address], client_options(4096, Duration::from_secs(5))).unwrap();
    good.request(ECHO, b"before").unwrap();

    let cases = bad_inputs();
    for (index, (case, bytes)) in cases.iter().enumerate() {
        let mut stream = TcpStream::connect(address).unwrap();
        stream.write_all(bytes).unwrap();
        assert_closed_by_server(&mut stream, case);
        assert_eq!(net.stats().closed_bad_input, index as u64 + 1, "{case}");
        let reply = good.request(ECHO, case.as_bytes()).unwrap();
        assert_eq!(reply.body, case.as_bytes());
    }

    // A frame cut short by EOF.
    let mut stream = TcpStream::connect(address).unwrap();
    let truncated = request_bytes(CLUSTER, 18, 1, &[3u8; 100]);
    stream.write_all(&truncated[..HEADER_BYTES + 50]).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    assert_closed_by_server(&mut stream, "truncated frame");
    let bad_input_count = cases.len() as u64 + 1;
    assert_eq!(net.stats().closed_bad_input, bad_input_count);

    // A connection that never sends anything is closed after register_timeout.
    let started = Instant::now();
    let mut silent = TcpStream::connect(address).unwrap();
    assert_closed_by_server(&mut silent, "silent connection");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(net.stats().closed_register_timeout, 1);

    // Over the limit: the good client and two registered connections fill the three slots.
    let mut held: Vec<TcpStream> = [21u128, 22]
        .iter()
        .map(|&client| {
            let mut stream = TcpStream::connect(address).unwrap();
            stream.write_all(&register_bytes(client)).unwrap();
            let mut reply = [0u8; HEADER_BYTES];
            stream.read_exact(&mut reply).unwrap();
            stream
        })
        .collect();
    let mut refused = TcpStream::connect(address).unwrap();
    assert_closed_by_server(&mut refused, "over the limit");
    assert_eq!(net.stats().refused_at_limit, 1);
    held.clear();
    let reply = good.request(ECHO, b"after").unwrap();
    assert_eq!(reply.body, b"after");

    let (stats, counts) = stop(net, replica);
    assert_eq!(stats.closed_bad_input, bad_input_count, "{stats:?}");
    assert_eq!(stats.closed_register_timeout, 1, "{stats:?}");
    assert_eq!(stats.refused_at_limit, 1, "{stats:?}");
    assert_eq!(counts.violations.load(Ordering::Relaxed), 0);
}

/// Reads one whole message from a raw socket and validates it.
fn read_message(stream: &mut TcpStream) -> Message {
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut header = [0u8; HEADER_BYTES];
    stream.read_exact(&mut header).expect("a reply header");
    let header = Header::from_bytes(&header);
    header.validate_header_only(1 << 20).unwrap();
    let mut body = vec![0u8; header.body_size() as usize];
    stream.read_exact(&mut body).expect("a reply body");
    header.validate(&body, 1 << 20).unwrap();
    Message { header, body }
}

fn echo_reply(request: &Message, op: u64) -> Message {
    let fields = Request::decode(&request.header);
    let header = Reply {
        request_checksum: request.header.checksum(),
        client: fields.client,
        op,
        commit: op,
        timestamp: op,
        request: fields.request,
        operation: fields.operation,
        ..Reply::default()
    }
    .header(CLUSTER, &request.body);
    Message {
        header,
        body: request.body.clone(),
    }
}

fn next_request(events: &Receiver<NetEvent>) -> Message {
    match events.recv_timeout(Duration::from_secs(3)) {
        Ok(NetEvent::Request { message, .. }) => message,
        Err(error) => panic!("no request reached the replica: {error}"),
    }
}

#[test]
fn a_replica_that_stops_draining_requests_does_not_stall_its_replies() {
    // The test thread is the replica; the events channel holds one request.
    let (events_sender, events) = bounded(1);
    let net = net::spawn(net_options(4096, 4), events_sender).unwrap();
    let address = net.local_addr();
    let mut a = TcpStream::connect(address).unwrap();
    a.write_all(&request_bytes(CLUSTER, 0xa, 1, b"a")).unwrap();
    let request_a = next_request(&events);

    // B fills the channel; C and three pipelined requests of D wait inside the net actor.
    let mut others: Vec<TcpStream> = Vec::new();
    for (client, count) in [(0xbu128, 1u32), (0xc, 1), (0xd, 3)] {
        let mut stream = TcpStream::connect(address).unwrap();
        let bytes: Vec<u8> = (1..=count)
            .flat_map(|request| request_bytes(CLUSTER, client, request, &[client as u8; 33]))
            .collect();
        stream.write_all(&bytes).unwrap();
        others.push(stream);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while !events.is_full() || net.stats().requests < 2 {
        assert!(Instant::now() < deadline, "B's request never arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(net.stats().requests, 2, "the channel holds one request");

    // More replies than the command channel holds (2 × 4), while no request is drained.
    let reply = echo_reply(&request_a, 1);
    let sender_net = net.clone();
    let sender_reply = reply.clone();
    let (done_sender, done) = bounded(1);
    std::thread::spawn(move || {
        for _ in 0..50 {
            sender_net.send(0xa, sender_reply.clone());
        }
        done_sender.send(()).unwrap();
    });
    for _ in 0..50 {
        assert_eq!(read_message(&mut a), reply);
    }
    done.recv_timeout(Duration::from_secs(3))
        .expect("the replica's sends blocked while its events channel was full");
    assert!(events.is_full());

    // Draining resumes delivery, in order per connection.
    let delivered: Vec<(u128, u32)> = (0..5)
        .map(|_| {
            let fields = Request::decode(&next_request(&events).header);
            (fields.client, fields.request)
        })
        .collect();
    let of_d: Vec<u32> = delivered
        .iter()
        .filter(|(client, _)| *client == 0xd)
        .map(|(_, request)| *request)
        .collect();
    assert_eq!(of_d, [1, 2, 3]);
    assert_eq!(delivered.len(), 5);
    let stats = wait_until(&net, |stats| {
        stats.requests == 6 && stats.replies_sent == 50
    });
    assert_eq!(stats.requests, 6);
    assert_eq!(stats.replies_sent, 50);
    assert_eq!(stats.closed_bad_input, 0);
    net.shutdown();
}

#[test]
fn a_client_that_does_not_read_its_replies_is_closed_not_buffered_forever() {
    let (events_sender, events) = bounded(4);
    let net = net::spawn(net_options(4096, 4), events_sender).unwrap();
    let mut lazy = TcpStream::connect(net.local_addr()).unwrap();
    lazy.write_all(&request_bytes(CLUSTER, 0xe, 1, &[1u8; 4096 - HEADER_BYTES]))
        .unwrap();
    let reply = echo_reply(&next_request(&events), 1);
    // Kernel socket buffers take several MiB first; the bounded queue must overflow after.
    let deadline = Instant::now() + Duration::from_secs(5);
    while net.stats().closed_send_queue_full == 0 {
        assert!(Instant::now() < deadline, "{:?}", net.stats());
        for _ in 0..64 {
            net.send(0xe, reply.clone());
        }
    }
    let stats = net.stats();
    assert_eq!(stats.closed_send_queue_full, 1);
    // Later replies to that client find no connection and are dropped, counted.
    net.send(0xe, reply);
    let deadline = Instant::now() + Duration::from_secs(3);
    while net.stats().replies_dropped_no_connection == stats.replies_dropped_no_connection {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(lazy);
    net.shutdown();
}
