//! Property tests of the frame decoder ([`hako_proto::read_frame`]) on hostile input: arbitrary byte streams,
//! valid frames with bytes flipped, cut or appended, and length fields that claim more than follows. The
//! decoder must return a frame, the end, or an error: never panic, and never allocate more than the bytes
//! it was given justify (a length field is a claim, not a promise).
//!
//! The case count and the seed are fixed, so a run is bounded and reproducible (`PROPTEST_CASES` raises the
//! count for a longer local run); failures are not persisted to files: a failing case found here becomes a
//! plain `#[test]` below.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use hako_proto::{encode, read_frame, Event, Frame, Message, NetIf, NetRoute, Op, Reply, Share, Stdio, MAX_FRAME};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// Counts the largest single allocation made by the current thread (tests run on several threads).
struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // try_with: the thread-local may be gone while a thread exits.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every call is passed on unchanged to the system allocator; we only record sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract is the one System::alloc has.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Decodes every frame of `bytes` until the end or the first error, and returns the largest single allocation
/// made meanwhile. Panics (the test fails) if the decoder panics.
fn decode_all(bytes: &[u8]) -> usize {
    LARGEST.with(|l| l.set(0));
    let mut r = bytes;
    // Each frame consumes at least 5 bytes, so this ends.
    for _ in 0..=bytes.len() {
        match read_frame(&mut r) {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    LARGEST.with(|l| l.get())
}

/// What decoding `n` bytes may allocate at most in one piece: a generous multiple of the input (JSON values
/// are bigger in memory than in text, and vectors grow by doubling) plus the reader's first buffer.
fn budget(n: usize) -> usize {
    64 * n + (64 << 10)
}

/// 256 cases per property (`PROPTEST_CASES` overrides), a fixed seed, no failure files.
fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    Config { cases, rng_seed: RngSeed::Fixed(0x6861_6b6f), failure_persistence: None, ..Config::default() }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9./-]{1,12}",
        any::<String>(),
        Just("../../../etc/passwd".to_owned()),
        Just("a\0b".to_owned()),
    ]
}

fn stdio() -> impl Strategy<Value = Stdio> {
    (any::<bool>(), any::<Option<u32>>(), any::<Option<u32>>(), any::<Option<u32>>())
        .prop_map(|(terminal, stdin, stdout, stderr)| Stdio { terminal, stdin, stdout, stderr })
}

fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        // Quarters print and parse exactly (serde_json's default float parsing may differ in the last digit).
        any::<i32>().prop_map(|i| serde_json::Value::from(f64::from(i) / 4.0)),
        text().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-zA-Z]{0,8}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn op() -> impl Strategy<Value = Op> {
    let share =
        (text(), text(), any::<bool>()).prop_map(|(tag, guest_path, readonly)| Share { tag, guest_path, readonly });
    let route =
        (text(), proptest::option::of(text())).prop_map(|(destination, gateway)| NetRoute { destination, gateway });
    let netif = (text(), text(), any::<u32>(), prop::collection::vec(text(), 0..3), prop::collection::vec(route, 0..3))
        .prop_map(|(name, mac, mtu, addresses, routes)| NetIf { name, mac, mtu, addresses, routes });
    prop_oneof![
        (
            text(),
            json(),
            prop::collection::vec(share, 0..3),
            stdio(),
            prop::collection::vec(netif, 0..2),
            proptest::option::of(text())
        )
            .prop_map(|(id, config, shares, stdio, net, sandbox)| Op::Create {
                id,
                config,
                shares,
                stdio,
                net,
                sandbox
            }),
        text().prop_map(|id| Op::Start { id }),
        (text(), text(), json(), stdio()).prop_map(|(id, exec_id, process, stdio)| Op::Exec {
            id,
            exec_id,
            process,
            stdio
        }),
        (text(), proptest::option::of(text()), any::<i32>(), any::<bool>())
            .prop_map(|(id, exec_id, signal, all)| Op::Kill { id, exec_id, signal, all }),
        (text(), proptest::option::of(text())).prop_map(|(id, exec_id)| Op::Wait { id, exec_id }),
        (text(), proptest::option::of(text()), any::<u16>(), any::<u16>())
            .prop_map(|(id, exec_id, rows, cols)| Op::Resize { id, exec_id, rows, cols }),
        (text(), json()).prop_map(|(id, resources)| Op::Update { id, resources }),
        text().prop_map(|id| Op::Delete { id }),
        Just(Op::Shutdown),
        Just(Op::Seal),
        (any::<i64>(), any::<u32>(), prop::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(unix_secs, nanos, entropy)| Op::Restore { unix_secs, nanos, entropy }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    let reply = prop_oneof![
        Just(Reply::Done),
        any::<i32>().prop_map(|pid| Reply::Created { pid }),
        any::<i32>().prop_map(|status| Reply::Exited { status }),
        prop::collection::vec(any::<i32>(), 0..8).prop_map(|pids| Reply::Pids { pids }),
        json().prop_map(|data| Reply::Stats { data }),
    ];
    let event = prop_oneof![
        (text(), proptest::option::of(text()), any::<i32>()).prop_map(|(id, exec_id, status)| Event::Exited {
            id,
            exec_id,
            status
        }),
        text().prop_map(|msg| Event::Log { msg }),
    ];
    prop_oneof![
        (any::<u32>(), text()).prop_map(|(version, agent)| Message::Hello { version, agent }),
        (any::<u64>(), op()).prop_map(|(req, op)| Message::Request { req, op }),
        (any::<u64>(), prop_oneof![reply.prop_map(Ok), text().prop_map(Err)])
            .prop_map(|(req, result)| Message::Response { req, result }),
        event.prop_map(|event| Message::Event { event }),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        message().prop_map(Frame::Msg),
        (any::<u32>(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(stream, data)| Frame::Data { stream, data }),
        any::<u32>().prop_map(|stream| Frame::Eof { stream }),
    ]
}

/// A change to a valid encoding.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip the bits of one byte (index modulo the length).
    Flip(usize, u8),
    /// Cut the bytes at an index.
    Truncate(usize),
    /// Overwrite the length field.
    Length(u32),
    /// Overwrite the kind byte.
    Kind(u8),
    /// Insert bytes at an index.
    Insert(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        prop_oneof![any::<u32>(), Just(0), Just(u32::MAX), Just(MAX_FRAME as u32), Just(MAX_FRAME as u32 + 1)]
            .prop_map(Mutation::Length),
        any::<u8>().prop_map(Mutation::Kind),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Mutation::Insert(i, b)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Flip(i, x) => {
            let n = bytes.len();
            bytes[i % n] ^= x;
        }
        Mutation::Truncate(i) => bytes.truncate(i % (bytes.len() + 1)),
        Mutation::Length(l) => {
            if bytes.len() >= 4 {
                bytes[..4].copy_from_slice(&l.to_be_bytes());
            }
        }
        Mutation::Kind(k) => {
            if bytes.len() >= 5 {
                bytes[4] = *k;
            }
        }
        Mutation::Insert(i, b) => {
            let at = i % (bytes.len() + 1);
            bytes.splice(at..at, b.iter().copied());
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Any frame this crate encodes decodes to itself.
    #[test]
    fn valid_frames_roundtrip(f in frame()) {
        let bytes = encode(&f).unwrap();
        let mut r = &bytes[..];
        let back = read_frame(&mut r).unwrap();
        prop_assert!(r.is_empty());
        prop_assert_eq!(Some(f), back);
    }

    /// Arbitrary bytes: frames, the end or an error; no panic, no allocation beyond what the bytes justify.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let largest = decode_all(&bytes);
        prop_assert!(largest <= budget(bytes.len()), "{} bytes made a {largest}-byte allocation", bytes.len());
    }

    /// A length field and kind that make sense, followed by arbitrary bytes (reaches the JSON decoder).
    #[test]
    fn arbitrary_bodies_never_panic(kind in 0..4u8, body in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        bytes.push(kind);
        bytes.extend_from_slice(&body);
        let largest = decode_all(&bytes);
        prop_assert!(largest <= budget(bytes.len()), "{} bytes made a {largest}-byte allocation", bytes.len());
    }

    /// Valid frames, one after another, with up to three mutations.
    #[test]
    fn mutated_frames_never_panic(
        frames in prop::collection::vec(frame(), 1..4),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut bytes: Vec<u8> = frames.iter().flat_map(|f| encode(f).unwrap()).collect();
        for m in &mutations {
            if !bytes.is_empty() {
                apply(&mut bytes, m);
            }
        }
        let largest = decode_all(&bytes);
        prop_assert!(largest <= budget(bytes.len()), "{} bytes made a {largest}-byte allocation", bytes.len());
    }

    /// Control messages as JSON values of any shape: the decoder refuses what is not a [`Message`].
    #[test]
    fn arbitrary_json_messages_never_panic(v in json(), typ in prop_oneof![
        Just("hello"), Just("request"), Just("response"), Just("event"), Just("teleport")
    ]) {
        let mut v = v;
        if let Some(o) = v.as_object_mut() {
            o.insert("type".into(), typ.into());
        }
        let body = serde_json::to_vec(&v).unwrap();
        let mut bytes = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        bytes.push(0);
        bytes.extend_from_slice(&body);
        let largest = decode_all(&bytes);
        prop_assert!(largest <= budget(bytes.len()), "{} bytes made a {largest}-byte allocation", bytes.len());
    }
}

/// A length field is a claim: a frame header that says MAX_FRAME bytes follow, followed by ten, must fail
/// without allocating MAX_FRAME bytes first (a peer could otherwise make the other side hold 8 MiB per frame
/// it never sends).
#[test]
fn a_claimed_length_is_not_allocated_before_the_bytes_arrive() {
    let mut bytes = (MAX_FRAME as u32).to_be_bytes().to_vec();
    bytes.push(1);
    bytes.extend_from_slice(&[0; 10]);
    LARGEST.with(|l| l.set(0));
    let err = read_frame(&mut &bytes[..]).unwrap_err().to_string();
    let largest = LARGEST.with(|l| l.get());
    assert!(largest < 1 << 20, "decoding {} bytes allocated {largest} bytes at once", bytes.len());
    assert!(err.contains("ended after"), "{err}");
}

/// Lengths past the limit (4 GiB among them) are refused before anything is read or allocated.
#[test]
fn lengths_past_the_limit_are_refused_before_allocating() {
    for len in [u32::MAX, 1 << 31, MAX_FRAME as u32 + 1] {
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.push(0);
        LARGEST.with(|l| l.set(0));
        let err = read_frame(&mut &bytes[..]).unwrap_err().to_string();
        let largest = LARGEST.with(|l| l.get());
        assert!(err.contains("out of range"), "{err}");
        assert!(largest < 4096, "a {len}-byte claim allocated {largest} bytes");
    }
}

/// JSON nested deeper than serde_json's recursion limit is an error, not a stack overflow.
#[test]
fn deeply_nested_json_is_an_error() {
    for body in [
        format!(r#"{{"type":"request","req":1,"op":"update","id":"c","resources":{}}}"#, "[".repeat(100_000)),
        format!(
            r#"{{"type":"response","req":1,"result":{{"Ok":{{"reply":"stats","data":{}}}}}}}"#,
            "{\"a\":".repeat(100_000)
        ),
        "[".repeat(1_000_000),
    ] {
        let mut bytes = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        bytes.push(0);
        bytes.extend_from_slice(body.as_bytes());
        let err = read_frame(&mut &bytes[..]).unwrap_err().to_string();
        assert!(err.contains("bad message"), "{err}");
    }
}

/// A stdio frame shorter than its stream id, and a kind no one knows, are framing errors.
#[test]
fn short_stdio_frames_and_unknown_kinds_are_errors() {
    for (kind, body) in [(1u8, &[0u8, 0][..]), (2, &[][..]), (7, &[1, 2, 3][..])] {
        let mut bytes = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        bytes.push(kind);
        bytes.extend_from_slice(body);
        let err = read_frame(&mut &bytes[..]).unwrap_err().to_string();
        assert!(err.contains("bad frame"), "kind {kind}: {err}");
    }
}
