//! Kafka bridge records in the Kafka model, whose records are a key and a
//! value only: the value holds the record's headers, then its value
//! (header count, then each name and value with its length, then the rest).

use bytes::{BufMut, Bytes, BytesMut};
use halyard_core::bridge::OutRecord;

/// The model's value for a record with these headers and value.
pub(crate) fn encode(headers: &[(String, Bytes)], value: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u16(u16::try_from(headers.len()).expect("at most 65535 headers"));
    for (name, v) in headers {
        out.put_u16(u16::try_from(name.len()).expect("short header names"));
        out.put_slice(name.as_bytes());
        out.put_u32(u32::try_from(v.len()).expect("header values under 4 GiB"));
        out.put_slice(v);
    }
    out.put_slice(value);
    out.freeze()
}

/// Headers and value of a model value written by [`encode`]; `None` if it
/// is not one.
pub(crate) fn decode(raw: &Bytes) -> Option<(Vec<(String, Bytes)>, Bytes)> {
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Option<Bytes> {
        let end = at.checked_add(n)?;
        let b = raw.get(*at..end)?;
        *at = end;
        Some(raw.slice_ref(b))
    };
    let n = u16::from_be_bytes(take(&mut at, 2)?.as_ref().try_into().ok()?);
    let mut headers = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let len = u16::from_be_bytes(take(&mut at, 2)?.as_ref().try_into().ok()?);
        let name = String::from_utf8(take(&mut at, usize::from(len))?.to_vec()).ok()?;
        let len = u32::from_be_bytes(take(&mut at, 4)?.as_ref().try_into().ok()?);
        headers.push((name, take(&mut at, len as usize)?));
    }
    Some((headers, raw.slice(at..)))
}

/// A bridged record as the model holds it: (topic, key, value).
pub(crate) fn to_model(r: &OutRecord) -> (String, Bytes, Bytes) {
    (
        r.topic.clone(),
        r.key.clone().unwrap_or_default(),
        encode(&r.headers, &r.value),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let h = vec![
            ("a".to_string(), Bytes::from("1")),
            ("bb".into(), Bytes::new()),
        ];
        let v = encode(&h, b"body");
        assert_eq!(decode(&v), Some((h, Bytes::from("body"))));
        assert_eq!(decode(&Bytes::from_static(&[0, 1, 0])), None);
        assert_eq!(decode(&Bytes::new()), None);
    }
}
