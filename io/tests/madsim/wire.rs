//! A tiny request/response protocol between Halyard's madsim adapters and
//! the Kafka model served on a simulated host: a frame is a u32 length and a
//! payload of tagged, length-prefixed fields.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use halyard_sim::kafka::GroupStatus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub type Records = Vec<(Bytes, Option<Bytes>)>;

#[derive(Debug, Clone)]
pub enum Req {
    InitPid {
        txn_id: String,
    },
    EndOffset,
    Fetch {
        offset: u64,
    },
    Produce {
        txn_id: String,
        pid: u64,
        epoch: u16,
        seq: u64,
        records: Records,
        node: String,
        core_epoch: u32,
    },
    EndTxn {
        txn_id: String,
        pid: u64,
        epoch: u16,
    },
    Join {
        member: String,
    },
    Heartbeat {
        member: String,
    },
    Leave {
        member: String,
    },
}

#[derive(Debug, Clone)]
pub enum Resp {
    Pid {
        pid: u64,
        epoch: u16,
    },
    End {
        offset: u64,
    },
    Fetched {
        records: Records,
        next: u64,
    },
    Ok,
    Fenced,
    Error(String),
    Group {
        holder: Option<String>,
        members: Vec<String>,
    },
    UnknownMember,
}

impl From<GroupStatus> for Resp {
    fn from(s: GroupStatus) -> Resp {
        Resp::Group {
            holder: s.holder,
            members: s.members,
        }
    }
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_u32(s.len() as u32);
    b.put_slice(s.as_bytes());
}

fn put_bytes(b: &mut BytesMut, s: &[u8]) {
    b.put_u32(s.len() as u32);
    b.put_slice(s);
}

fn put_records(b: &mut BytesMut, r: &Records) {
    b.put_u32(r.len() as u32);
    for (k, v) in r {
        put_bytes(b, k);
        match v {
            Some(v) => {
                b.put_u8(1);
                put_bytes(b, v);
            }
            None => b.put_u8(0),
        }
    }
}

fn get_bytes(b: &mut Bytes) -> Bytes {
    let n = b.get_u32() as usize;
    b.split_to(n)
}

fn get_str(b: &mut Bytes) -> String {
    String::from_utf8_lossy(&get_bytes(b)).into_owned()
}

fn get_records(b: &mut Bytes) -> Records {
    let n = b.get_u32() as usize;
    (0..n)
        .map(|_| {
            let k = get_bytes(b);
            let v = if b.get_u8() == 1 {
                Some(get_bytes(b))
            } else {
                None
            };
            (k, v)
        })
        .collect()
}

impl Req {
    pub fn encode(&self) -> BytesMut {
        let mut b = BytesMut::new();
        match self {
            Req::InitPid { txn_id } => {
                b.put_u8(1);
                put_str(&mut b, txn_id);
            }
            Req::EndOffset => b.put_u8(2),
            Req::Fetch { offset } => {
                b.put_u8(3);
                b.put_u64(*offset);
            }
            Req::Produce {
                txn_id,
                pid,
                epoch,
                seq,
                records,
                node,
                core_epoch,
            } => {
                b.put_u8(4);
                put_str(&mut b, txn_id);
                b.put_u64(*pid);
                b.put_u16(*epoch);
                b.put_u64(*seq);
                put_records(&mut b, records);
                put_str(&mut b, node);
                b.put_u32(*core_epoch);
            }
            Req::EndTxn { txn_id, pid, epoch } => {
                b.put_u8(5);
                put_str(&mut b, txn_id);
                b.put_u64(*pid);
                b.put_u16(*epoch);
            }
            Req::Join { member } => {
                b.put_u8(6);
                put_str(&mut b, member);
            }
            Req::Heartbeat { member } => {
                b.put_u8(7);
                put_str(&mut b, member);
            }
            Req::Leave { member } => {
                b.put_u8(8);
                put_str(&mut b, member);
            }
        }
        b
    }

    pub fn decode(mut b: Bytes) -> Req {
        match b.get_u8() {
            1 => Req::InitPid {
                txn_id: get_str(&mut b),
            },
            2 => Req::EndOffset,
            3 => Req::Fetch {
                offset: b.get_u64(),
            },
            4 => {
                let txn_id = get_str(&mut b);
                let pid = b.get_u64();
                let epoch = b.get_u16();
                let seq = b.get_u64();
                let records = get_records(&mut b);
                let node = get_str(&mut b);
                let core_epoch = b.get_u32();
                Req::Produce {
                    txn_id,
                    pid,
                    epoch,
                    seq,
                    records,
                    node,
                    core_epoch,
                }
            }
            5 => {
                let txn_id = get_str(&mut b);
                let pid = b.get_u64();
                let epoch = b.get_u16();
                Req::EndTxn { txn_id, pid, epoch }
            }
            6 => Req::Join {
                member: get_str(&mut b),
            },
            7 => Req::Heartbeat {
                member: get_str(&mut b),
            },
            8 => Req::Leave {
                member: get_str(&mut b),
            },
            t => panic!("unknown request tag {t}"),
        }
    }
}

impl Resp {
    pub fn encode(&self) -> BytesMut {
        let mut b = BytesMut::new();
        match self {
            Resp::Pid { pid, epoch } => {
                b.put_u8(1);
                b.put_u64(*pid);
                b.put_u16(*epoch);
            }
            Resp::End { offset } => {
                b.put_u8(2);
                b.put_u64(*offset);
            }
            Resp::Fetched { records, next } => {
                b.put_u8(3);
                put_records(&mut b, records);
                b.put_u64(*next);
            }
            Resp::Ok => b.put_u8(4),
            Resp::Fenced => b.put_u8(5),
            Resp::Error(e) => {
                b.put_u8(6);
                put_str(&mut b, e);
            }
            Resp::Group { holder, members } => {
                b.put_u8(7);
                put_str(&mut b, holder.as_deref().unwrap_or(""));
                b.put_u32(members.len() as u32);
                for m in members {
                    put_str(&mut b, m);
                }
            }
            Resp::UnknownMember => b.put_u8(8),
        }
        b
    }

    pub fn decode(mut b: Bytes) -> Resp {
        match b.get_u8() {
            1 => Resp::Pid {
                pid: b.get_u64(),
                epoch: b.get_u16(),
            },
            2 => Resp::End {
                offset: b.get_u64(),
            },
            3 => {
                let records = get_records(&mut b);
                Resp::Fetched {
                    records,
                    next: b.get_u64(),
                }
            }
            4 => Resp::Ok,
            5 => Resp::Fenced,
            6 => Resp::Error(get_str(&mut b)),
            7 => {
                let h = get_str(&mut b);
                let n = b.get_u32() as usize;
                let members = (0..n).map(|_| get_str(&mut b)).collect();
                Resp::Group {
                    holder: (!h.is_empty()).then_some(h),
                    members,
                }
            }
            8 => Resp::UnknownMember,
            t => panic!("unknown response tag {t}"),
        }
    }
}

pub async fn write_frame<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    payload: &[u8],
) -> std::io::Result<()> {
    let mut b = BytesMut::with_capacity(payload.len() + 4);
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    w.write_all(&b).await?;
    w.flush().await
}

pub async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> std::io::Result<Bytes> {
    let n = r.read_u32().await? as usize;
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf).await?;
    Ok(Bytes::from(buf))
}
