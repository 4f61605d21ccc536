//! Whatever arrives on a socket, decoding returns a command or an error and
//! never panics (design invariant 4). Also: every command that can be
//! encoded decodes back to itself, in both header encodings.

use bytes::{BufMut, BytesMut};
use meridian_protocol::body::{self, ConsumeStats, HeartbeatData, ResetOffsetBody, TopicRouteData};
use meridian_protocol::header::{consumer, namesrv, offset, pull, send};
use meridian_protocol::{decode_frame, encode_frame, FrameDecoder, RemotingCommand, SerializeType};
use proptest::prelude::*;

/// Feeds `wire` to a decoder in `chunks`-sized pieces; stops at the first
/// error, as a connection would.
fn feed(wire: &[u8], chunk: usize, max: usize) -> Vec<RemotingCommand> {
    let mut decoder = FrameDecoder::new(max);
    let mut src = BytesMut::new();
    let mut out = Vec::new();
    for piece in wire.chunks(chunk.max(1)) {
        src.put_slice(piece);
        loop {
            match decoder.decode(&mut src) {
                Ok(Some(cmd)) => out.push(cmd),
                Ok(None) => break,
                Err(_) => return out,
            }
        }
    }
    out
}

/// Runs every typed header parser over a command; none may panic.
fn parse_all_headers(cmd: &RemotingCommand) {
    let _ = send::SendMessageRequestHeader::parse(cmd);
    let _ = send::SendMessageResponseHeader::parse(cmd);
    let _ = pull::PullMessageRequestHeader::parse(cmd);
    let _ = offset::QueryConsumerOffsetRequestHeader::parse(cmd);
    let _ = offset::UpdateConsumerOffsetRequestHeader::parse(cmd);
    let _ = consumer::ConsumerSendMsgBackRequestHeader::parse(cmd);
    let _ = namesrv::RegisterBrokerRequestHeader::parse(cmd);
    let _ = body::decode_body::<HeartbeatData>(&cmd.body);
    let _ = body::decode_body::<TopicRouteData>(&cmd.body);
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("topic".to_string()),
        Just("queueId".to_string()),
        Just("QueueId".to_string()),
        Just("producerGroup".to_string()),
        "[a-zA-Z]{1,12}",
        "\\PC{1,8}",
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?[0-9]{1,20}",
        Just("true".to_string()),
        Just("0".to_string()),
        "\\PC{1,20}",
    ]
}

/// Commands that survive both encodings unchanged: codes and versions fit
/// in 16 bits, languages are ones Java knows, remarks and ext values are
/// not empty (the binary encoding cannot carry empty ones).
fn command() -> impl Strategy<Value = RemotingCommand> {
    (
        any::<i16>(),
        prop::sample::select(meridian_protocol::language::NAMES.to_vec()),
        any::<i16>(),
        any::<i32>(),
        any::<i32>(),
        prop::option::of("\\PC{1,40}"),
        prop::collection::hash_map(key(), value(), 0..8),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..256),
    )
        .prop_map(
            |(code, language, version, opaque, flag, remark, ext_fields, binary, body)| {
                RemotingCommand {
                    code: i32::from(code),
                    language: language.to_string(),
                    version: i32::from(version),
                    opaque,
                    flag,
                    remark,
                    ext_fields: ext_fields.into_iter().collect(),
                    serialize_type: if binary {
                        SerializeType::RocketMQ
                    } else {
                        SerializeType::Json
                    },
                    body: body.into(),
                }
            },
        )
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Truncate { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1..16usize).prop_map(|(at, len)| Mutation::Remove { at, len }),
    ]
}

fn apply(wire: &mut Vec<u8>, m: &Mutation) {
    if wire.is_empty() {
        return;
    }
    match m {
        Mutation::Flip { at, xor } => {
            let i = at % wire.len();
            wire[i] ^= xor;
        }
        Mutation::Truncate { at } => wire.truncate(at % wire.len()),
        Mutation::Insert { at, bytes } => {
            let i = at % wire.len();
            wire.splice(i..i, bytes.iter().copied());
        }
        Mutation::Remove { at, len } => {
            let i = at % wire.len();
            let end = (i + len).min(wire.len());
            wire.drain(i..end);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048), chunk in 1..64usize) {
        let _ = decode_frame(&bytes);
        for cmd in feed(&bytes, chunk, 4096) {
            parse_all_headers(&cmd);
        }
        let _ = body::parse_fastjson(&bytes);
        let _ = ConsumeStats::from_json_bytes(&bytes);
        let _ = ResetOffsetBody::from_json_bytes(&bytes);
    }

    #[test]
    fn headers_that_look_valid_never_panic(
        header_len in 0..64u32,
        type_byte in 0..3u8,
        header in prop::collection::vec(any::<u8>(), 0..64),
        body in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        // A frame whose lengths are plausible, so decoding gets past the
        // framing checks and into the header parsers.
        let mut frame = ((u32::from(type_byte) << 24) | header_len).to_be_bytes().to_vec();
        frame.extend_from_slice(&header);
        frame.extend_from_slice(&body);
        let _ = decode_frame(&frame);
    }

    #[test]
    fn json_headers_that_look_valid_never_panic(
        code in prop_oneof![Just("10".to_string()), "\\PC{0,12}"],
        fields in prop::collection::hash_map("[a-zA-Z]{1,8}", "\\PC{0,12}", 0..6),
    ) {
        let ext: Vec<String> = fields.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
        let json = format!("{{\"code\":{code},\"extFields\":{{{}}}}}", ext.join(","));
        let mut frame = (json.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(json.as_bytes());
        if let Ok(cmd) = decode_frame(&frame) {
            parse_all_headers(&cmd);
        }
    }

    #[test]
    fn every_command_roundtrips(cmd in command()) {
        let mut wire = BytesMut::new();
        encode_frame(&cmd, &mut wire);
        let decoded = feed(&wire, wire.len(), usize::MAX);
        prop_assert_eq!(decoded.len(), 1);
        prop_assert_eq!(&decoded[0], &cmd);
        prop_assert_eq!(&decode_frame(&wire[4..]).unwrap(), &cmd);
    }

    #[test]
    fn mutated_frames_never_panic(
        cmds in prop::collection::vec(command(), 1..4),
        mutations in prop::collection::vec(mutation(), 1..6),
        chunk in 1..128usize,
    ) {
        let mut wire = BytesMut::new();
        for cmd in &cmds {
            encode_frame(cmd, &mut wire);
        }
        let mut wire = wire.to_vec();
        for m in &mutations {
            apply(&mut wire, m);
        }
        for cmd in feed(&wire, chunk, 1 << 20) {
            parse_all_headers(&cmd);
        }
        if wire.len() >= 4 {
            let _ = decode_frame(&wire[4..]);
        }
    }

    #[test]
    fn typed_accessors_never_panic(fields in prop::collection::hash_map(key(), "\\PC{0,24}", 0..12), code in any::<i32>()) {
        let mut cmd = RemotingCommand::request(code);
        cmd.ext_fields = fields.into_iter().collect::<meridian_protocol::command::ExtFields>();
        parse_all_headers(&cmd);
        for k in ["topic", "queueId", "a", "e", "g"] {
            let _ = cmd.opt_i32(k);
            let _ = cmd.opt_i64(k);
            let _ = cmd.opt_bool(k);
        }
    }
}

#[test]
fn length_prefix_over_the_limit_is_refused_before_buffering() {
    let mut src = BytesMut::new();
    src.put_u32(u32::MAX);
    let err = FrameDecoder::new(meridian_protocol::DEFAULT_MAX_FRAME_LEN)
        .decode(&mut src)
        .unwrap_err();
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
}
