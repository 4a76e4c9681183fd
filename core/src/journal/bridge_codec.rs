//! The Kafka bridge's outbox record in the journal value format: a record
//! still to be forwarded to Kafka (topic, key, value, headers).

use bytes::{BufMut, Bytes, BytesMut};

use super::format::{CodecError, NAME_BYTES_MAX};
use super::wire::{put_bytes, put_str, put_varint, Reader};
use crate::bridge::OutRecord;

/// Headers on one outbox record at most.
const HEADERS_MAX: usize = 4096;

pub(crate) fn put_out_record(out: &mut BytesMut, r: &OutRecord) {
    put_str(out, &r.topic);
    match &r.key {
        Some(k) => {
            out.put_u8(1);
            put_bytes(out, k);
        }
        None => out.put_u8(0),
    }
    put_bytes(out, &r.value);
    put_varint(out, r.headers.len() as u64);
    for (name, v) in &r.headers {
        put_str(out, name);
        put_bytes(out, v);
    }
}

pub(crate) fn read_out_record(r: &mut Reader<'_>) -> Result<OutRecord, CodecError> {
    let topic = r.text("topic", NAME_BYTES_MAX)?;
    let key = match r.u8("key flag")? {
        0 => None,
        1 => Some(Bytes::copy_from_slice(r.bytes("key", usize::MAX)?)),
        other => {
            return Err(CodecError::BadValue {
                field: "key flag",
                value: u64::from(other),
            })
        }
    };
    let value = Bytes::copy_from_slice(r.bytes("value", usize::MAX)?);
    let n = r.count("header count", HEADERS_MAX)?;
    let mut headers = Vec::with_capacity(n.min(r.buf.len()));
    for _ in 0..n {
        let name = r.text("header name", NAME_BYTES_MAX)?;
        let v = Bytes::copy_from_slice(r.bytes("header value", usize::MAX)?);
        headers.push((name, v));
    }
    Ok(OutRecord {
        topic,
        key,
        value,
        headers,
    })
}
