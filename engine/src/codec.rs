//! The WAL payload: one command that changed a shard's state, stamped with
//! the shard's time, as an rkyv archive that can be read in place. Encoding
//! borrows the command (no allocation once the log's buffer is warm);
//! decoding validates the archive and every id and limit again, so a record
//! the CRC let through still cannot smuggle an invalid command into replay.
//!
//! The archived layout is part of the on-disk format (`docs/wal-format.md`):
//! changing `LogEntry` or `LoggedCommand` means a new format version. An
//! archived enum is as big as its largest variant, so variants with more
//! than one field are boxed: a commit's payload is 48 bytes, not 128.

use crate::command::{CartLine, Command, ReservePart, TimerKey};
use crate::ids::{ReservationId, Sku};
use crate::limits::{LINES_MAX, ON_HAND_MAX, QTY_MAX, SHARDS_MAX};
use rkyv::rancor::{Fallible, Source};
use rkyv::string::{ArchivedString, StringResolver};
use rkyv::with::{Inline, InlineAsBox};
use rkyv::{Archive, Place, Serialize, SerializeUnsized};
use stockd_wal::AlignedBytes;

/// One log record's payload.
#[derive(Archive, Serialize)]
pub(crate) struct LogEntry<'a> {
    pub now_ms: u64,
    pub command: LoggedCommand<'a>,
}

/// `Command`, by reference. Variants with more than one field are boxed
/// (archived out of line), so the enum stays the size of one id. The
/// boxed entries put their widest fields first: no padding between them.
#[derive(Archive, Serialize)]
pub(crate) enum LoggedCommand<'a> {
    SetStock(#[rkyv(with = InlineAsBox)] &'a SetStockEntry<'a>),
    AdjustStock(#[rkyv(with = InlineAsBox)] &'a AdjustStockEntry<'a>),
    Reserve(#[rkyv(with = InlineAsBox)] &'a ReserveEntry<'a>),
    Commit(#[rkyv(with = Inline)] &'a ReservationId),
    Release(#[rkyv(with = Inline)] &'a ReservationId),
    CommitPart(#[rkyv(with = Inline)] &'a ReservationId),
    ReleasePart(#[rkyv(with = Inline)] &'a ReservationId),
    ExpirePart(#[rkyv(with = Inline)] &'a ReservationId),
    Abort(#[rkyv(with = InlineAsBox)] &'a AbortEntry<'a>),
    Tick(#[rkyv(with = InlineAsBox)] &'a TickEntry),
}

#[derive(Archive, Serialize)]
pub(crate) struct SetStockEntry<'a> {
    #[rkyv(with = Inline)]
    sku: &'a Sku,
    on_hand: u64,
    expected_version: Option<u64>,
}

#[derive(Archive, Serialize)]
pub(crate) struct AdjustStockEntry<'a> {
    #[rkyv(with = Inline)]
    sku: &'a Sku,
    delta: i64,
}

#[derive(Archive, Serialize)]
pub(crate) struct ReserveEntry<'a> {
    fingerprint: u128,
    expires_at_ms: u64,
    forget_at_ms: u64,
    participants: u64,
    #[rkyv(with = Inline)]
    id: &'a ReservationId,
    #[rkyv(with = InlineAsBox)]
    lines: &'a [CartLine],
    home: u16,
}

#[derive(Archive, Serialize)]
pub(crate) struct TickEntry {
    due_ms: u64,
    seq: u64,
}

#[derive(Archive, Serialize)]
pub(crate) struct AbortEntry<'a> {
    fingerprint: u128,
    #[rkyv(with = Inline)]
    id: &'a ReservationId,
}

/// Appends the payload for `command` at `now_ms` to `buffer`.
pub(crate) fn encode(command: &Command, now_ms: u64, buffer: &mut AlignedBytes) {
    let write = |command: LoggedCommand<'_>, buffer: &mut AlignedBytes| {
        rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(&LogEntry { now_ms, command }, buffer)
            .expect("serializing into memory only fails on ids past 2 GiB, which validation forbids");
    };
    match command {
        Command::SetStock { sku, on_hand, expected_version } => write(
            LoggedCommand::SetStock(&SetStockEntry { sku, on_hand: *on_hand, expected_version: *expected_version }),
            buffer,
        ),
        Command::AdjustStock { sku, delta } => {
            write(LoggedCommand::AdjustStock(&AdjustStockEntry { sku, delta: *delta }), buffer)
        }
        Command::Reserve(part) => write(
            LoggedCommand::Reserve(&ReserveEntry {
                id: &part.id,
                fingerprint: part.fingerprint,
                lines: &part.lines,
                expires_at_ms: part.expires_at_ms,
                forget_at_ms: part.forget_at_ms,
                home: part.home,
                participants: part.participants,
            }),
            buffer,
        ),
        Command::Commit { id } => write(LoggedCommand::Commit(id), buffer),
        Command::Release { id } => write(LoggedCommand::Release(id), buffer),
        Command::CommitPart { id } => write(LoggedCommand::CommitPart(id), buffer),
        Command::ReleasePart { id } => write(LoggedCommand::ReleasePart(id), buffer),
        Command::ExpirePart { id } => write(LoggedCommand::ExpirePart(id), buffer),
        Command::Abort { id, fingerprint } => {
            write(LoggedCommand::Abort(&AbortEntry { id, fingerprint: *fingerprint }), buffer)
        }
        Command::Tick { up_to } => {
            write(LoggedCommand::Tick(&TickEntry { due_ms: up_to.due_ms, seq: up_to.seq }), buffer)
        }
    }
}

/// A payload back as (shard time, command), or why it is not a valid one.
pub(crate) fn decode(payload: &[u8]) -> Result<(u64, Command), String> {
    let entry = rkyv::access::<ArchivedLogEntry<'_>, rkyv::rancor::BoxedError>(payload)
        .map_err(|error| format!("undecodable payload: {error}"))?;
    let command = match &entry.command {
        ArchivedLoggedCommand::SetStock(entry) => {
            let on_hand = entry.on_hand.to_native();
            check(on_hand <= ON_HAND_MAX, "on_hand out of range")?;
            let expected_version = entry.expected_version.as_ref().map(|version| version.to_native());
            Command::SetStock { sku: sku_of(&entry.sku)?, on_hand, expected_version }
        }
        ArchivedLoggedCommand::AdjustStock(entry) => {
            Command::AdjustStock { sku: sku_of(&entry.sku)?, delta: entry.delta.to_native() }
        }
        ArchivedLoggedCommand::Reserve(entry) => {
            let ArchivedReserveEntry { id, fingerprint, lines, expires_at_ms, forget_at_ms, home, participants } =
                &**entry;
            check(lines.len() <= LINES_MAX, "too many lines")?;
            let mut decoded = Vec::with_capacity(lines.len());
            for line in lines.iter() {
                let qty = line.qty.to_native();
                check((1..=QTY_MAX).contains(&qty), "qty out of range")?;
                decoded.push(CartLine { sku: sku_of(&line.sku)?, qty });
            }
            let lines = decoded;
            let (home, participants) = (home.to_native(), participants.to_native());
            check(usize::from(home) < SHARDS_MAX && participants & (1 << home) != 0, "home outside the cart")?;
            let (expires_at_ms, forget_at_ms) = (expires_at_ms.to_native(), forget_at_ms.to_native());
            check(expires_at_ms < forget_at_ms, "forgotten before its deadline")?;
            let part = ReservePart {
                id: id_of(id)?,
                fingerprint: fingerprint.to_native(),
                lines,
                expires_at_ms,
                forget_at_ms,
                home,
                participants,
            };
            Command::Reserve(part)
        }
        ArchivedLoggedCommand::Commit(id) => Command::Commit { id: id_of(id)? },
        ArchivedLoggedCommand::Release(id) => Command::Release { id: id_of(id)? },
        ArchivedLoggedCommand::CommitPart(id) => Command::CommitPart { id: id_of(id)? },
        ArchivedLoggedCommand::ReleasePart(id) => Command::ReleasePart { id: id_of(id)? },
        ArchivedLoggedCommand::ExpirePart(id) => Command::ExpirePart { id: id_of(id)? },
        ArchivedLoggedCommand::Abort(entry) => {
            Command::Abort { id: id_of(&entry.id)?, fingerprint: entry.fingerprint.to_native() }
        }
        ArchivedLoggedCommand::Tick(key) => {
            Command::Tick { up_to: TimerKey { due_ms: key.due_ms.to_native(), seq: key.seq.to_native() } }
        }
    };
    Ok((entry.now_ms.to_native(), command))
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what.to_owned())
    }
}

fn sku_of(text: &ArchivedString) -> Result<Sku, String> {
    Sku::new(text.as_str()).map_err(|_| format!("invalid SKU {:?}", text.as_str()))
}

fn id_of(text: &ArchivedString) -> Result<ReservationId, String> {
    ReservationId::new(text.as_str()).map_err(|_| format!("invalid reservation id {:?}", text.as_str()))
}

/// Ids archive as plain strings; their cached hash is recomputed (and the
/// text validated) when they are decoded.
macro_rules! archive_as_string {
    ($($name:ident),*) => {$(
        impl Archive for $name {
            type Archived = ArchivedString;
            type Resolver = StringResolver;

            fn resolve(&self, resolver: StringResolver, out: Place<ArchivedString>) {
                ArchivedString::resolve_from_str(self.as_str(), resolver, out);
            }
        }

        impl<S: Fallible + ?Sized> Serialize<S> for $name
        where
            S::Error: Source,
            str: SerializeUnsized<S>,
        {
            fn serialize(&self, serializer: &mut S) -> Result<StringResolver, S::Error> {
                ArchivedString::serialize_from_str(self.as_str(), serializer)
            }
        }
    )*};
}
archive_as_string!(Sku, ReservationId);

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> ReservationId {
        ReservationId::new(text).unwrap()
    }

    fn every_command() -> Vec<Command> {
        let sku = Sku::new("sneaker-42.eu/red").unwrap();
        let long_id = id(&"x".repeat(128));
        vec![
            Command::SetStock { sku: sku.clone(), on_hand: 1 << 40, expected_version: Some(3) },
            Command::SetStock { sku: sku.clone(), on_hand: 0, expected_version: None },
            Command::AdjustStock { sku: sku.clone(), delta: -7 },
            Command::Reserve(ReservePart {
                id: long_id.clone(),
                fingerprint: u128::MAX - 5,
                lines: vec![
                    CartLine { sku: sku.clone(), qty: 3 },
                    CartLine { sku: Sku::new("b").unwrap(), qty: QTY_MAX },
                ],
                expires_at_ms: 1_000,
                forget_at_ms: 2_000,
                home: 3,
                participants: 0b1001,
            }),
            Command::Reserve(ReservePart {
                id: id("home-only"),
                fingerprint: 1,
                lines: Vec::new(),
                expires_at_ms: 5,
                forget_at_ms: 6,
                home: 0,
                participants: 0b11,
            }),
            Command::Commit { id: id("a") },
            Command::Release { id: id("b") },
            Command::CommitPart { id: id("c") },
            Command::ReleasePart { id: id("d") },
            Command::ExpirePart { id: long_id.clone() },
            Command::Abort { id: id("e"), fingerprint: 99 },
            Command::Tick { up_to: TimerKey { due_ms: 123, seq: u64::MAX } },
        ]
    }

    #[test]
    fn every_command_round_trips_through_its_payload() {
        let mut buffer = AlignedBytes::new();
        for (now_ms, command) in every_command().into_iter().enumerate() {
            buffer.clear();
            encode(&command, now_ms as u64, &mut buffer);
            assert_eq!(decode(&buffer), Ok((now_ms as u64, command.clone())));
        }
    }

    /// Format 1 archived every command at the size of the largest (a
    /// commit's payload was 128 bytes); boxing the wide variants keeps a
    /// commit to its id and a few bytes.
    #[test]
    fn a_commit_payload_is_the_size_of_its_id_not_of_the_largest_command() {
        let mut buffer = AlignedBytes::new();
        encode(&Command::Commit { id: id("order-000000000001") }, 1, &mut buffer);
        assert!(buffer.len() <= 48, "{} bytes", buffer.len());
    }

    #[test]
    fn decoding_refuses_garbage_and_out_of_range_values() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[0xAB; 64]).is_err());
        let mut buffer = AlignedBytes::new();
        let too_much =
            Command::SetStock { sku: Sku::new("a").unwrap(), on_hand: ON_HAND_MAX + 1, expected_version: None };
        encode(&too_much, 0, &mut buffer);
        assert_eq!(decode(&buffer), Err("on_hand out of range".to_owned()));
    }
}

#[cfg(test)]
mod robustness {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A payload the CRC let through but that is not ours (or damaged in
        /// a way the CRC missed) is refused, never a panic.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut aligned = AlignedBytes::new();
            aligned.extend_from_slice(&bytes);
            let _ = decode(&aligned);
        }

        /// Every single flipped byte of a real payload decodes to an error
        /// or to some valid command, never a panic.
        #[test]
        fn damaged_payloads_never_panic(at in 0usize..512, bit in 0u8..8) {
            let part = ReservePart {
                id: ReservationId::new("order-123456789012345678901234").unwrap(),
                fingerprint: 42,
                lines: vec![CartLine { sku: Sku::new("sku-long-enough-to-be-out-of-line").unwrap(), qty: 2 }],
                expires_at_ms: 10,
                forget_at_ms: 20,
                home: 1,
                participants: 0b11,
            };
            let mut buffer = AlignedBytes::new();
            encode(&Command::Reserve(part), 5, &mut buffer);
            let at = at % buffer.len();
            buffer[at] ^= 1 << bit;
            let _ = decode(&buffer);
        }
    }
}
