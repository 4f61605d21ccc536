//! The message-record, batch and property decoders meet bytes from disk
//! (a corrupt segment) and from the network (a batch body): any input gives
//! a value or an error, never a panic, and valid records survive a round
//! trip byte for byte.

use bytes::Bytes;
use meridian_protocol::message::{
    decode_batch, decode_properties, decode_record, encode_batch, encode_properties, BatchItem,
    MessageExt,
};
use proptest::prelude::*;

fn message() -> impl Strategy<Value = MessageExt> {
    (
        "[A-Za-z0-9_%-]{1,40}",
        0..16i32,
        any::<i32>(),
        0..i64::MAX / 2,
        0..i64::MAX / 2,
        prop::collection::vec(any::<u8>(), 0..512),
        prop::collection::vec(("[A-Za-z_]{1,12}", "[ -~]{0,24}"), 0..6),
        0..32i32,
    )
        .prop_map(|(topic, queue_id, flag, qo, clo, body, props, reconsume)| {
            let props: Vec<(String, String)> = props
                .into_iter()
                .map(|(k, v)| (k, v.replace(['\u{1}', '\u{2}'], "")))
                .collect();
            MessageExt {
                topic,
                queue_id,
                flag,
                queue_offset: qo,
                commit_log_offset: clo,
                sys_flag: 0,
                born_timestamp: 1_700_000_000_000,
                born_host: "10.0.0.1:5000".parse().unwrap(),
                store_timestamp: 1_700_000_000_123,
                store_host: "10.0.0.2:10911".parse().unwrap(),
                reconsume_times: reconsume,
                prepared_transaction_offset: 0,
                body_crc: meridian_protocol::message::body_crc(&body),
                body: Bytes::from(body),
                properties: encode_properties(&props),
                store_size: 0,
            }
        })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = decode_record(&bytes);
        let _ = decode_batch(&Bytes::from(bytes.clone()));
        let _ = decode_properties(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn records_roundtrip_and_mutations_never_panic(
        m in message(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let encoded = m.encode().expect("encode");
        let (back, used) = decode_record(&encoded).expect("decode what we encoded");
        prop_assert_eq!(used, encoded.len());
        prop_assert_eq!(&back.topic, &m.topic);
        prop_assert_eq!(&back.body, &m.body);
        prop_assert_eq!(&back.properties, &m.properties);
        prop_assert_eq!(back.queue_offset, m.queue_offset);
        prop_assert_eq!(back.encode().expect("re-encode"), encoded.clone());

        let mut mutated = encoded.clone();
        for (i, b) in &flips {
            let at = i.index(mutated.len());
            mutated[at] ^= b | 1;
        }
        let _ = decode_record(&mutated);
        let _ = decode_record(&encoded[..cut.index(encoded.len())]);
    }

    #[test]
    fn batches_roundtrip(items in prop::collection::vec((any::<i32>(), prop::collection::vec(any::<u8>(), 0..256), "[a-z]{0,10}"), 1..8)) {
        let items: Vec<BatchItem> = items
            .into_iter()
            .map(|(flag, body, p)| BatchItem { flag, body: Bytes::from(body), properties: p })
            .collect();
        let encoded = encode_batch(&items);
        let back = decode_batch(&encoded).expect("decode what we encoded");
        prop_assert_eq!(back.len(), items.len());
        for (a, b) in back.iter().zip(&items) {
            prop_assert_eq!(a.flag, b.flag);
            prop_assert_eq!(&a.body, &b.body);
            prop_assert_eq!(&a.properties, &b.properties);
        }
    }
}
