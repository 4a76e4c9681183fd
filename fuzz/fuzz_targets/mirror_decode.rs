//! Arbitrary bytes into the mirror link's decoder and both ends of a link.
//!
//! Checks that nothing panics; that splitting the input at any point
//! changes nothing; that every frame decoded re-encodes to bytes that
//! decode to the same frame; and that a source link and a target link fed
//! whatever frames come out refuse or take them without panicking.
#![no_main]

use bytes::BytesMut;
use halyard_core::coordinator::EpochFence;
use halyard_core::mirror::{encode, MirrorDecoder, MirrorFrame, Outbox, SourceLink, TargetLink};
use libfuzzer_sys::fuzz_target;

/// Frames decoded from `data` split at `cut`, up to the first error.
fn decode(data: &[u8], cut: usize) -> (Vec<MirrorFrame>, bool) {
    let mut d = MirrorDecoder::new();
    let mut frames = Vec::new();
    for part in [&data[..cut], &data[cut..]] {
        if d.push(part).is_err() {
            return (frames, true);
        }
        loop {
            match d.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
    }
    (frames, false)
}

fuzz_target!(|input: &[u8]| {
    // The first byte says where to split the rest.
    let Some((&first, data)) = input.split_first() else {
        return;
    };
    let cut = first as usize % (data.len() + 1);
    let (whole, whole_failed) = decode(data, data.len());
    let (split, split_failed) = decode(data, cut);
    assert_eq!(whole, split, "splitting the input changed the frames");
    assert_eq!(whole_failed, split_failed);
    for f in &whole {
        let mut out = BytesMut::new();
        encode(f, &mut out);
        let mut d = MirrorDecoder::new();
        // Frames other than a hello or welcome carry no header: give one.
        if !matches!(f, MirrorFrame::Hello { .. } | MirrorFrame::Welcome { .. }) {
            d.push(&halyard_core::protocol::amqp::AMQP_HEADER).unwrap();
            d.push(&encode_hello()).unwrap();
            let _ = d.next_frame();
        }
        d.push(&out).expect("re-encoded frame pushes");
        let again = d.next_frame().expect("re-encoded frame decodes");
        match (f, again) {
            (MirrorFrame::Close { .. }, Some(MirrorFrame::Close { .. })) => {}
            (f, again) => assert_eq!(Some(f.clone()), again),
        }
    }
    let outbox = Outbox::new(1);
    let mut source = SourceLink::new("a", 1);
    let mut target = TargetLink::new("b", None);
    let mut fence = EpochFence::new();
    for f in whole {
        let _ = source.on_frame(f.clone(), &outbox);
        let _ = target.on_frame(f, &mut fence);
        while target.poll_action().is_some() {}
        while target.poll_frame().is_some() {}
        while source.poll_event().is_some() {}
        while let Ok(Some(_)) = source.poll_frame(&outbox) {}
    }
});

/// An open, begin and attach (without the header) so that later frames
/// decode in a connection.
fn encode_hello() -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(
        &MirrorFrame::Hello {
            node: "x".into(),
            epoch: 1,
        },
        &mut out,
    );
    out[8..].to_vec()
}
