//! Journal entries from disk or Kafka are untrusted bytes: decoding must
//! never panic, and whatever decodes must re-encode to something that
//! decodes to the same entry.
#![no_main]

use halyard_core::journal::{decode_entry, encode_entry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First byte: where the key ends; second: tombstone or not.
    if data.len() < 2 {
        return;
    }
    let split = (data[0] as usize).min(data.len() - 2);
    let rest = &data[2..];
    let (key, value) = rest.split_at(split.min(rest.len()));
    let value = if data[1] & 1 == 0 { Some(value) } else { None };
    if let Ok(entry) = decode_entry(key, value) {
        let (k, v) = encode_entry(&entry);
        let again = decode_entry(&k, v.as_deref()).expect("re-encoded entry decodes");
        assert_eq!(again, entry);
    }
});
